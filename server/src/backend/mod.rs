//! Storage backends behind one streaming trait.
//!
//! Backends only persist and return bytes plus metadata; expiry, TTI bumps, limits and
//! panic isolation live in the service layer above them.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::config::{Config, StorageConfig};
use crate::metrics::Metrics;
use crate::object::{Metadata, ObjectId};

pub mod bigtable;
pub mod faults;
pub mod filesystem;
pub mod memory;
pub mod native;
pub mod payload;
pub mod s3;
mod s3_native;
pub mod tiered;

pub use native::{NativeMultipart, NativeUpload, PartLimits};
pub use payload::Payload;

/// A payload travelling into or out of a backend, chunk by chunk.
pub type PayloadStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An object read from a backend: metadata (with `size` set) and its payload stream.
pub struct StoredObject {
    /// The stored metadata; `size` is the stored payload size.
    pub metadata: Metadata,
    /// The payload, in whatever form the backend serves it cheapest.
    pub payload: Payload,
}

impl fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredObject")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

/// Why a backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The client's upload stream broke; nothing was stored.
    #[error("upload stream failed: {0}")]
    Payload(#[source] std::io::Error),
    /// Local I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Local I/O failed in a named step on a named file.
    #[error("i/o error: {op} {}: {source}", path.display())]
    IoAt {
        /// What was being done (`create storage root`, `sync object file`, …).
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data could not be decoded.
    #[error("corrupt object: {0}")]
    Corrupt(String),
    /// A remote storage service failed or could not be reached (maps to 503).
    #[error("{backend} backend unavailable: {message}")]
    Unavailable {
        /// The backend kind (`bigtable`, `s3compatible`).
        backend: &'static str,
        /// What went wrong, without credentials.
        message: String,
    },
    /// The backend is misconfigured: a missing table or bucket, a bad endpoint.
    #[error("{0}")]
    Config(String),
    /// The storage service refused a request as invalid, with its own error code (an
    /// S3 code such as `InvalidPart` or `EntityTooSmall`), which multipart completion
    /// reports to the client.
    #[error("{backend} refused the request: {code}: {message}")]
    Rejected {
        /// The backend kind.
        backend: &'static str,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The object exceeds what this backend can hold in one piece.
    #[error("object larger than the {backend} backend's limit of {limit} bytes")]
    TooLarge {
        /// The backend kind.
        backend: &'static str,
        /// The largest payload it accepts, in bytes.
        limit: u64,
    },
}

/// Attaches the step and the file to an I/O error, so a log line or a 500 says what
/// failed where rather than a bare `os error 28`.
pub(crate) trait IoContext<T> {
    /// Maps an error to [`BackendError::IoAt`].
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T, BackendError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: &std::path::Path) -> Result<T, BackendError> {
        self.map_err(|source| BackendError::IoAt {
            op,
            path: path.to_owned(),
            source,
        })
    }
}

/// The persistence contract every storage tier implements.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Short name for logs (`filesystem`, `memory`).
    fn name(&self) -> &'static str;

    /// Stores `payload` with `metadata` atomically: readers see the old object or the new
    /// one, never a mix. Returns the stored size in bytes.
    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        payload: PayloadStream,
    ) -> Result<u64, BackendError>;

    /// Opens an object for reading; `None` when it does not exist.
    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError>;

    /// Reads only the metadata (with `size`); `None` when it does not exist.
    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError>;

    /// Removes an object; removing a missing object succeeds.
    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError>;

    /// Replaces the metadata of an existing object, keeping its payload, only while the
    /// object is still the one whose metadata was `expected` (compare-and-swap, so a
    /// concurrent overwrite is never undone). Returns `false` when the object is gone or
    /// changed.
    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError>;

    /// Removes every object whose deadline passed before `now`; returns how many.
    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError>;

    /// Replaces a whole small object atomically, only while its current version is
    /// `expected` (`None`: the key is absent); `new` of `None` deletes it. Versions are
    /// compared as in [`Backend::update_metadata`]. Returns whether the swap happened.
    /// The tiered backend keeps its redirect tombstones consistent with this.
    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<bool, BackendError>;

    /// Checks that the storage answers, for `/ready`; local backends always do.
    async fn probe(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Hands over the service's background queue, for chores such as deleting
    /// long-term objects a committed write left behind; wrappers forward it.
    fn attach_background(&self, _sink: crate::service::background::BackgroundSink) {}

    /// Waits for background work (such as orphan clean-up) at shutdown.
    async fn shutdown(&self) {}

    /// Every stored object's id with the time it was last written (`UNIX_EPOCH` when
    /// unknown), for reconciliation sweeps; `None` when the backend cannot enumerate.
    async fn list_ids(&self) -> Result<Option<Vec<(ObjectId, SystemTime)>>, BackendError> {
        Ok(None)
    }

    /// Where multipart uploads and resumable sessions stage their bytes (and records)
    /// before they are published; `None` when this backend cannot hold them, which the
    /// API answers with 501.
    fn upload_staging(&self) -> Option<crate::uploads::Staging> {
        None
    }

    /// The backend's own multipart upload, which large parts stream into directly;
    /// `None` (the default): every part is staged and copied into place at completion.
    fn native_multipart(&self) -> Option<&dyn NativeMultipart> {
        None
    }

    /// The bytes a resumable session of `length` payload bytes should start its staged
    /// file with, written once at create, so that the finished file is already laid out
    /// as this backend's own object file and [`Backend::put_staged`] can take it over
    /// instead of copying it. `None` (the default): the staged file holds only payload.
    fn staged_header(&self, _id: &ObjectId, _metadata: &Metadata, _length: u64) -> Option<Vec<u8>> {
        None
    }

    /// Publishes a fully received staged upload as the object, atomically like
    /// [`Backend::put`]; returns the stored size. The default copies the payload through
    /// `put`; a backend whose [`Backend::staged_header`] laid the file out may adopt the
    /// staged file instead (it is then gone from staging once this returns).
    async fn put_staged(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        staged: &crate::uploads::StagedUpload,
    ) -> Result<u64, BackendError> {
        let payload = staged.payload().await?;
        self.put(id, metadata, payload).await
    }
}

/// Builds the configured backend, with fault injection wrapped around it when enabled.
pub async fn from_config(
    config: &Config,
    metrics: &Metrics,
) -> Result<Arc<dyn Backend>, BackendError> {
    let backend = open(&config.storage, metrics).await?;
    Ok(
        match faults::FaultyBackend::wrap(backend.clone(), &config.faults) {
            Some(faulty) => Arc::new(faulty),
            None => backend,
        },
    )
}

/// Opens one storage section (recursively for `tiered`).
pub fn open<'a>(
    storage: &'a StorageConfig,
    metrics: &'a Metrics,
) -> futures::future::BoxFuture<'a, Result<Arc<dyn Backend>, BackendError>> {
    Box::pin(async move {
        let backend: Arc<dyn Backend> = match storage {
            StorageConfig::Filesystem { path } => Arc::new(
                filesystem::FilesystemBackend::open_with_metrics(
                    path.clone(),
                    metrics.storage.clone(),
                )
                .await?,
            ),
            StorageConfig::Memory {} => Arc::new(memory::MemoryBackend::default()),
            StorageConfig::Bigtable { .. } => {
                Arc::new(bigtable::BigtableBackend::open(storage).await?)
            }
            StorageConfig::S3compatible { .. } => Arc::new(s3::S3Backend::open(storage).await?),
            StorageConfig::Tiered {
                high_volume,
                long_term,
            } => Arc::new(tiered::TieredBackend::new(
                open(high_volume, metrics).await?,
                open(long_term, metrics).await?,
            )),
        };
        Ok(backend)
    })
}

/// The storage name of an object, `usecase/scopes/key`: unambiguous, because neither a
/// usecase nor a scope may contain `/` (empty scopes leave an empty middle part).
pub fn storage_key(id: &ObjectId) -> String {
    format!("{}/{}/{}", id.usecase, id.scopes.to_wire(), id.key)
}

/// Whether the current version `current` is the `expected` one (both absent counts).
pub(crate) fn matches_expected(current: Option<&Metadata>, expected: Option<&Metadata>) -> bool {
    match (current, expected) {
        (None, None) => true,
        (Some(current), Some(expected)) => same_version(current, expected),
        _ => false,
    }
}

/// Compares metadata for compare-and-swap, ignoring `size` (derived, not stored).
pub(crate) fn same_version(a: &Metadata, b: &Metadata) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.size = None;
    b.size = None;
    a == b
}
