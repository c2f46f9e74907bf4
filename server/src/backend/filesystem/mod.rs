//! The embedded default backend, on a local filesystem.
//!
//! Two stores under one root, with an in-memory index over both:
//! - Objects up to [`SMALL_OBJECT`] bytes are records in an append-only log
//!   (`<root>/log/*.seg`, see [`log`]): a write is acknowledged once its record is
//!   synced, and concurrent writes share one sync (group commit), writes of one key
//!   included: a put holds its key's lock only while queueing its record, and the index
//!   follows log order (see [`store::Stripe`]). Compaction rewrites segments that are
//!   mostly dead.
//! - Larger objects are files of their own (`<root>/objects/<xx>/<sha256>`, see
//!   [`files`]): temp file, fsync, rename, directory fsync. An `External` record in the log
//!   marks each such write so that, after a crash, the newest of log and file wins.
//!   A finished resumable session above [`SMALL_OBJECT`] is staged as an object file from
//!   its create on and is linked into place instead of copied ([`Backend::put_staged`];
//!   `docs/storage-format.md`, "Resumable sessions").
//!
//! Either way an acknowledged write survives `kill -9` and power loss, and a reader sees
//! the old object or the new one, never a torn one. Keys never become paths: an object
//! is addressed by the SHA-256 of its full id's canonical bytes (format v1, see
//! `docs/storage-format.md`), so `a`, `a/`, `a/b`, `a//a` and `../x` are
//! distinct objects and no key can escape the root. Only one process may open a root
//! (`<root>/LOCK`), which is what makes the in-memory index and cache coherent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{matches_expected, same_version, Backend, BackendError, PayloadStream, StoredObject};
use crate::metrics::StorageMetrics;
use crate::object::{Metadata, ObjectId};

mod access;
mod codec;
mod compaction;
mod files;
mod format;
mod index;
mod log;
mod record;
mod recovery;
mod scan_check;
mod store;
mod sweep;

use compaction::compact_forever;
use index::Entry;
pub use record::decode_segment;
use recovery::recover;
pub use scan_check::{check_scan, CaseRecord, Damage, ScanCase};
use store::{blocking, digest_of, id_bytes, Shared};

/// SHA-256 of an object id's canonical bytes: the object's name on disk and in the index.
type Digest = [u8; 32];

/// Objects up to this size live in the log; larger ones get files of their own.
const SMALL_OBJECT: usize = 64 * 1024;
/// Where unfinished uploads stage, under the root (so on the same filesystem as
/// `objects/`, which is what lets a finished resumable session be adopted by a link).
const UPLOADS: &str = "uploads";
const SEGMENT_BYTES: u64 = 64 << 20;
/// Decoded logged objects kept in memory, in bytes.
const CACHE_BYTES: u64 = 64 << 20;
const LOCK_STRIPES: usize = 256;
/// Large uploads reach the temp file in writes of about this size.
const WRITE_CHUNK: usize = 64 * 1024;
/// How often compaction looks for segments that are mostly dead.
const COMPACT_INTERVAL: Duration = Duration::from_secs(5);
/// Most bytes of copies compaction commits at once.
const COMPACT_BATCH: usize = 4 << 20;

/// The filesystem backend; see the module documentation.
#[derive(Debug)]
pub struct FilesystemBackend {
    shared: Arc<Shared>,
    compactor: tokio::task::JoinHandle<()>,
}

impl Drop for FilesystemBackend {
    fn drop(&mut self) {
        // Lets go of the root (its lock) as soon as possible; an interrupted compaction
        // leaves only unreferenced copies behind.
        self.compactor.abort();
    }
}

impl FilesystemBackend {
    /// Opens (creating when missing) a storage root: takes its lock, replays the log,
    /// reconciles object files with it and starts background compaction.
    pub async fn open(root: PathBuf) -> Result<Self, BackendError> {
        Self::open_with_metrics(root, StorageMetrics::unregistered()).await
    }

    /// Like [`FilesystemBackend::open`], reporting into a server's `strata_storage_*`
    /// metrics.
    pub async fn open_with_metrics(
        root: PathBuf,
        metrics: StorageMetrics,
    ) -> Result<Self, BackendError> {
        Self::open_with(root, SEGMENT_BYTES, metrics).await
    }

    async fn open_with(
        root: PathBuf,
        segment_bytes: u64,
        metrics: StorageMetrics,
    ) -> Result<Self, BackendError> {
        let dir = root.clone();
        let shared = blocking(move || recover(dir, segment_bytes, metrics)).await?;
        let shared = Arc::new(shared);
        let compactor = tokio::spawn(compact_forever(Arc::downgrade(&shared)));
        Ok(Self { shared, compactor })
    }

    /// The storage root (for logs and the start-up line).
    pub fn root(&self) -> &Path {
        &self.shared.root
    }
}

#[async_trait]
impl Backend for FilesystemBackend {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        mut payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        let id_bytes = id_bytes(id);
        let digest = digest_of(&id_bytes);
        // Buffer the start of the body: most objects are small and go to the log whole.
        let mut head = Vec::new();
        while let Some(chunk) = payload.next().await {
            head.extend_from_slice(&chunk.map_err(BackendError::Payload)?);
            if head.len() > SMALL_OBJECT {
                return self
                    .shared
                    .put_file(digest, id, &id_bytes, metadata, head, payload)
                    .await;
            }
        }
        let size = head.len() as u64;
        self.shared
            .put_ordered(digest, &id_bytes, metadata, Bytes::from(head))
            .await?;
        Ok(size)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        self.shared.read(id, true).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        Ok(self.shared.read(id, false).await?.map(|o| o.metadata))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        let id_bytes = id_bytes(id);
        let digest = digest_of(&id_bytes);
        let _lock = self.shared.stripe(&digest).lock().await;
        self.shared.delete_locked(digest, &id_bytes).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let id_bytes = id_bytes(id);
        let digest = digest_of(&id_bytes);
        let shared = &self.shared;
        let _lock = shared.stripe(&digest).lock().await;
        match shared.index.get(&digest) {
            None => Ok(false),
            Some(Entry::Logged {
                location, payload, ..
            }) => {
                let current = shared.load(&location, payload.as_ref(), &id_bytes).await?;
                if !same_version(&current.metadata, expected) {
                    return Ok(false);
                }
                shared
                    .update_logged_metadata(
                        digest,
                        &id_bytes,
                        (location, payload),
                        &current,
                        metadata,
                    )
                    .await?;
                Ok(true)
            }
            Some(Entry::File { meta, .. }) => {
                shared
                    .update_file_metadata(digest, id, &id_bytes, meta, expected, metadata)
                    .await
            }
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        Ok(self.shared.sweep_logged(now).await? + self.shared.sweep_files(now).await?)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<bool, BackendError> {
        let id_bytes = id_bytes(id);
        let digest = digest_of(&id_bytes);
        let shared = &self.shared;
        let _lock = shared.stripe(&digest).lock().await;
        // Under the stripe lock the current version cannot change.
        let current = match shared.index.get(&digest) {
            None => None,
            Some(Entry::Logged {
                location, payload, ..
            }) => Some(
                shared
                    .load(&location, payload.as_ref(), &id_bytes)
                    .await?
                    .metadata
                    .clone(),
            ),
            Some(Entry::File { meta, .. }) => shared
                .file_metadata(&digest, id, meta)
                .await?
                .map(|(metadata, _)| metadata),
        };
        if !matches_expected(current.as_ref(), expected) {
            return Ok(false);
        }
        match new {
            // Small enough for the log whatever the log's own threshold: callers swap
            // tombstones and small objects.
            Some((metadata, payload)) => {
                shared
                    .put_logged(digest, &id_bytes, metadata, payload)
                    .await?;
            }
            None => shared.delete_locked(digest, &id_bytes).await?,
        }
        Ok(true)
    }

    /// Not ready once the log's writer thread died: no write could commit.
    async fn probe(&self) -> Result<(), BackendError> {
        if self.shared.log.writer_alive() {
            Ok(())
        } else {
            Err(BackendError::Unavailable {
                backend: "filesystem",
                message: "the object log's writer thread died; restart the server".to_owned(),
            })
        }
    }

    /// Unfinished uploads live in `<root>/uploads`, beside (never inside) the stores.
    fn upload_staging(&self) -> Option<crate::uploads::Staging> {
        Some(crate::uploads::Staging::Dir(self.shared.root.join(UPLOADS)))
    }

    /// A session for an object too large for the log stages an object file: the
    /// header its file would have, so the finished file is adopted, not copied.
    fn staged_header(&self, id: &ObjectId, metadata: &Metadata, length: u64) -> Option<Vec<u8>> {
        (length > SMALL_OBJECT as u64).then(|| files::encode_header(id, metadata))
    }

    /// Adopts a staged object file from this root's own staging (same filesystem) by
    /// linking it into `objects/` and logging an `External` marker; anything else (no
    /// header, another place, another filesystem, a header that does not match) is
    /// copied through [`Backend::put`].
    #[tracing::instrument(level = "debug", skip_all)]
    async fn put_staged(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        staged: &crate::uploads::StagedUpload,
    ) -> Result<u64, BackendError> {
        let uploads = self.shared.root.join(UPLOADS);
        if let Some(path) = staged
            .local_path()
            .filter(|path| staged.header_len() > 0 && path.starts_with(&uploads))
        {
            let id_bytes = id_bytes(id);
            let digest = digest_of(&id_bytes);
            match self
                .shared
                .adopt_file(digest, id, &id_bytes, metadata, path, staged.header_len())
                .await?
            {
                Ok(size) => return Ok(size),
                Err(why) => tracing::warn!(%why, "copying a staged upload instead of adopting it"),
            }
        }
        let payload = staged.payload().await?;
        self.put(id, metadata, payload).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt as _;
    use sha2::Digest as _;

    use super::*;

    fn id(key: &str) -> ObjectId {
        ObjectId::from_raw_segments("attachments", "org=1", key).unwrap()
    }

    fn body(bytes: Vec<u8>) -> PayloadStream {
        futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed()
    }

    async fn put(backend: &FilesystemBackend, key: &str, bytes: Vec<u8>) {
        backend
            .put(&id(key), &Metadata::default(), body(bytes))
            .await
            .unwrap();
    }

    async fn read(backend: &FilesystemBackend, key: &str) -> Option<Vec<u8>> {
        let object = backend.get(&id(key)).await.unwrap()?;
        Some(
            crate::backend::payload::collect(object.payload.into_stream())
                .await
                .unwrap(),
        )
    }

    /// A backend whose log rolls to a new segment every `segment` bytes.
    async fn open_segmented(root: &Path, segment: u64) -> FilesystemBackend {
        FilesystemBackend::open_with(root.into(), segment, StorageMetrics::unregistered())
            .await
            .unwrap()
    }

    fn small(byte: u8) -> Vec<u8> {
        vec![byte; 1000]
    }

    fn large(byte: u8) -> Vec<u8> {
        vec![byte; SMALL_OBJECT + 1]
    }

    fn object_files(root: &Path) -> usize {
        (0..=255u8)
            .map(|i| {
                std::fs::read_dir(root.join("objects").join(format!("{i:02x}")))
                    .unwrap()
                    .count()
            })
            .sum()
    }

    #[tokio::test]
    async fn state_survives_reopen_across_log_and_files() {
        let dir = tempfile::tempdir().unwrap();
        {
            let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
            put(&backend, "small", small(1)).await;
            put(&backend, "large", large(2)).await;
            put(&backend, "small-then-large", small(3)).await;
            put(&backend, "small-then-large", large(4)).await;
            put(&backend, "large-then-small", large(5)).await;
            put(&backend, "large-then-small", small(6)).await;
            put(&backend, "deleted-small", small(7)).await;
            backend.delete(&id("deleted-small")).await.unwrap();
            put(&backend, "deleted-large", large(8)).await;
            backend.delete(&id("deleted-large")).await.unwrap();
            assert_eq!(
                object_files(dir.path()),
                2,
                "only the two large objects have files"
            );
        }
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        assert_eq!(read(&backend, "small").await, Some(small(1)));
        assert_eq!(read(&backend, "large").await, Some(large(2)));
        assert_eq!(read(&backend, "small-then-large").await, Some(large(4)));
        assert_eq!(read(&backend, "large-then-small").await, Some(small(6)));
        assert_eq!(read(&backend, "deleted-small").await, None);
        assert_eq!(read(&backend, "deleted-large").await, None);
        assert_eq!(object_files(dir.path()), 2);
    }

    #[tokio::test]
    async fn a_file_renamed_but_never_marked_loses_to_the_log() {
        // A crash after a large write's rename but before its marker committed: the
        // write was never acknowledged, so the logged version must win.
        let dir = tempfile::tempdir().unwrap();
        let stray;
        {
            let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
            put(&backend, "k", small(1)).await;
            let digest = digest_of(&id_bytes(&id("k")));
            stray = backend.shared.object_path(&digest);
            let mut file = files::encode_header(&id("k"), &Metadata::default());
            file.extend_from_slice(&large(9));
            std::fs::write(&stray, file).unwrap();
        }
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        assert_eq!(read(&backend, "k").await, Some(small(1)));
        assert!(!stray.exists(), "the superseded file is removed");
    }

    #[tokio::test]
    async fn files_from_before_the_log_are_still_served() {
        let dir = tempfile::tempdir().unwrap();
        {
            let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
            put(&backend, "old", large(3)).await;
        }
        std::fs::remove_dir_all(dir.path().join("log")).unwrap();
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        assert_eq!(read(&backend, "old").await, Some(large(3)));
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// `tests/fixtures/pre-v1-datadir` was written by the server as it was before format
    /// v1 (small, large, TTI, overwritten and deleted objects).
    #[tokio::test]
    async fn a_root_from_before_format_v1_is_refused_untouched_with_what_to_do() {
        let fixture = Path::new(
            &std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures/pre-v1-datadir");
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fixture, dir.path());
        let segment = dir.path().join("log/0000000000000001.seg");
        let before = std::fs::read(&segment).unwrap();
        let err = FilesystemBackend::open(dir.path().into())
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Config(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("holds data in the layout from before on-disk format versions"),
            "{text}"
        );
        assert!(text.contains("docs/storage-format.md"), "{text}");
        assert_eq!(std::fs::read(&segment).unwrap(), before);
        assert!(!dir.path().join(format::FILE).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("log")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn a_root_of_a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(FilesystemBackend::open(dir.path().into()).await.unwrap());
        std::fs::write(
            dir.path().join(format::FILE),
            "strata-filesystem-format 2\n",
        )
        .unwrap();
        let err = FilesystemBackend::open(dir.path().into())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds on-disk format v2, newer than v1"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn object_files_are_named_by_the_hash_of_the_canonical_id() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        put(&backend, "big", large(1)).await;
        let name: Digest = sha2::Sha256::digest(codec::encode_id(&id("big"))).into();
        let path = files::object_path(dir.path(), &name);
        let file = std::fs::read(&path).unwrap();
        assert!(file.starts_with(b"STRATAOB\x01"), "versioned header");
        assert_eq!(read(&backend, "big").await, Some(large(1)));
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FilesystemBackend::open(dir.path().into()).await.unwrap();
        let err = FilesystemBackend::open(dir.path().into())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("in use by another strata-server"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn compaction_reclaims_dead_segments_and_keeps_every_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let segment = 16 * 1024;
        let metrics = StorageMetrics::unregistered();
        {
            let backend = FilesystemBackend::open_with(dir.path().into(), segment, metrics.clone())
                .await
                .unwrap();
            for round in 0..10u8 {
                for key in 0..10 {
                    put(&backend, &format!("k{key}"), small(round * 10 + key)).await;
                }
            }
            put(&backend, "gone", small(200)).await;
            backend.delete(&id("gone")).await.unwrap();
            put(&backend, "to-file", small(201)).await;
            put(&backend, "to-file", large(202)).await;
            for key in 0..10 {
                put(&backend, &format!("tail{key}"), small(key)).await;
            }
            let before = backend.shared.log.segments().len();
            let mut compacted = 0;
            while backend.shared.compact_once().await.unwrap() {
                compacted += 1;
            }
            let after = backend.shared.log.segments().len();
            assert!(
                compacted > 0 && after < before,
                "{before} -> {after} segments"
            );
            // The exported gauges agree with the log itself.
            let segments = backend.shared.log.segments();
            let sum = |f: fn(&log::Segment) -> u64| segments.iter().map(|s| f(s)).sum::<u64>();
            assert_eq!(metrics.compactions.get(), compacted);
            assert_eq!(metrics.log_segments.get(), after as i64);
            assert_eq!(
                metrics.log_bytes.get() as u64,
                sum(|s| s.size.load(std::sync::atomic::Ordering::Relaxed))
            );
            assert_eq!(
                metrics.log_live_bytes.get() as u64,
                sum(|s| s.live.load(std::sync::atomic::Ordering::Relaxed))
            );
            assert_eq!(metrics.objects_in_log.get(), 20);
            assert_eq!(metrics.objects_in_files.get(), 1);
            assert!(metrics.log_commits.get() > 0);
            assert!(metrics.log_records.get() >= metrics.log_commits.get());
            for key in 0..10u8 {
                assert_eq!(
                    read(&backend, &format!("k{key}")).await,
                    Some(small(90 + key))
                );
            }
        }
        let backend = open_segmented(dir.path(), segment).await;
        for key in 0..10u8 {
            assert_eq!(
                read(&backend, &format!("k{key}")).await,
                Some(small(90 + key))
            );
            assert_eq!(
                read(&backend, &format!("tail{key}")).await,
                Some(small(key))
            );
        }
        assert_eq!(
            read(&backend, "gone").await,
            None,
            "the tombstone outlived compaction"
        );
        assert_eq!(read(&backend, "to-file").await, Some(large(202)));
    }

    #[tokio::test]
    async fn a_tombstone_outlives_compaction_while_an_older_put_survives() {
        let dir = tempfile::tempdir().unwrap();
        let segment = 16 * 1024;
        {
            let backend = open_segmented(dir.path(), segment).await;
            // The first segment stays mostly live, so it is never compacted and keeps
            // the old `Put` of "gone".
            put(&backend, "gone", small(1)).await;
            for key in 0..14 {
                put(&backend, &format!("stable{key}"), small(key)).await;
            }
            backend.delete(&id("gone")).await.unwrap();
            // The tombstone's segment then fills with versions that die at once.
            for round in 0..40u8 {
                put(&backend, "churn", small(round)).await;
            }
            let first = backend.shared.log.segments()[0].id;
            while backend.shared.compact_once().await.unwrap() {}
            assert_eq!(backend.shared.log.segments()[0].id, first);
            assert_eq!(read(&backend, "gone").await, None);
        }
        let backend = open_segmented(dir.path(), segment).await;
        assert_eq!(read(&backend, "gone").await, None);
        assert_eq!(read(&backend, "churn").await, Some(small(39)));
    }

    /// Where the log holds records of `kind` for `key`: (segment, offset).
    fn records_of(backend: &FilesystemBackend, kind: record::Kind, key: &str) -> Vec<(u64, u64)> {
        let id_bytes = id_bytes(&id(key));
        let mut found = Vec::new();
        for segment in backend.shared.log.segments() {
            let bytes = segment.read_all().unwrap();
            let mut offset = segment.start as usize;
            while offset < bytes.len() {
                let (record, len) = record::decode(&bytes.slice(offset..), &segment.nonce).unwrap();
                if record.kind == kind && record.id_bytes == id_bytes {
                    found.push((segment.id, offset as u64));
                }
                offset += len;
            }
        }
        found
    }

    #[tokio::test]
    async fn compaction_drops_tombstones_that_shadow_nothing_and_pins_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let segment = 16 * 1024;
        let metrics = StorageMetrics::unregistered();
        let backend = FilesystemBackend::open_with(dir.path().into(), segment, metrics.clone())
            .await
            .unwrap();
        // The first segment stays mostly live: the `Put` of "old" there outlives every
        // compaction, so its tombstone keeps mattering.
        put(&backend, "old", small(1)).await;
        for key in 0..13 {
            put(&backend, &format!("stable{key}"), small(key)).await;
        }
        backend.delete(&id("old")).await.unwrap();
        for round in 0..20u8 {
            put(&backend, "churn", small(round)).await;
        }
        // "gone" lives and dies among versions that die at once: once compacted, its
        // tombstone shadows nothing.
        put(&backend, "gone", small(2)).await;
        backend.delete(&id("gone")).await.unwrap();
        for round in 20..60u8 {
            put(&backend, "churn", small(round)).await;
        }
        let first = backend.shared.log.segments()[0].id;
        while backend.shared.compact_once().await.unwrap() {}
        assert_eq!(backend.shared.log.segments()[0].id, first);
        assert!(metrics.compactions.get() > 0);
        assert_eq!(records_of(&backend, record::Kind::Put, "gone"), []);
        assert_eq!(
            records_of(&backend, record::Kind::Delete, "gone"),
            [],
            "a tombstone that shadows nothing is dropped"
        );
        let pinned = records_of(&backend, record::Kind::Delete, "old");
        assert_eq!(pinned.len(), 1, "the tombstone of \"old\" still matters");

        // Its copy counts as live, so further passes leave it where it is.
        let sum = |f: fn(&log::Segment) -> u64| -> u64 {
            backend.shared.log.segments().iter().map(|s| f(s)).sum()
        };
        assert_eq!(
            metrics.log_live_bytes.get() as u64,
            sum(|s| s.live.load(std::sync::atomic::Ordering::Relaxed))
        );
        for key in 0..30 {
            put(&backend, &format!("more{key}"), small(key)).await;
        }
        while backend.shared.compact_once().await.unwrap() {}
        assert_eq!(records_of(&backend, record::Kind::Delete, "old"), pinned);
        assert_eq!(read(&backend, "old").await, None);
        assert_eq!(read(&backend, "gone").await, None);
        drop(backend);
        let backend = open_segmented(dir.path(), segment).await;
        assert_eq!(read(&backend, "old").await, None);
        assert_eq!(read(&backend, "gone").await, None);
        assert_eq!(read(&backend, "churn").await, Some(small(59)));
        assert_eq!(read(&backend, "stable3").await, Some(small(3)));
    }

    #[tokio::test]
    async fn the_sweep_opens_only_files_whose_indexed_deadline_passed() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let expiring = |secs: i64| Metadata {
            time_expires: Some(if secs < 0 {
                now - Duration::from_secs(secs.unsigned_abs())
            } else {
                now + Duration::from_secs(secs as u64)
            }),
            ..Metadata::default()
        };
        {
            let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
            backend
                .put(&id("expired"), &expiring(-1), body(large(1)))
                .await
                .unwrap();
            backend
                .put(&id("later"), &expiring(3600), body(large(2)))
                .await
                .unwrap();
            put(&backend, "forever", large(3)).await;
        }
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        for (key, expected) in [
            ("expired", Some(now - Duration::from_secs(1))),
            ("later", Some(now + Duration::from_secs(3600))),
            ("forever", None),
        ] {
            let digest = digest_of(&id_bytes(&id(key)));
            let Some(Entry::File { expires, .. }) = backend.shared.index.get(&digest) else {
                panic!("{key} has a file");
            };
            assert_eq!(expires, expected, "{key}: indexed from the log, unread");
        }
        // A file the sweep would have to open to learn anything is unreadable: only
        // the one whose deadline passed is opened.
        let later = backend
            .shared
            .object_path(&digest_of(&id_bytes(&id("later"))));
        std::fs::write(&later, b"not a header").unwrap();
        assert_eq!(backend.sweep_expired(now).await.unwrap(), 1);
        assert_eq!(read(&backend, "expired").await, None);
        assert!(later.exists());
        assert_eq!(object_files(dir.path()), 2);
    }

    #[tokio::test]
    async fn a_copy_committed_after_a_newer_version_does_not_win_on_reopen() {
        // Compaction copies a record while a newer version of its key commits: the copy
        // lands later in the log but keeps its older sequence number.
        let dir = tempfile::tempdir().unwrap();
        {
            let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
            put(&backend, "k", small(1)).await;
            let digest = digest_of(&id_bytes(&id("k")));
            let Some(Entry::Logged { location, .. }) = backend.shared.index.get(&digest) else {
                panic!("k is logged");
            };
            let raw = location
                .segment
                .read(location.offset, location.len as usize)
                .unwrap();
            put(&backend, "k", small(2)).await;
            backend
                .shared
                .log
                .append_copies(raw.to_vec(), vec![raw.len()])
                .await
                .unwrap();
            assert_eq!(read(&backend, "k").await, Some(small(2)));
        }
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        assert_eq!(read(&backend, "k").await, Some(small(2)));
    }

    /// Writers on disjoint keys race a compaction loop; every key ends at its writer's
    /// last version, before and after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn compaction_racing_writers_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let segment = 16 * 1024;
        let backend = Arc::new(open_segmented(dir.path(), segment).await);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let compactor = {
            let (backend, stop) = (backend.clone(), stop.clone());
            tokio::spawn(async move {
                let mut compacted = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if backend.shared.compact_once().await.unwrap() {
                        compacted += 1;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                compacted
            })
        };
        let writers: Vec<_> = (0..4u8)
            .map(|w| {
                let backend = backend.clone();
                tokio::spawn(async move {
                    for round in 0..60u8 {
                        let key = format!("w{w}-{}", round % 5);
                        if round % 7 == 6 {
                            backend.delete(&id(&key)).await.unwrap();
                        } else {
                            put(&backend, &key, vec![round; 700]).await;
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            compactor.await.unwrap() > 0,
            "compaction ran during the writes"
        );

        let expected = |k: u8| {
            let last = (0..60u8).rfind(|r| r % 5 == k).unwrap();
            (last % 7 != 6).then(|| vec![last; 700])
        };
        for w in 0..4 {
            for k in 0..5 {
                assert_eq!(read(&backend, &format!("w{w}-{k}")).await, expected(k));
            }
        }
        drop(Arc::try_unwrap(backend).expect("sole owner"));
        let backend = open_segmented(dir.path(), segment).await;
        for w in 0..4 {
            for k in 0..5 {
                assert_eq!(read(&backend, &format!("w{w}-{k}")).await, expected(k));
            }
        }
    }

    /// Random puts (log and file sizes), deletes, compactions and reopens, checked
    /// against a model after every reopen; deterministic seeds.
    #[tokio::test]
    async fn random_histories_match_a_model_across_compactions_and_reopens() {
        for seed in 1..=3u64 {
            let dir = tempfile::tempdir().unwrap();
            let segment = 8 * 1024;
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut model: HashMap<String, Vec<u8>> = HashMap::new();
            let mut backend = open_segmented(dir.path(), segment).await;
            for step in 0..400u64 {
                let key = format!("k{}", next(12));
                match next(20) {
                    0..=10 => {
                        let bytes = vec![step as u8; next(1500) as usize];
                        put(&backend, &key, bytes.clone()).await;
                        model.insert(key, bytes);
                    }
                    11..=12 => {
                        let bytes = vec![step as u8; SMALL_OBJECT + 1 + next(3000) as usize];
                        put(&backend, &key, bytes.clone()).await;
                        model.insert(key, bytes);
                    }
                    13..=16 => {
                        backend.delete(&id(&key)).await.unwrap();
                        model.remove(&key);
                    }
                    17..=18 => while backend.shared.compact_once().await.unwrap() {},
                    _ => {
                        drop(backend);
                        backend = open_segmented(dir.path(), segment).await;
                        for n in 0..12 {
                            let key = format!("k{n}");
                            assert_eq!(
                                read(&backend, &key).await,
                                model.get(&key).cloned(),
                                "seed {seed} step {step} key {key}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// 32 writers overwrite one key (each payload names its writer and round) while
    /// readers watch it: the key ends at the write the log ordered last, before and
    /// after a reopen, and no reader ever sees a version older than one it saw before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn same_key_writers_end_at_the_last_write_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(FilesystemBackend::open(dir.path().into()).await.unwrap());
        let key_bytes = id_bytes(&id("k"));
        let digest = digest_of(&key_bytes);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (backend, stop) = (backend.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Some(bytes) = read(&backend, "k").await {
                            if seen.last() != Some(&bytes) {
                                seen.push(bytes);
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                    seen
                })
            })
            .collect();
        let writers: Vec<_> = (0..32u8)
            .map(|w| {
                let (backend, key_bytes) = (backend.clone(), key_bytes.clone());
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    for round in 0..20u8 {
                        let payload = Bytes::from(vec![w, round, 0xa5]);
                        let seq = backend
                            .shared
                            .put_ordered(digest, &key_bytes, &Metadata::default(), payload.clone())
                            .await
                            .unwrap();
                        acknowledged.push((seq, payload.to_vec()));
                    }
                    acknowledged
                })
            })
            .collect();
        let mut order = HashMap::new();
        for writer in writers {
            order.extend(
                writer
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(seq, payload)| (payload, seq)),
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(order.len(), 32 * 20, "every write acknowledged once");
        let seqs: std::collections::HashSet<_> = order.values().collect();
        assert_eq!(seqs.len(), order.len(), "every write has its own place");
        let (last, _) = order.iter().max_by_key(|(_, seq)| **seq).unwrap();
        let last = last.clone();
        assert_eq!(read(&backend, "k").await, Some(last.clone()));
        for reader in readers {
            let seen: Vec<u64> = reader
                .await
                .unwrap()
                .iter()
                .map(|payload| order[payload])
                .collect();
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "a reader went back in log order: {seen:?}"
            );
        }
        drop(Arc::try_unwrap(backend).expect("sole owner"));
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        assert_eq!(read(&backend, "k").await, Some(last));
    }

    /// Rounds of concurrent same-key puts, deletes, metadata swaps and large puts,
    /// each followed by one put acknowledged after all of them: that put is what reads
    /// back, and what a reopen recovers equals what was served (visibility follows log
    /// order, also across the exclusive operations that wait for puts in flight).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_write_acknowledged_after_racing_same_key_writes_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = Arc::new(FilesystemBackend::open(dir.path().into()).await.unwrap());
        for round in 0..6u8 {
            let tasks: Vec<_> = (0..24u8)
                .map(|t| {
                    let backend = backend.clone();
                    tokio::spawn(async move {
                        match t % 6 {
                            0 => backend.delete(&id("k")).await.unwrap(),
                            1 => {
                                if let Some(current) = backend.head(&id("k")).await.unwrap() {
                                    let mut updated = current.clone();
                                    updated.origin = Some(format!("{round}-{t}"));
                                    backend
                                        .update_metadata(&id("k"), &current, &updated)
                                        .await
                                        .unwrap();
                                }
                            }
                            2 => put(&backend, "k", vec![t; SMALL_OBJECT + 10]).await,
                            _ => put(&backend, "k", vec![round, t]).await,
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let served = read(&backend, "k").await;
            let served_meta = backend.head(&id("k")).await.unwrap();
            drop(Arc::try_unwrap(backend).expect("sole owner"));
            backend = Arc::new(FilesystemBackend::open(dir.path().into()).await.unwrap());
            assert_eq!(read(&backend, "k").await, served, "round {round}");
            assert_eq!(
                backend.head(&id("k")).await.unwrap().map(|m| m.origin),
                served_meta.map(|m| m.origin),
                "round {round}"
            );
            put(&backend, "k", vec![round; 3]).await;
            assert_eq!(read(&backend, "k").await, Some(vec![round; 3]));
        }
    }

    #[tokio::test]
    async fn metadata_updates_are_compare_and_swap_for_logged_objects() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        put(&backend, "k", small(1)).await;
        let current = backend.head(&id("k")).await.unwrap().unwrap();
        let mut updated = current.clone();
        updated.origin = Some("changed".to_owned());
        assert!(backend
            .update_metadata(&id("k"), &current, &updated)
            .await
            .unwrap());
        // The old version is no longer current: a second swap from it fails.
        assert!(!backend
            .update_metadata(&id("k"), &current, &updated)
            .await
            .unwrap());
        drop(backend);
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        let reread = backend.head(&id("k")).await.unwrap().unwrap();
        assert_eq!(reread.origin.as_deref(), Some("changed"));
        assert_eq!(reread.size, Some(1000));
        assert_eq!(read(&backend, "k").await, Some(small(1)));
    }

    /// Bytes the log's segments hold.
    fn log_bytes(backend: &FilesystemBackend) -> u64 {
        backend
            .shared
            .log
            .segments()
            .iter()
            .map(|s| s.size.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Swaps `key`'s metadata for one with `origin`; asserts the swap happened.
    async fn patch(backend: &FilesystemBackend, key: &str, origin: &str) {
        let current = backend.head(&id(key)).await.unwrap().unwrap();
        let mut updated = current.clone();
        updated.origin = Some(origin.to_owned());
        assert!(backend
            .update_metadata(&id(key), &current, &updated)
            .await
            .unwrap());
    }

    /// Asserts `key` has metadata of `origin` over a payload of 5 000 bytes.
    async fn expect(backend: &FilesystemBackend, key: &str, origin: &str) {
        let head = backend.head(&id(key)).await.unwrap().unwrap();
        assert_eq!(head.origin.as_deref(), Some(origin), "{key}");
        assert_eq!(head.size, Some(5_000), "{key}");
    }

    #[tokio::test]
    async fn tiny_and_empty_payloads_are_referred_to_as_well() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = open_segmented(dir.path(), 64 * 1024).await;
        put(&backend, "empty", Vec::new()).await;
        put(&backend, "tiny", b"abc".to_vec()).await;
        patch(&backend, "empty", "e1").await;
        patch(&backend, "tiny", "t1").await;
        patch(&backend, "tiny", "t2").await;
        let digest = digest_of(&id_bytes(&id("tiny")));
        assert!(
            matches!(
                backend.shared.index.get(&digest),
                Some(Entry::Logged {
                    payload: Some(_),
                    ..
                })
            ),
            "the change refers to the put holding the payload"
        );
        drop(backend);
        backend = open_segmented(dir.path(), 64 * 1024).await;
        for (key, origin, size) in [("empty", "e1", 0), ("tiny", "t2", 3)] {
            let head = backend.head(&id(key)).await.unwrap().unwrap();
            assert_eq!(head.origin.as_deref(), Some(origin), "{key}");
            assert_eq!(head.size, Some(size), "{key}");
        }
        assert_eq!(read(&backend, "empty").await, Some(Vec::new()));
        assert_eq!(read(&backend, "tiny").await, Some(b"abc".to_vec()));
    }

    #[tokio::test]
    async fn a_metadata_change_of_a_logged_object_refers_to_its_payload_not_copies_it() {
        let dir = tempfile::tempdir().unwrap();
        let segment = 64 * 1024;
        let payload = |byte: u8| vec![byte; 5_000];
        let mut backend = open_segmented(dir.path(), segment).await;
        put(&backend, "k", payload(1)).await;
        put(&backend, "other", payload(2)).await;
        let before = log_bytes(&backend);
        patch(&backend, "k", "first").await;
        let grown = log_bytes(&backend) - before;
        assert!(grown < 1000, "a metadata change appended {grown} bytes");
        // A second change refers to the same payload, not to the first change.
        patch(&backend, "k", "second").await;
        assert!(log_bytes(&backend) - before < 2000);
        expect(&backend, "k", "second").await;
        assert_eq!(read(&backend, "k").await, Some(payload(1)));

        drop(backend);
        backend = open_segmented(dir.path(), segment).await;
        expect(&backend, "k", "second").await;
        assert_eq!(read(&backend, "k").await, Some(payload(1)));
        patch(&backend, "other", "other-first").await;

        // Churn until the segments holding the payloads are mostly dead and compacted:
        // the pairs become single records and still read back, also after a reopen.
        for round in 0..20u8 {
            put(&backend, "churn", small(round)).await;
            put(&backend, "churn-large", payload(round)).await;
        }
        let first_segment = backend.shared.log.segments()[0].id;
        while backend.shared.compact_once().await.unwrap() {}
        assert!(
            backend.shared.log.segments()[0].id > first_segment,
            "the segment holding the original payloads was compacted"
        );
        let digest = digest_of(&id_bytes(&id("k")));
        assert!(
            matches!(
                backend.shared.index.get(&digest),
                Some(Entry::Logged { payload: None, .. })
            ),
            "compaction rewrote the pair as one record"
        );
        expect(&backend, "k", "second").await;
        expect(&backend, "other", "other-first").await;
        assert_eq!(read(&backend, "k").await, Some(payload(1)));
        assert_eq!(read(&backend, "other").await, Some(payload(2)));
        drop(backend);
        backend = open_segmented(dir.path(), segment).await;
        expect(&backend, "k", "second").await;
        expect(&backend, "other", "other-first").await;
        assert_eq!(read(&backend, "k").await, Some(payload(1)));
        assert_eq!(read(&backend, "other").await, Some(payload(2)));

        // A change after compaction refers to the rewritten record; an overwrite and a
        // delete replace the pair.
        patch(&backend, "k", "third").await;
        put(&backend, "other", payload(9)).await;
        drop(backend);
        backend = open_segmented(dir.path(), segment).await;
        expect(&backend, "k", "third").await;
        assert_eq!(read(&backend, "k").await, Some(payload(1)));
        assert_eq!(read(&backend, "other").await, Some(payload(9)));
        assert_eq!(
            backend.head(&id("other")).await.unwrap().unwrap().origin,
            None
        );
    }

    /// Metadata changes race a compaction loop over segments holding the payloads they
    /// refer to: every key keeps its payload and newest metadata, before and after a
    /// reopen (a reference to a removed segment would fail the reopen).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn metadata_changes_racing_compaction_keep_their_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let segment = 32 * 1024;
        let backend = Arc::new(open_segmented(dir.path(), segment).await);
        let payload = |k: u8| vec![k; 3000];
        for k in 0..8u8 {
            put(&backend, &format!("k{k}"), payload(k)).await;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let compactor = {
            let (backend, stop) = (backend.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if !backend.shared.compact_once().await.unwrap() {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        let writers: Vec<_> = (0..8u8)
            .map(|k| {
                let backend = backend.clone();
                tokio::spawn(async move {
                    for round in 0..40 {
                        patch(&backend, &format!("k{k}"), &format!("{round}")).await;
                        put(&backend, &format!("churn{k}"), vec![round as u8; 2000]).await;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        compactor.await.unwrap();
        let check = |backend: Arc<FilesystemBackend>| async move {
            for k in 0..8u8 {
                let key = format!("k{k}");
                assert_eq!(read(&backend, &key).await, Some(payload(k)), "{key}");
                let head = backend.head(&id(&key)).await.unwrap().unwrap();
                assert_eq!(head.origin.as_deref(), Some("39"), "{key}");
            }
        };
        check(backend.clone()).await;
        drop(Arc::try_unwrap(backend).expect("sole owner"));
        check(Arc::new(open_segmented(dir.path(), segment).await)).await;
    }

    #[tokio::test]
    async fn a_dead_log_writer_makes_the_backend_not_ready_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = StorageMetrics::unregistered();
        let backend = FilesystemBackend::open_with_metrics(dir.path().into(), metrics.clone())
            .await
            .unwrap();
        put(&backend, "k", small(1)).await;
        backend.probe().await.unwrap();
        assert_eq!(metrics.writer_alive.get(), 1);

        backend.shared.log.panic_writer();
        for _ in 0..500 {
            if !backend.shared.log.writer_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.writer_alive.get(), 0);
        let err = backend.probe().await.unwrap_err();
        assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("writer thread died"), "{err}");
        // Writes fail at once instead of hanging; reads still work.
        let err = backend
            .put(&id("k2"), &Metadata::default(), body(small(2)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("log writer stopped"), "{err}");
        assert_eq!(read(&backend, "k").await, Some(small(1)));
    }

    #[tokio::test]
    async fn a_panic_in_blocking_work_resumes_as_a_panic_not_an_io_error() {
        let caught = AssertUnwindSafe(blocking(|| -> Result<(), BackendError> {
            panic!("injected blocking panic")
        }))
        .catch_unwind()
        .await
        .unwrap_err();
        assert_eq!(
            crate::service::panic_message(caught.as_ref()),
            "injected blocking panic"
        );
    }

    #[tokio::test]
    async fn a_metadata_change_on_a_file_is_logged_and_never_rewrites_the_file() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let segment = 16 * 1024;
        let mut backend = open_segmented(dir.path(), segment).await;
        put(&backend, "big", large(1)).await;
        let path = backend
            .shared
            .object_path(&digest_of(&id_bytes(&id("big"))));
        let stat = |path: &Path| {
            let m = std::fs::metadata(path).unwrap();
            (m.ino(), m.mtime(), m.mtime_nsec(), m.len())
        };
        let before = stat(&path);
        let current = backend.head(&id("big")).await.unwrap().unwrap();
        let mut updated = current.clone();
        updated.origin = Some("changed".to_owned());
        assert!(backend
            .update_metadata(&id("big"), &current, &updated)
            .await
            .unwrap());
        assert!(
            !backend
                .update_metadata(&id("big"), &current, &updated)
                .await
                .unwrap(),
            "still compare-and-swap"
        );
        assert_eq!(
            stat(&path),
            before,
            "the file is neither rewritten nor touched"
        );
        let expect_changed = |metadata: Metadata| {
            assert_eq!(metadata.origin.as_deref(), Some("changed"));
            assert_eq!(metadata.size, Some(large(1).len() as u64));
        };
        expect_changed(backend.head(&id("big")).await.unwrap().unwrap());
        assert_eq!(read(&backend, "big").await, Some(large(1)));

        // Compaction moves the metadata record along; it still applies after a reopen.
        for round in 0..40u8 {
            put(&backend, "churn", small(round)).await;
        }
        while backend.shared.compact_once().await.unwrap() {}
        expect_changed(backend.head(&id("big")).await.unwrap().unwrap());
        drop(backend);
        backend = open_segmented(dir.path(), segment).await;
        expect_changed(backend.head(&id("big")).await.unwrap().unwrap());
        assert_eq!(read(&backend, "big").await, Some(large(1)));
        assert_eq!(stat(&path), before);

        // A file renamed into place whose marker never committed (a crash) keeps its
        // own header: the metadata record named the file it replaced.
        let renamed = Metadata {
            filename: Some("unmarked".to_owned()),
            ..Metadata::default()
        };
        let mut file = files::encode_header(&id("big"), &renamed);
        file.extend_from_slice(&large(7));
        drop(backend);
        std::fs::write(&path, file).unwrap();
        backend = open_segmented(dir.path(), segment).await;
        let reread = backend.head(&id("big")).await.unwrap().unwrap();
        assert_eq!(reread.origin, None);
        assert_eq!(reread.filename.as_deref(), Some("unmarked"));
        assert_eq!(read(&backend, "big").await, Some(large(7)));

        // A new write replaces file and metadata alike.
        put(&backend, "big", large(2)).await;
        drop(backend);
        backend = open_segmented(dir.path(), segment).await;
        let reread = backend.head(&id("big")).await.unwrap().unwrap();
        assert_eq!((reread.origin, reread.filename), (None, None));
        assert_eq!(read(&backend, "big").await, Some(large(2)));
    }

    /// Where a finished resumable session's adoption stops when the server dies.
    #[derive(Debug, Clone, Copy)]
    enum Crash {
        /// Every byte staged and synced, nothing adopted yet.
        BeforeAdopting,
        /// Linked and renamed into `objects/`, marker not committed.
        AfterLink,
        /// Marker committed, staged name still there.
        AfterMarker,
        /// Like `AfterMarker`, and the upload collector runs before the client retries.
        AfterMarkerThenCollected,
        /// Staged name removed (and the removal synced): the session is finished.
        AfterUnlink,
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).unwrap().ino()
    }

    /// The one session's `data` under a root's staging.
    fn staged_data(root: &Path) -> PathBuf {
        let sessions = root.join("uploads/resumable");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&sessions)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|p| p.join("data"))
            .collect();
        assert_eq!(found.len(), 1, "one session");
        found.pop().unwrap()
    }

    /// A resumable session's staged file becomes the object's file by a link, never a
    /// copy, and a crash at any step of that leaves the session resumable with every
    /// byte or the object committed: after a restart the client's offset query finishes
    /// the job, the object reads back whole, its file is the staged inode and nothing is
    /// left in staging. A previous version of the key (logged or in a file) changes how
    /// recovery treats the renamed file, so each crash point runs against each.
    #[tokio::test]
    async fn an_adopted_session_survives_a_crash_at_every_step() {
        use crate::uploads::resumable::{self, Progress};
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 + i / 977) as u8).collect();
        let metadata = Metadata {
            content_type: "application/x-adopted".to_owned(),
            ..Metadata::default()
        };
        for crash in [
            Crash::BeforeAdopting,
            Crash::AfterLink,
            Crash::AfterMarker,
            Crash::AfterMarkerThenCollected,
            Crash::AfterUnlink,
        ] {
            for previous in [None, Some(small(1)), Some(large(2))] {
                let context = format!("{crash:?}, previous {:?}", previous.as_ref().map(Vec::len));
                let dir = tempfile::tempdir().unwrap();
                let root = dir.path();
                let backend = FilesystemBackend::open(root.into()).await.unwrap();
                if let Some(previous) = previous.clone() {
                    put(&backend, "k", previous).await;
                }
                let staging = backend.upload_staging().unwrap();
                let created =
                    resumable::create(&staging, &backend, id("k"), metadata.clone(), 200_000)
                        .await
                        .unwrap();
                let token = created.token;
                let progress = resumable::put_chunk(
                    &staging,
                    &backend,
                    &token,
                    &id("k"),
                    0,
                    120_000,
                    body(data[..120_000].to_vec()),
                )
                .await
                .unwrap();
                assert_eq!(progress, Progress::Incomplete(120_000), "{context}");
                let staged = staged_data(root);
                let bytes = std::fs::read(&staged).unwrap();
                assert!(
                    bytes.starts_with(b"STRATAOB\x01"),
                    "staged as an object file"
                );
                let header_len = (bytes.len() - 120_000) as u64;
                // The last chunk lands (synced) and the server dies before publishing.
                {
                    use std::io::Write as _;
                    let mut file = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&staged)
                        .unwrap();
                    file.write_all(&data[120_000..]).unwrap();
                    file.sync_all().unwrap();
                }
                let staged_inode = inode(&staged);
                let digest = digest_of(&id_bytes(&id("k")));
                let target = backend.shared.object_path(&digest);
                let adopt = || {
                    let (staged, target, metadata) =
                        (staged.clone(), target.clone(), metadata.clone());
                    blocking(move || {
                        files::adopt(&staged, &target, &id("k"), &metadata, header_len)
                    })
                };
                match crash {
                    Crash::BeforeAdopting => {}
                    Crash::AfterLink => assert_eq!(adopt().await.unwrap().unwrap(), 200_000),
                    Crash::AfterMarker | Crash::AfterMarkerThenCollected => {
                        adopt().await.unwrap().unwrap();
                        backend
                            .shared
                            .mark_external(digest, &id_bytes(&id("k")), &metadata)
                            .await
                            .unwrap();
                    }
                    Crash::AfterUnlink => {
                        let size = backend
                            .shared
                            .adopt_file(
                                digest,
                                &id("k"),
                                &id_bytes(&id("k")),
                                &metadata,
                                staged.clone(),
                                header_len,
                            )
                            .await
                            .unwrap()
                            .unwrap();
                        assert_eq!(size, 200_000);
                    }
                }
                drop(backend);
                let backend = FilesystemBackend::open(root.into()).await.unwrap();
                match crash {
                    // The session still holds every byte under its own name.
                    Crash::BeforeAdopting | Crash::AfterLink => {
                        assert_eq!(inode(&staged), staged_inode, "{context}");
                    }
                    // Committed: the object is there before the client comes back.
                    Crash::AfterMarker | Crash::AfterMarkerThenCollected | Crash::AfterUnlink => {
                        assert_eq!(read(&backend, "k").await, Some(data.clone()), "{context}");
                    }
                }
                if let Crash::AfterMarkerThenCollected = crash {
                    let later = SystemTime::now() + Duration::from_secs(3600);
                    resumable::collect_garbage(&staging, Duration::ZERO, later)
                        .await
                        .unwrap();
                    assert!(!staged.exists(), "{context}");
                } else {
                    let progress = resumable::query_offset(&staging, &backend, &token, &id("k"))
                        .await
                        .unwrap();
                    assert_eq!(progress, Progress::Complete, "{context}");
                    // Finished without a `done` marker: `session.json` without `data`.
                    assert!(matches!(
                        resumable::put_chunk(
                            &staging,
                            &backend,
                            &token,
                            &id("k"),
                            0,
                            3,
                            body(b"abc".to_vec())
                        )
                        .await,
                        Err(resumable::ResumableError::Gone)
                    ));
                    assert!(matches!(
                        resumable::cancel(&staging, &token, &id("k")).await,
                        Err(resumable::ResumableError::Gone)
                    ));
                    let session = staged.parent().unwrap();
                    assert!(!session.join("done").exists(), "{context}");
                    assert!(session.join("session.json").exists(), "{context}");
                    // The finished session counts from its completion, not its creation.
                    let collected = resumable::collect_garbage(
                        &staging,
                        Duration::from_secs(600),
                        SystemTime::now(),
                    )
                    .await
                    .unwrap();
                    assert_eq!(collected, 0, "{context}");
                    assert_eq!(
                        resumable::query_offset(&staging, &backend, &token, &id("k"))
                            .await
                            .unwrap(),
                        Progress::Complete,
                        "{context}"
                    );
                }
                assert_eq!(read(&backend, "k").await, Some(data.clone()), "{context}");
                let head = backend.head(&id("k")).await.unwrap().unwrap();
                assert_eq!(head.content_type, "application/x-adopted", "{context}");
                assert_eq!(
                    inode(&target),
                    staged_inode,
                    "adopted, not copied: {context}"
                );
                assert!(!staged.exists(), "nothing left staged: {context}");
                assert_eq!(object_files(root), 1, "{context}");
                drop(backend);
                let backend = FilesystemBackend::open(root.into()).await.unwrap();
                assert_eq!(read(&backend, "k").await, Some(data.clone()), "{context}");
                assert_eq!(inode(&target), staged_inode, "{context}");
            }
        }
    }

    /// The header written at create is synced only with the first chunk: a crash in
    /// between may leave `data` shorter than the header (it is written again and the
    /// file still adopted) or the header's length with other bytes (the payload is
    /// copied). Either way the session resumes at 0 and the object reads back whole.
    #[tokio::test]
    async fn a_header_lost_before_the_first_chunk_is_rewritten_or_copied() {
        use crate::uploads::resumable::{self, Progress, ResumableError};
        let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 + i / 313) as u8).collect();
        for truncate in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let backend = FilesystemBackend::open(root.into()).await.unwrap();
            let staging = backend.upload_staging().unwrap();
            let token =
                resumable::create(&staging, &backend, id("k"), Metadata::default(), 150_000)
                    .await
                    .unwrap()
                    .token;
            let staged = staged_data(root);
            let header_len = std::fs::metadata(&staged).unwrap().len();
            assert!(header_len > 0);
            if truncate {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&staged)
                    .unwrap()
                    .set_len(5)
                    .unwrap();
            } else {
                std::fs::write(&staged, vec![0u8; header_len as usize]).unwrap();
            }
            drop(backend);
            let backend = FilesystemBackend::open(root.into()).await.unwrap();
            assert_eq!(
                resumable::query_offset(&staging, &backend, &token, &id("k"))
                    .await
                    .unwrap(),
                Progress::Incomplete(0),
                "truncated {truncate}"
            );
            assert_eq!(std::fs::metadata(&staged).unwrap().len(), header_len);
            let staged_inode = inode(&staged);
            let progress = resumable::put_chunk(
                &staging,
                &backend,
                &token,
                &id("k"),
                0,
                150_000,
                body(data.clone()),
            )
            .await
            .unwrap();
            assert_eq!(progress, Progress::Complete, "truncated {truncate}");
            assert_eq!(read(&backend, "k").await, Some(data.clone()));
            let target = backend.shared.object_path(&digest_of(&id_bytes(&id("k"))));
            // A rewritten header is this object's: adopted. Zeros are not: copied.
            assert_eq!(inode(&target) == staged_inode, truncate);
            assert!(!staged.exists(), "nothing left staged");
            assert!(matches!(
                resumable::put_chunk(&staging, &backend, &token, &id("k"), 0, 0, body(vec![]))
                    .await,
                Err(ResumableError::Gone)
            ));
            drop(backend);
            let backend = FilesystemBackend::open(root.into()).await.unwrap();
            assert_eq!(read(&backend, "k").await, Some(data.clone()));
        }
    }

    #[tokio::test]
    async fn sweep_removes_expired_logged_and_file_objects() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        let now = SystemTime::now();
        let expiring = Metadata {
            time_expires: Some(now - Duration::from_secs(1)),
            ..Metadata::default()
        };
        for (key, bytes) in [("small", small(1)), ("large", large(2))] {
            backend.put(&id(key), &expiring, body(bytes)).await.unwrap();
        }
        put(&backend, "kept", small(3)).await;
        assert_eq!(backend.sweep_expired(now).await.unwrap(), 2);
        assert_eq!(read(&backend, "small").await, None);
        assert_eq!(read(&backend, "large").await, None);
        assert_eq!(read(&backend, "kept").await, Some(small(3)));
        drop(backend);
        let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
        assert_eq!(read(&backend, "small").await, None);
        assert_eq!(object_files(dir.path()), 0);
    }
}
