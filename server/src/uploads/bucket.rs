//! Staging in the object store the backend itself writes to (the `s3compatible` bucket,
//! and through it the `tiered` long-term bucket), so every pod of a StorageService sees
//! every unfinished upload and any pod can continue what another started.
//!
//! Blobs are objects under a reserved root prefix ([`crate::backend::s3::STAGING_PREFIX`])
//! that no object path can produce, because it is not a valid usecase. Bodies stream
//! through the backend's bounded object writer ([`object_writer`]: one request up to
//! 8 MiB, S3 multipart beyond), so a part or chunk never sits whole in memory; every
//! object write is atomic, so a failed write leaves the previous blob in place.
//!
//! Objects cannot be appended to, so an appendable blob `name` (a resumable session's
//! bytes) is a series of chunks, each two objects: its body `name/<offset>.<uuid>`
//! (offset 20 digits, so names sort by offset), written first under a name no other
//! writer uses, then its claim `name/<offset>`, created conditionally (`PutMode::Create`,
//! `If-None-Match: *`) and holding the body's name. The per-session lock only spans one
//! server, so two pods may write a chunk at the same offset at once (a client retrying a
//! chunk whose response it lost); exactly one claim wins, the loser removes its body and
//! reports the real length (409), so every acknowledged offset stays in the bucket. The
//! blob's length is the end of the contiguous run of claimed chunks from offset 0; only
//! claimed bodies are ever read. A body is complete before its claim exists and is only
//! removed with its whole blob, so when the listing shows a single body at a claimed
//! offset it is the claimed one, and the claim is read only when several are listed.
//! A crash between the steps leaves an unclaimed body, never a claim without its body:
//! the session stays at its acknowledged offset, and [`BucketStaging::remove_unclaimed`]
//! collects such leftovers once they are older than the upload age limit.
//!
//! Multipart parts large enough for S3 do not come here: they stream straight into S3's
//! own multipart upload of the object (`uploads::multipart`, `backend::s3_native`), and
//! only the upload's records and its smaller parts are staged.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

use super::store::AppendError;
use crate::backend::s3::{object_writer, stream_into, StreamError};
use crate::backend::PayloadStream;

/// Objects deleted at once when removing a directory.
const DELETE_CONCURRENCY: usize = 16;

/// Staging objects under `root` in `store`; cheap to clone.
#[derive(Debug, Clone)]
pub struct BucketStaging {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// Values of [`BucketStaging::put_once`], shared by the clones of one instance.
    kept: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
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

/// The claim name of the chunk at `offset` of an appendable blob: fixed width, so names
/// sort by offset.
fn segment_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Width of a segment (claim) name.
const SEGMENT_WIDTH: usize = 20;

/// The offset a chunk's claim name (`<offset>`) stands for.
fn claim_offset(file: &str) -> Option<u64> {
    if file.len() != SEGMENT_WIDTH || !file.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    file.parse().ok()
}

/// The offset a chunk's body name (`<offset>.<uuid>`) stands for.
fn body_offset(file: &str) -> Option<u64> {
    let (offset, tag) = file.split_once('.')?;
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    claim_offset(offset)
}

/// A listed chunk body: its file name, size and last modification.
#[derive(Debug, Clone)]
struct Body {
    file: String,
    size: u64,
    modified: SystemTime,
}

/// The listing of one appendable blob: claimed offsets and the bodies at each offset.
#[derive(Debug, Default)]
struct Chunks {
    claims: std::collections::BTreeSet<u64>,
    bodies: BTreeMap<u64, Vec<Body>>,
}

/// Is this put error a failed conditional create (the name exists)?
fn lost_create(err: &object_store::Error) -> bool {
    matches!(
        err,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

impl BucketStaging {
    /// Staging under `root` (a prefix no object path uses) in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: &str) -> Self {
        Self {
            store,
            root: Path::from(root),
            kept: Arc::default(),
        }
    }

    /// Identifies the store this staging writes through (one per opened backend, so
    /// one per server); see [`super::Staging::lock_scope`].
    pub fn scope(&self) -> usize {
        Arc::as_ptr(&self.store) as *const () as usize
    }

    /// The object path of a staging name (`/`-separated, server-generated parts).
    fn path(&self, name: &str) -> Path {
        name.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    fn writer(&self, path: Path) -> BufWriter {
        object_writer(self.store.clone(), path)
    }

    /// Streams `stream` into one object; a failing stream stores nothing.
    pub async fn put(&self, name: &str, stream: PayloadStream) -> io::Result<u64> {
        let writer = self.writer(self.path(name));
        stream_into(writer, stream).await.map_err(|err| match err {
            StreamError::Body(err) | StreamError::Store(err) => err,
        })
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

    /// [`Self::put_if_absent`] for a value that is never replaced or removed (the token
    /// secret): the bucket is asked once per instance, not on every request.
    pub async fn put_once(&self, name: &str, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let kept = || self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = kept().get(name) {
            return Ok(value.clone());
        }
        let stored = self.put_if_absent(name, bytes).await?;
        kept().insert(name.to_owned(), stored.clone());
        Ok(stored)
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

    async fn head(&self, name: &str) -> io::Result<Option<ObjectMeta>> {
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

    /// Every object below `dir`, in one listing.
    async fn list_below(&self, dir: &str) -> io::Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(&self.path(dir)))
            .try_collect()
            .await
            .map_err(io_error)
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

    /// The chunks of appendable blob `name`: its claims and bodies, from one listing.
    async fn chunks(&self, name: &str) -> io::Result<Chunks> {
        let listed = self.list_below(name).await?;
        let mut chunks = Chunks::default();
        for meta in listed {
            let Some(file) = meta.location.filename() else {
                continue;
            };
            if let Some(offset) = claim_offset(file) {
                chunks.claims.insert(offset);
            } else if let Some(offset) = body_offset(file) {
                chunks.bodies.entry(offset).or_default().push(Body {
                    file: file.to_owned(),
                    size: meta.size,
                    modified: SystemTime::from(meta.last_modified),
                });
            }
        }
        Ok(chunks)
    }

    /// The body file claimed at `offset` of blob `name`, among the `listed` bodies there.
    /// A claim exists only once its body is complete, and the body outlives it, so a
    /// single listed body is the claimed one; with several, the claim says which.
    async fn claimed<'a>(
        &self,
        name: &str,
        offset: u64,
        listed: &'a [Body],
    ) -> io::Result<&'a Body> {
        if let [only] = listed {
            return Ok(only);
        }
        let claim = format!("{name}/{}", segment_name(offset));
        let file = self
            .read(&claim)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, claim.clone()))?;
        listed
            .iter()
            .find(|body| body.file.as_bytes() == file.as_slice())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("claim {claim} names a body that is not there"),
                )
            })
    }

    /// The claimed bodies of the contiguous run from offset 0, in order, and the length
    /// they add up to.
    async fn contiguous(&self, name: &str) -> io::Result<(Vec<String>, u64)> {
        let chunks = self.chunks(name).await?;
        let mut files = Vec::new();
        let mut end = 0u64;
        while chunks.claims.contains(&end) {
            let listed = chunks.bodies.get(&end).map(Vec::as_slice).unwrap_or(&[]);
            let body = self.claimed(name, end, listed).await?;
            if body.size == 0 {
                break;
            }
            files.push(body.file.clone());
            end += body.size;
        }
        Ok((files, end))
    }

    /// Length of appendable blob `name` (0 when it has no chunks).
    pub async fn appended_len(&self, name: &str) -> io::Result<u64> {
        Ok(self.contiguous(name).await?.1)
    }

    /// Streams appendable blob `name`: its contiguous claimed chunks in order.
    pub async fn open_appended(&self, name: &str) -> io::Result<PayloadStream> {
        let (files, _) = self.contiguous(name).await?;
        let this = self.clone();
        let name = name.to_owned();
        Ok(futures::stream::iter(files)
            .then(move |file| {
                let this = this.clone();
                let body = format!("{name}/{file}");
                async move { this.open(&body).await }
            })
            .try_flatten()
            .boxed())
    }

    /// Claims offset `at` of blob `name` for the complete body `file`; `false` when
    /// another writer's claim is there. A retried create whose first attempt won finds
    /// its own claim, so it reads the claim before conceding.
    async fn claim(&self, name: &str, at: u64, file: &str) -> io::Result<bool> {
        let claim = format!("{name}/{}", segment_name(at));
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(file.as_bytes().to_vec());
        match self
            .store
            .put_opts(&self.path(&claim), payload, options)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if lost_create(&err) => {
                Ok(self.read(&claim).await?.as_deref() == Some(file.as_bytes()))
            }
            Err(err) => Err(io_error(err)),
        }
    }

    /// Appends `stream` to appendable blob `name` as a new chunk at `at`, which must be
    /// its current length; at most `limit` bytes. The body streams to a name of its own
    /// and is then claimed; when another writer (another pod) claimed `at` first, the
    /// body is removed and the result is the blob's real length as an offset error. A
    /// broken stream keeps the bytes received before the break as a chunk (a correct
    /// prefix); an over-long one stores nothing.
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
        let file = format!("{}.{}", segment_name(at), uuid::Uuid::new_v4().simple());
        let body = format!("{name}/{file}");
        let mut writer = self.writer(self.path(&body));
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
            // Nothing to keep: no empty chunks, never bytes beyond the declared length.
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%abort, "cannot abort staged s3 multipart upload");
            }
            return Ok(match failed {
                Some(err) => Err(err),
                None => Ok(at),
            });
        }
        writer.shutdown().await?;
        // An error here may hide a claim that was made: the body stays (collected if
        // unclaimed), so a made claim never points at nothing.
        if !self.claim(name, at, &file).await? {
            // Another writer's chunk is at `at`: drop this body (or leave it to the
            // cleanup) and report the real length.
            if let Err(err) = self.remove(&body).await {
                tracing::warn!(%err, "cannot remove a chunk body that lost its claim");
            }
            return Ok(Err(AppendError::Offset(self.appended_len(name).await?)));
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

    /// Removes chunk bodies anywhere below `root` that no claim names and that are older
    /// than `max_age` at `now`: what a writer that lost a claim race, or crashed between
    /// writing a body and claiming it, left behind in a session that is still open.
    /// Younger bodies may be about to be claimed and stay. Returns how many it removed.
    pub async fn remove_unclaimed(
        &self,
        root: &str,
        max_age: Duration,
        now: SystemTime,
    ) -> io::Result<u64> {
        let listed = self.list_below(root).await?;
        // Per appendable blob (the parent of its chunks): its chunk listing.
        let mut blobs: BTreeMap<String, Chunks> = BTreeMap::new();
        for meta in listed {
            let (Some(file), Some(rest)) = (
                meta.location.filename(),
                meta.location.prefix_match(&self.root),
            ) else {
                continue;
            };
            let parts: Vec<_> = rest.map(|part| part.as_ref().to_owned()).collect();
            let parent = parts[..parts.len().saturating_sub(1)].join("/");
            if let Some(offset) = claim_offset(file) {
                blobs.entry(parent).or_default().claims.insert(offset);
            } else if let Some(offset) = body_offset(file) {
                blobs
                    .entry(parent)
                    .or_default()
                    .bodies
                    .entry(offset)
                    .or_default()
                    .push(Body {
                        file: file.to_owned(),
                        size: meta.size,
                        modified: SystemTime::from(meta.last_modified),
                    });
            }
        }
        let old = |body: &Body| now.duration_since(body.modified).unwrap_or_default() > max_age;
        let mut removed = 0;
        for (name, chunks) in blobs {
            for (offset, bodies) in &chunks.bodies {
                if !bodies.iter().any(old) {
                    continue;
                }
                let keep = if chunks.claims.contains(offset) {
                    match self.claimed(&name, *offset, bodies).await {
                        Ok(body) => Some(body.file.clone()),
                        // The blob went away meanwhile; its owner removes the rest.
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(err),
                    }
                } else {
                    None
                };
                for body in bodies {
                    if old(body) && keep.as_deref() != Some(body.file.as_str()) {
                        self.remove(&format!("{name}/{}", body.file)).await?;
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Removes each directory directly below `root` whose newest object anywhere below
    /// it is older than `max_age` at `now` and which `release` lets go (as
    /// [`super::Staging::remove_untouched`]); returns how many.
    /// One listing of `root` covers every upload, segments included.
    pub async fn remove_untouched(
        &self,
        root: &str,
        max_age: Duration,
        now: SystemTime,
        release: impl Fn(String) -> BoxFuture<'static, bool>,
    ) -> io::Result<u64> {
        let prefix = self.path(root);
        let listed = self.list_below(root).await?;
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
            if now.duration_since(modified).unwrap_or_default() <= max_age || !release(name).await {
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
    async fn a_value_put_once_is_read_from_the_bucket_once_per_instance() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let staging = BucketStaging::new(store.clone(), ".staging");
        let other = BucketStaging::new(store.clone(), ".staging");
        assert_eq!(
            staging.put_once("s", b"first".to_vec()).await.unwrap(),
            b"first"
        );
        assert_eq!(
            other.put_once("s", b"second".to_vec()).await.unwrap(),
            b"first"
        );
        // Gone from the bucket, the value is still known to both (and their clones).
        store.delete(&Path::from(".staging/s")).await.unwrap();
        let clone = staging.clone();
        assert_eq!(
            clone.put_once("s", b"third".to_vec()).await.unwrap(),
            b"first"
        );
        assert_eq!(
            other.put_once("s", b"third".to_vec()).await.unwrap(),
            b"first"
        );
        let fresh = BucketStaging::new(store, ".staging");
        assert_eq!(
            fresh.put_once("s", b"third".to_vec()).await.unwrap(),
            b"third"
        );
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
        // An unclaimed body at the offset (a crashed writer's) and a claimed chunk off
        // the contiguous run are not data.
        staging
            .put_bytes(
                &format!("r/s/data/{}.ab12", segment_name(3)),
                b"zzz".to_vec(),
            )
            .await
            .unwrap();
        staging
            .put_bytes(&format!("r/s/data/{}.cd", segment_name(9)), b"zz".to_vec())
            .await
            .unwrap();
        staging
            .put_bytes(&format!("r/s/data/{}", segment_name(9)), b"cd".to_vec())
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

    /// A stream that reports `started` when first polled (its writer passed the offset
    /// check) and yields `bytes` once `go` fires, so a test can hold a writer between its
    /// offset check and its claim.
    fn gated(
        bytes: &'static [u8],
        started: tokio::sync::oneshot::Sender<()>,
        go: tokio::sync::oneshot::Receiver<()>,
    ) -> PayloadStream {
        futures::stream::once(async move {
            let _ = started.send(());
            let _ = go.await;
            Ok(Bytes::from_static(bytes))
        })
        .boxed()
    }

    async fn read_all(staging: &BucketStaging, name: &str) -> Vec<u8> {
        let parts: Vec<Bytes> = staging
            .open_appended(name)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        parts.concat()
    }

    #[tokio::test]
    async fn two_writers_of_one_offset_one_claim_wins_and_the_loser_learns_its_end() {
        let staging = BucketStaging::new(Arc::new(InMemory::new()), ".staging");
        staging
            .append("d", 0, once(b"ab"), 10)
            .await
            .unwrap()
            .unwrap();
        // The slow writer passes the offset check, then the fast one writes and claims.
        let (go, gate) = tokio::sync::oneshot::channel();
        let (started, checked) = tokio::sync::oneshot::channel();
        let slow = tokio::spawn({
            let staging = staging.clone();
            async move {
                staging
                    .append("d", 2, gated(b"cdefgh", started, gate), 10)
                    .await
            }
        });
        checked.await.unwrap();
        assert_eq!(
            staging
                .append("d", 2, once(b"cde"), 10)
                .await
                .unwrap()
                .unwrap(),
            5
        );
        go.send(()).unwrap();
        assert!(matches!(
            slow.await.unwrap().unwrap(),
            Err(AppendError::Offset(5))
        ));
        assert_eq!(staging.appended_len("d").await.unwrap(), 5);
        assert_eq!(read_all(&staging, "d").await, b"abcde");
        // The loser removed its body: one body per claimed offset is left.
        let chunks = staging.chunks("d").await.unwrap();
        assert_eq!(chunks.claims.len(), 2);
        assert!(chunks.bodies.values().all(|bodies| bodies.len() == 1));
    }

    #[tokio::test]
    async fn garbage_collection_removes_only_old_unclaimed_bodies() {
        let staging = BucketStaging::new(Arc::new(InMemory::new()), ".staging");
        staging
            .append("r/s/data", 0, once(b"abc"), 10)
            .await
            .unwrap()
            .unwrap();
        // A crashed loser's body beside the claimed one, and an unclaimed one further on.
        for stray in [
            format!("{}.ee", segment_name(0)),
            format!("{}.ff", segment_name(3)),
        ] {
            staging
                .put_bytes(&format!("r/s/data/{stray}"), b"x".to_vec())
                .await
                .unwrap();
        }
        let max_age = Duration::from_secs(60);
        let now = SystemTime::now();
        assert_eq!(
            staging.remove_unclaimed("r", max_age, now).await.unwrap(),
            0
        );
        let later = now + Duration::from_secs(120);
        assert_eq!(
            staging.remove_unclaimed("r", max_age, later).await.unwrap(),
            2
        );
        let chunks = staging.chunks("r/s/data").await.unwrap();
        assert_eq!(chunks.bodies.len(), 1);
        assert_eq!(chunks.bodies[&0].len(), 1);
        assert_eq!(read_all(&staging, "r/s/data").await, b"abc");
        assert_eq!(
            staging
                .append("r/s/data", 3, once(b"d"), 10)
                .await
                .unwrap()
                .unwrap(),
            4
        );
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
