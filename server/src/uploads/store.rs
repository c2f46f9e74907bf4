//! Where unfinished uploads live until they commit: multipart parts and resumable
//! session bytes, on disk beside a filesystem backend's data, in memory beside the
//! memory backend, or as objects under a reserved prefix of an `s3compatible` bucket
//! (shared by every pod, see [`super::bucket`]).
//!
//! Names are relative paths built only from server-generated ids (never from client
//! input), so nothing here can be steered outside the staging root. Writes that are
//! acknowledged to a client are synced first, so they survive a crash.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::bucket::BucketStaging;
use crate::backend::PayloadStream;

/// Read size when streaming a staged blob out (publishing a session or assembling parts):
/// large reads keep the number of blocking-pool round trips per GiB low.
const READ_CHUNK: usize = 1024 * 1024;

/// Write size when appending to a staged file on disk.
const APPEND_BUFFER: usize = 1024 * 1024;

/// In-memory blobs: bytes and last modification time, by name.
type Blobs = BTreeMap<String, (Vec<u8>, SystemTime)>;

/// Staging storage for unfinished uploads; cheap to clone.
#[derive(Debug, Clone)]
pub enum Staging {
    /// Files under a directory (synced writes; survive restarts).
    Dir(PathBuf),
    /// Process memory (lost at exit, like the memory backend's objects).
    Memory(Arc<Mutex<Blobs>>),
    /// Objects in the backend's own bucket, visible to every pod sharing it.
    Bucket(BucketStaging),
}

fn lock(map: &Mutex<Blobs>) -> std::sync::MutexGuard<'_, Blobs> {
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies `stream` into `out` until it ends, fails, or would pass `limit` bytes (the
/// chunk that would pass it is not written); returns the bytes written and why it
/// stopped early, if it did.
async fn copy_limited<W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut PayloadStream,
    out: &mut W,
    limit: u64,
) -> io::Result<(u64, Option<AppendError>)> {
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if written + chunk.len() as u64 > limit {
                    return Ok((written, Some(AppendError::TooLong)));
                }
                written += chunk.len() as u64;
                out.write_all(&chunk).await?;
            }
            Err(err) => return Ok((written, Some(AppendError::Stream(err)))),
        }
    }
    Ok((written, None))
}

async fn sync_dir(dir: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

impl Default for Staging {
    fn default() -> Self {
        Staging::memory()
    }
}

impl Staging {
    /// In-memory staging.
    pub fn memory() -> Self {
        Staging::Memory(Arc::default())
    }

    fn path(&self, name: &str) -> PathBuf {
        match self {
            Staging::Dir(root) => root.join(name),
            Staging::Memory(_) | Staging::Bucket(_) => PathBuf::from(name),
        }
    }

    /// Stores `stream` under `name` atomically (temp, sync, rename); returns the size.
    /// A failing stream leaves the previous blob, if any, in place.
    pub async fn put(&self, name: &str, stream: PayloadStream) -> io::Result<u64> {
        match self {
            Staging::Bucket(bucket) => bucket.put(name, stream).await,
            Staging::Memory(map) => {
                let body = stream
                    .try_fold(BytesMut::new(), |mut acc, chunk| async move {
                        acc.extend_from_slice(&chunk);
                        Ok(acc)
                    })
                    .await?;
                let size = body.len() as u64;
                lock(map).insert(name.to_owned(), (body.to_vec(), SystemTime::now()));
                Ok(size)
            }
            Staging::Dir(_) => {
                let path = self.path(name);
                let dir = path.parent().expect("names have a parent").to_owned();
                tokio::fs::create_dir_all(&dir).await?;
                let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
                let result = async {
                    let mut file = tokio::fs::File::create(&tmp).await?;
                    let mut size = 0u64;
                    let mut stream = stream;
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk?;
                        size += chunk.len() as u64;
                        file.write_all(&chunk).await?;
                    }
                    file.sync_all().await?;
                    tokio::fs::rename(&tmp, &path).await?;
                    sync_dir(dir).await?;
                    Ok(size)
                }
                .await;
                if result.is_err() {
                    let _ = tokio::fs::remove_file(&tmp).await;
                }
                result
            }
        }
    }

    /// Stores small bytes (JSON records) atomically.
    pub async fn put_bytes(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        if let Staging::Bucket(bucket) = self {
            return bucket.put_bytes(name, bytes).await;
        }
        let stream = futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed();
        self.put(name, stream).await.map(|_| ())
    }

    /// Stores `bytes` under `name` unless something is there already; returns what is
    /// stored afterwards (so concurrent callers all agree on one value).
    pub async fn put_if_absent(&self, name: &str, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            Staging::Bucket(bucket) => bucket.put_if_absent(name, bytes).await,
            Staging::Memory(map) => Ok(lock(map)
                .entry(name.to_owned())
                .or_insert_with(|| (bytes, SystemTime::now()))
                .0
                .clone()),
            Staging::Dir(_) => {
                if let Some(existing) = self.read(name).await? {
                    return Ok(existing);
                }
                let path = self.path(name);
                let dir = path.parent().expect("names have a parent").to_owned();
                tokio::fs::create_dir_all(&dir).await?;
                let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
                tokio::fs::write(&tmp, &bytes).await?;
                tokio::fs::File::open(&tmp).await?.sync_all().await?;
                // A hard link fails when the name exists: the first writer wins.
                let linked = tokio::fs::hard_link(&tmp, &path).await;
                let _ = tokio::fs::remove_file(&tmp).await;
                match linked {
                    Ok(()) => {
                        sync_dir(dir).await?;
                        Ok(bytes)
                    }
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                        Ok(self.read(name).await?.unwrap_or(bytes))
                    }
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// [`Staging::put_if_absent`] for a value that is never replaced or removed: on a
    /// bucket it is read once per opened backend, not on every request.
    pub async fn put_once(&self, name: &str, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            Staging::Bucket(bucket) => bucket.put_once(name, bytes).await,
            _ => self.put_if_absent(name, bytes).await,
        }
    }

    /// Creates the new directory `dir` holding the appended blob `data` (starting with
    /// `header`, if any) and the record `record`, durably: when this returns both names
    /// and the record's bytes survive a crash. The header's bytes are written but not
    /// synced: the first append's sync covers them, and until then a crash may leave
    /// `data` shorter than `header`, which the caller rewrites. On disk this is one
    /// blocking-pool round trip with one file sync and one sync per directory (the new
    /// directory's covers both names, its parent's the directory itself); the record is
    /// written in place, not through a temp name, because nothing reads it before this
    /// returns.
    pub async fn create_dir_with(
        &self,
        dir: &str,
        data: &str,
        header: Option<Vec<u8>>,
        record: &str,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        let Staging::Dir(_) = self else {
            if let Some(header) = header {
                let len = header.len() as u64;
                let body: PayloadStream =
                    futures::stream::once(async move { Ok(Bytes::from(header)) }).boxed();
                match self.append(&format!("{dir}/{data}"), 0, body, len).await? {
                    Ok(written) if written == len => {}
                    _ => return Err(io::Error::other("could not stage the header")),
                }
            }
            return self.put_bytes(&format!("{dir}/{record}"), bytes).await;
        };
        let path = self.path(dir);
        let (data, record) = (path.join(data), path.join(record));
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let parent = path.parent().expect("names have a parent");
            std::fs::create_dir_all(parent)?;
            std::fs::create_dir(&path)?;
            let written = (|| {
                let create = |name: &PathBuf| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(name)
                };
                if let Some(header) = header {
                    create(&data)?.write_all(&header)?;
                }
                let mut file = create(&record)?;
                file.write_all(&bytes)?;
                file.sync_data()?;
                std::fs::File::open(&path)?.sync_all()?;
                std::fs::File::open(parent)?.sync_all()
            })();
            if written.is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
            written
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Makes the removals and creations of names directly in `dir` durable (a no-op
    /// where every change already is).
    pub async fn sync_dir(&self, dir: &str) -> io::Result<()> {
        match self {
            Staging::Dir(_) => sync_dir(self.path(dir)).await,
            Staging::Memory(_) | Staging::Bucket(_) => Ok(()),
        }
    }

    /// Reads a whole blob; `None` when missing.
    pub async fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self {
            Staging::Bucket(bucket) => bucket.read(name).await,
            Staging::Memory(map) => Ok(lock(map).get(name).map(|(b, _)| b.clone())),
            Staging::Dir(_) => match tokio::fs::read(self.path(name)).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err),
            },
        }
    }

    /// Streams a blob.
    pub async fn open(&self, name: &str) -> io::Result<PayloadStream> {
        match self {
            Staging::Bucket(bucket) => bucket.open(name).await,
            Staging::Memory(map) => {
                let bytes = lock(map)
                    .get(name)
                    .map(|(b, _)| Bytes::from(b.clone()))
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_owned()))?;
                Ok(futures::stream::once(async move { Ok(bytes) }).boxed())
            }
            Staging::Dir(_) => {
                let file = tokio::fs::File::open(self.path(name)).await?;
                Ok(tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK).boxed())
            }
        }
    }

    /// Size of a blob; `None` when missing.
    pub async fn len(&self, name: &str) -> io::Result<Option<u64>> {
        match self {
            Staging::Bucket(bucket) => bucket.len(name).await,
            Staging::Memory(map) => Ok(lock(map).get(name).map(|(b, _)| b.len() as u64)),
            Staging::Dir(_) => match tokio::fs::metadata(self.path(name)).await {
                Ok(meta) => Ok(Some(meta.len())),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err),
            },
        }
    }

    /// Appends `stream` to the blob `name`, which must currently hold exactly `at`
    /// bytes (created empty when `at` is 0 and it is missing), writing at most `limit`
    /// bytes; the appended bytes are synced before this returns. Returns the new length.
    /// On a stream error the bytes received so far are kept (and synced): they are a
    /// correct prefix, and the client learns the offset by asking.
    pub async fn append(
        &self,
        name: &str,
        at: u64,
        mut stream: PayloadStream,
        limit: u64,
    ) -> io::Result<Result<u64, AppendError>> {
        match self {
            Staging::Bucket(bucket) => bucket.append(name, at, stream, limit).await,
            Staging::Memory(map) => {
                let mut buf = Vec::new();
                let (_, failed) = copy_limited(&mut stream, &mut buf, limit).await?;
                let mut map = lock(map);
                let entry = map
                    .entry(name.to_owned())
                    .or_insert_with(|| (Vec::new(), SystemTime::now()));
                if entry.0.len() as u64 != at {
                    return Ok(Err(AppendError::Offset(entry.0.len() as u64)));
                }
                if !matches!(failed, Some(AppendError::TooLong)) {
                    entry.0.extend_from_slice(&buf);
                    entry.1 = SystemTime::now();
                }
                Ok(match failed {
                    Some(err) => Err(err),
                    None => Ok(entry.0.len() as u64),
                })
            }
            Staging::Dir(_) => {
                let path = self.path(name);
                let mut options = tokio::fs::OpenOptions::new();
                options.create(true).append(true);
                let open = || options.open(&path);
                // The directory exists for every append but a session's first: only
                // then is it created (saving a blocking-pool round trip per chunk).
                let file = match open().await {
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        if let Some(dir) = path.parent() {
                            tokio::fs::create_dir_all(dir).await?;
                        }
                        open().await?
                    }
                    other => other?,
                };
                let len = file.metadata().await?.len();
                if len != at {
                    return Ok(Err(AppendError::Offset(len)));
                }
                // Request bodies arrive in small frames: gather them into large writes,
                // each of which is a blocking-pool round trip.
                let mut out = tokio::io::BufWriter::with_capacity(APPEND_BUFFER, file);
                let (written, failed) = copy_limited(&mut stream, &mut out, limit).await?;
                out.flush().await?;
                let file = out.into_inner();
                if matches!(failed, Some(AppendError::TooLong)) {
                    // Never keep bytes beyond the declared length.
                    file.set_len(at).await?;
                }
                // The length is part of what `fdatasync` persists.
                file.sync_data().await?;
                Ok(match failed {
                    Some(err) => Err(err),
                    None => Ok(at + written),
                })
            }
        }
    }

    /// Length of a blob written with [`Staging::append`] (0 when missing).
    pub async fn appended_len(&self, name: &str) -> io::Result<u64> {
        match self {
            Staging::Bucket(bucket) => bucket.appended_len(name).await,
            _ => Ok(self.len(name).await?.unwrap_or(0)),
        }
    }

    /// Streams a blob written with [`Staging::append`].
    pub async fn open_appended(&self, name: &str) -> io::Result<PayloadStream> {
        match self {
            Staging::Bucket(bucket) => bucket.open_appended(name).await,
            _ => self.open(name).await,
        }
    }

    /// Removes a blob written with [`Staging::append`]; a missing blob is fine.
    pub async fn remove_appended(&self, name: &str) -> io::Result<()> {
        match self {
            Staging::Bucket(bucket) => bucket.remove_appended(name).await,
            _ => self.remove(name).await,
        }
    }

    /// Names directly below `dir` (one path level).
    pub async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        match self {
            Staging::Bucket(bucket) => bucket.list(dir).await,
            Staging::Memory(map) => {
                let prefix = format!("{dir}/");
                let mut out: Vec<String> = lock(map)
                    .keys()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                    .collect();
                out.dedup();
                Ok(out)
            }
            Staging::Dir(_) => {
                let mut out = Vec::new();
                let mut entries = match tokio::fs::read_dir(self.path(dir)).await {
                    Ok(entries) => entries,
                    // A missing name, or a blob rather than a directory, has no entries.
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) =>
                    {
                        return Ok(out)
                    }
                    Err(err) => return Err(err),
                };
                while let Some(entry) = entries.next_entry().await? {
                    if let Some(name) = entry.file_name().to_str() {
                        out.push(name.to_owned());
                    }
                }
                out.sort();
                Ok(out)
            }
        }
    }

    /// Last modification time of a blob; `None` when missing.
    pub async fn modified(&self, name: &str) -> io::Result<Option<SystemTime>> {
        match self {
            Staging::Bucket(bucket) => bucket.modified(name).await,
            Staging::Memory(map) => Ok(lock(map).get(name).map(|(_, t)| *t)),
            Staging::Dir(_) => match tokio::fs::metadata(self.path(name)).await {
                Ok(meta) => Ok(Some(meta.modified()?)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err),
            },
        }
    }

    /// Whether other servers write this staging too (a shared bucket), so that this
    /// server's session locks do not keep them apart.
    pub fn is_shared(&self) -> bool {
        matches!(self, Staging::Bucket(_))
    }

    /// Removes one blob; a missing blob is fine.
    pub async fn remove(&self, name: &str) -> io::Result<()> {
        match self {
            Staging::Bucket(bucket) => bucket.remove(name).await,
            Staging::Memory(map) => {
                lock(map).remove(name);
                Ok(())
            }
            Staging::Dir(_) => match tokio::fs::remove_file(self.path(name)).await {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            },
        }
    }

    /// Removes everything under `dir`; a missing directory is fine.
    pub async fn remove_all(&self, dir: &str) -> io::Result<()> {
        match self {
            Staging::Bucket(bucket) => bucket.remove_all(dir).await,
            Staging::Memory(map) => {
                let prefix = format!("{dir}/");
                lock(map).retain(|k, _| !k.starts_with(&prefix));
                Ok(())
            }
            Staging::Dir(_) => match tokio::fs::remove_dir_all(self.path(dir)).await {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            },
        }
    }

    /// Removes appended-chunk leftovers below `root` older than `max_age` that no claim
    /// names (bucket staging only: elsewhere an append never leaves any); returns how
    /// many it removed.
    pub async fn remove_unclaimed(
        &self,
        root: &str,
        max_age: Duration,
        now: SystemTime,
    ) -> io::Result<u64> {
        match self {
            Staging::Bucket(bucket) => bucket.remove_unclaimed(root, max_age, now).await,
            Staging::Memory(_) | Staging::Dir(_) => Ok(0),
        }
    }

    /// Which writers [`Staging::append`] callers must serialize among in this process:
    /// those sharing the same store. Bucket staging is shared with other servers, which
    /// its conditional claims guard against, so each server (each opened store) is its
    /// own scope, as it would be in its own pod.
    pub fn lock_scope(&self) -> usize {
        match self {
            Staging::Bucket(bucket) => bucket.scope(),
            Staging::Memory(map) => Arc::as_ptr(map) as usize,
            Staging::Dir(_) => 0,
        }
    }

    /// Removes each directory directly below `root` whose newest entry is older than
    /// `max_age` at `now` (or which is empty), once `release` agrees to it (it is asked
    /// with the directory's name, may let go of what the directory refers to, and
    /// answers `false` to keep it); returns how many it removed.
    pub async fn remove_untouched(
        &self,
        root: &str,
        max_age: Duration,
        now: SystemTime,
        release: impl Fn(String) -> BoxFuture<'static, bool>,
    ) -> io::Result<u64> {
        if let Staging::Bucket(bucket) = self {
            return bucket.remove_untouched(root, max_age, now, release).await;
        }
        let mut removed = 0;
        for name in self.list(root).await? {
            let dir = format!("{root}/{name}");
            // A directory's own time changes when an entry is removed: a finished
            // session whose data was adopted counts from its completion.
            let mut newest = match self {
                Staging::Dir(_) => self.modified(&dir).await?,
                _ => None,
            };
            for entry in self.list(&dir).await? {
                if let Some(t) = self.modified(&format!("{dir}/{entry}")).await? {
                    newest = Some(newest.map_or(t, |n: SystemTime| n.max(t)));
                }
            }
            let stale = newest.is_none_or(|t| now.duration_since(t).unwrap_or_default() > max_age);
            if stale && release(name).await {
                self.remove_all(&dir).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Why an append did not take all of its bytes.
#[derive(Debug)]
pub enum AppendError {
    /// The blob holds this many bytes, not the expected offset; nothing was written.
    Offset(u64),
    /// The stream carried more than the limit; nothing was written.
    TooLong,
    /// The stream failed; the bytes before the failure were kept.
    Stream(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(data: &'static [u8]) -> PayloadStream {
        futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed()
    }

    async fn exercise(staging: Staging) {
        assert_eq!(staging.put("u/a/p1", stream(b"hello")).await.unwrap(), 5);
        assert_eq!(staging.read("u/a/p1").await.unwrap().unwrap(), b"hello");
        assert_eq!(staging.len("u/a/p1").await.unwrap(), Some(5));
        assert_eq!(staging.list("u").await.unwrap(), ["a"]);
        assert_eq!(staging.list("u/a").await.unwrap(), ["p1"]);
        let ok = staging
            .append("u/b/data", 0, stream(b"abc"), 10)
            .await
            .unwrap();
        assert_eq!(ok.unwrap(), 3);
        let wrong = staging
            .append("u/b/data", 1, stream(b"x"), 10)
            .await
            .unwrap();
        assert!(matches!(wrong, Err(AppendError::Offset(3))));
        let long = staging
            .append("u/b/data", 3, stream(b"toolong"), 2)
            .await
            .unwrap();
        assert!(matches!(long, Err(AppendError::TooLong)));
        assert_eq!(staging.appended_len("u/b/data").await.unwrap(), 3);
        let body: Vec<Bytes> = staging
            .open_appended("u/b/data")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(body.concat(), b"abc");
        staging.remove_all("u/a").await.unwrap();
        assert_eq!(staging.read("u/a/p1").await.unwrap(), None);
        assert_eq!(staging.list("u").await.unwrap(), ["b"]);
    }

    #[tokio::test]
    async fn memory_dir_and_bucket_behave_alike() {
        exercise(Staging::memory()).await;
        exercise(Staging::Bucket(BucketStaging::new(
            Arc::new(object_store::memory::InMemory::new()),
            ".staging",
        )))
        .await;
        let dir = tempfile::tempdir().unwrap();
        exercise(Staging::Dir(dir.path().to_owned())).await;
    }
}
