//! Staging in the object store the backend itself writes to (the `s3compatible` bucket,
//! and through it the `tiered` long-term bucket), so every pod of a StorageService sees
//! every unfinished upload and any pod can continue what another started.
//!
//! Blobs are objects under a reserved root prefix ([`crate::backend::s3::STAGING_PREFIX`])
//! that no object path can produce, because it is not a valid usecase. Bodies stream
//! through a bounded [`BufWriter`] (one request up to [`BUFFER`], S3 multipart beyond),
//! so a part or chunk never sits whole in memory; every object write is atomic, so a
//! failed write leaves the previous blob in place.
//!
//! Objects cannot be appended to, so an appendable blob `name` (a resumable session's
//! bytes) is a series of segment objects `name/<offset, 20 digits>`, one per chunk. Its
//! length is the end of the contiguous run of segments from offset 0: a segment that a
//! racing writer left elsewhere is ignored, never read as data. The per-session lock
//! only spans one process, so two pods may write a chunk at the same offset at once
//! (a client retrying a chunk whose response it lost); the last commit wins whole.
//! Every segment holds the object's bytes at its own offset, so the run stays a correct
//! prefix, and a client whose acknowledged offset lost the race learns the real one
//! from the next 409.
//!
//! Why not map M1–M6 onto native S3 multipart (UploadPart into the final object): S3
//! rejects parts under 5 MiB except the last at completion, while the API accepts parts
//! of any size; the object's metadata rides in `x-amz-meta-strata`, which must be given
//! at CreateMultipartUpload and `object_store`'s `MultipartStore` cannot send; and the
//! tiered backend must decide the tier (and swap its tombstone) only once the size is
//! known. Staging costs one extra copy of the bytes at completion, streamed through the
//! backend's ordinary `put` (itself S3 multipart for large bodies).

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

use super::store::AppendError;
use crate::backend::PayloadStream;

/// Write buffer per staged body; larger bodies go up as S3 multipart parts of this size.
pub const BUFFER: usize = 8 * 1024 * 1024;
/// Parts in flight per staged body (memory per write is about this times [`BUFFER`]).
const PARTS_IN_FLIGHT: usize = 2;
/// Objects deleted at once when removing a directory.
const DELETE_CONCURRENCY: usize = 16;

/// Staging objects under `root` in `store`; cheap to clone.
#[derive(Debug, Clone)]
pub struct BucketStaging {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

fn io_error(err: object_store::Error) -> io::Error {
    match err {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, err),
        other => io::Error::other(other),
    }
}

fn is_not_found(err: &object_store::Error) -> bool {
    matches!(err, object_store::Error::NotFound { .. })
}

/// The name of segment `offset` of an appendable blob: fixed width, so names sort by
/// offset.
fn segment_name(offset: u64) -> String {
    format!("{offset:020}")
}

impl BucketStaging {
    /// Staging under `root` (a prefix no object path uses) in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: &str) -> Self {
        Self {
            store,
            root: Path::from(root),
        }
    }

    /// The object path of a staging name (`/`-separated, server-generated parts).
    fn path(&self, name: &str) -> Path {
        name.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    fn writer(&self, path: Path) -> BufWriter {
        BufWriter::with_capacity(self.store.clone(), path, BUFFER)
            .with_max_concurrency(PARTS_IN_FLIGHT)
    }

    /// Streams `stream` into one object; a failing stream stores nothing.
    pub async fn put(&self, name: &str, mut stream: PayloadStream) -> io::Result<u64> {
        let mut writer = self.writer(self.path(name));
        let mut size = 0u64;
        let written: io::Result<()> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                writer.put(chunk).await.map_err(io_error)?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = written {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%abort, "cannot abort staged s3 multipart upload");
            }
            return Err(err);
        }
        writer.shutdown().await?;
        Ok(size)
    }

    /// Stores small bytes in one request.
    pub async fn put_bytes(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(io_error)
    }

    /// Conditional create (`If-None-Match: *`): the first writer of any pod wins.
    pub async fn put_if_absent(&self, name: &str, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(name), PutPayload::from(bytes.clone()), options)
            .await
        {
            Ok(_) => Ok(bytes),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                Ok(self.read(name).await?.unwrap_or(bytes))
            }
            Err(err) => Err(io_error(err)),
        }
    }

    /// Reads a whole (small) blob; `None` when missing.
    pub async fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.store.get(&self.path(name)).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(io_error)?.to_vec())),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(io_error(err)),
        }
    }

    /// Streams a blob.
    pub async fn open(&self, name: &str) -> io::Result<PayloadStream> {
        let result = self.store.get(&self.path(name)).await.map_err(io_error)?;
        Ok(result.into_stream().map_err(io_error).boxed())
    }

    async fn head(&self, name: &str) -> io::Result<Option<object_store::ObjectMeta>> {
        match self.store.head(&self.path(name)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(io_error(err)),
        }
    }

    /// Size of a blob; `None` when missing.
    pub async fn len(&self, name: &str) -> io::Result<Option<u64>> {
        Ok(self.head(name).await?.map(|meta| meta.size))
    }

    /// Last modification time of a blob; `None` when missing.
    pub async fn modified(&self, name: &str) -> io::Result<Option<SystemTime>> {
        Ok(self
            .head(name)
            .await?
            .map(|meta| SystemTime::from(meta.last_modified)))
    }

    /// Names directly below `dir` (one level), objects and "directories" alike.
    pub async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(dir)))
            .await
            .map_err(io_error)?;
        let mut out: Vec<String> = listed
            .objects
            .iter()
            .map(|meta| &meta.location)
            .chain(listed.common_prefixes.iter())
            .filter_map(|path| path.filename().map(str::to_owned))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Removes one blob; a missing blob is fine.
    pub async fn remove(&self, name: &str) -> io::Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(io_error(err)),
        }
    }

    /// Removes every object below `dir`.
    pub async fn remove_all(&self, dir: &str) -> io::Result<()> {
        let prefix = self.path(dir);
        self.remove_paths(self.store.list(Some(&prefix)).map_ok(|meta| meta.location))
            .await
    }

    async fn remove_paths(
        &self,
        paths: impl futures::Stream<Item = object_store::Result<Path>> + Send,
    ) -> io::Result<()> {
        paths
            .map_err(io_error)
            .map_ok(|path| async move {
                match self.store.delete(&path).await {
                    Ok(()) => Ok(()),
                    Err(err) if is_not_found(&err) => Ok(()),
                    Err(err) => Err(io_error(err)),
                }
            })
            .try_buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    /// The segments of appendable blob `name`, by offset, with their sizes.
    async fn segments(&self, name: &str) -> io::Result<BTreeMap<u64, u64>> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.path(name)))
            .try_collect()
            .await
            .map_err(io_error)?;
        Ok(listed
            .iter()
            .filter_map(|meta| {
                let offset = meta.location.filename()?.parse::<u64>().ok()?;
                Some((offset, meta.size))
            })
            .collect())
    }

    /// The offsets of the contiguous segments from 0, and the length they add up to.
    fn contiguous(segments: &BTreeMap<u64, u64>) -> (Vec<u64>, u64) {
        let mut offsets = Vec::new();
        let mut end = 0u64;
        while let Some(&size) = segments.get(&end).filter(|size| **size > 0) {
            offsets.push(end);
            end += size;
        }
        (offsets, end)
    }

    /// Length of appendable blob `name` (0 when it has no segments).
    pub async fn appended_len(&self, name: &str) -> io::Result<u64> {
        Ok(Self::contiguous(&self.segments(name).await?).1)
    }

    /// Streams appendable blob `name`: its contiguous segments in order.
    pub async fn open_appended(&self, name: &str) -> io::Result<PayloadStream> {
        let (offsets, _) = Self::contiguous(&self.segments(name).await?);
        let this = self.clone();
        let name = name.to_owned();
        Ok(futures::stream::iter(offsets)
            .then(move |offset| {
                let this = this.clone();
                let segment = format!("{name}/{}", segment_name(offset));
                async move { this.open(&segment).await }
            })
            .try_flatten()
            .boxed())
    }

    /// Appends `stream` to appendable blob `name` as a new segment at `at`, which must
    /// be its current length; at most `limit` bytes. A broken stream keeps the bytes
    /// received before the break as a segment (a correct prefix); an over-long one
    /// stores nothing.
    pub async fn append(
        &self,
        name: &str,
        at: u64,
        mut stream: PayloadStream,
        limit: u64,
    ) -> io::Result<Result<u64, AppendError>> {
        let have = self.appended_len(name).await?;
        if have != at {
            return Ok(Err(AppendError::Offset(have)));
        }
        let mut writer = self.writer(self.path(&format!("{name}/{}", segment_name(at))));
        let mut written = 0u64;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) if written + chunk.len() as u64 > limit => {
                    failed = Some(AppendError::TooLong);
                    break;
                }
                Ok(chunk) => {
                    written += chunk.len() as u64;
                    if let Err(err) = writer.put(chunk).await {
                        let _ = writer.abort().await;
                        return Err(io_error(err));
                    }
                }
                Err(err) => {
                    failed = Some(AppendError::Stream(err));
                    break;
                }
            }
        }
        if written == 0 || matches!(failed, Some(AppendError::TooLong)) {
            // Nothing to keep: no empty segments, never bytes beyond the declared length.
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%abort, "cannot abort staged s3 multipart upload");
            }
        } else {
            writer.shutdown().await?;
        }
        Ok(match failed {
            Some(err) => Err(err),
            None => Ok(at + written),
        })
    }

    /// Removes appendable blob `name` (all its segments).
    pub async fn remove_appended(&self, name: &str) -> io::Result<()> {
        self.remove_all(name).await
    }

    /// Removes each directory directly below `root` whose newest object anywhere below
    /// it is older than `max_age` at `now`, except names `keep` accepts; returns how many.
    /// One listing of `root` covers every upload, segments included.
    pub async fn remove_untouched(
        &self,
        root: &str,
        max_age: Duration,
        now: SystemTime,
        keep: impl Fn(&str) -> bool,
    ) -> io::Result<u64> {
        let prefix = self.path(root);
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(io_error)?;
        let mut newest: BTreeMap<String, (SystemTime, Vec<Path>)> = BTreeMap::new();
        for meta in listed {
            let Some(top) = meta
                .location
                .prefix_match(&prefix)
                .and_then(|mut rest| rest.next())
                .map(|part| part.as_ref().to_owned())
            else {
                continue;
            };
            let modified = SystemTime::from(meta.last_modified);
            let entry = newest
                .entry(top)
                .or_insert_with(|| (SystemTime::UNIX_EPOCH, Vec::new()));
            entry.0 = entry.0.max(modified);
            entry.1.push(meta.location);
        }
        let mut removed = 0;
        for (name, (modified, paths)) in newest {
            if keep(&name) || now.duration_since(modified).unwrap_or_default() <= max_age {
                continue;
            }
            self.remove_paths(futures::stream::iter(paths.into_iter().map(Ok)))
                .await?;
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use object_store::memory::InMemory;

    fn once(bytes: &'static [u8]) -> PayloadStream {
        futures::stream::once(async move { Ok(Bytes::from_static(bytes)) }).boxed()
    }

    #[tokio::test]
    async fn segments_form_one_blob_and_stray_segments_are_ignored() {
        let staging = BucketStaging::new(Arc::new(InMemory::new()), ".staging");
        assert_eq!(staging.appended_len("r/s/data").await.unwrap(), 0);
        assert_eq!(
            staging
                .append("r/s/data", 0, once(b"abc"), 10)
                .await
                .unwrap()
                .unwrap(),
            3
        );
        assert!(matches!(
            staging.append("r/s/data", 0, once(b"x"), 10).await.unwrap(),
            Err(AppendError::Offset(3))
        ));
        assert!(matches!(
            staging
                .append("r/s/data", 3, once(b"toolong"), 2)
                .await
                .unwrap(),
            Err(AppendError::TooLong)
        ));
        // A segment off the contiguous run (a racing writer's) is not data.
        staging
            .put_bytes(&format!("r/s/data/{}", segment_name(9)), b"zz".to_vec())
            .await
            .unwrap();
        staging
            .append("r/s/data", 3, once(b"de"), 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(staging.appended_len("r/s/data").await.unwrap(), 5);
        let body: Vec<Bytes> = staging
            .open_appended("r/s/data")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(body.concat(), b"abcde");
        assert_eq!(staging.list("r").await.unwrap(), ["s"]);
        assert_eq!(staging.list("r/s").await.unwrap(), ["data"]);
        staging.remove_appended("r/s/data").await.unwrap();
        assert_eq!(staging.appended_len("r/s/data").await.unwrap(), 0);
        assert_eq!(staging.list("r").await.unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn only_the_first_conditional_create_wins() {
        let staging = BucketStaging::new(Arc::new(InMemory::new()), ".staging");
        assert_eq!(
            staging.put_if_absent("k", b"one".to_vec()).await.unwrap(),
            b"one"
        );
        assert_eq!(
            staging.put_if_absent("k", b"two".to_vec()).await.unwrap(),
            b"one"
        );
    }
}
