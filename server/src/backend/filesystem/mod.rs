//! The embedded default backend, on a local filesystem.
//!
//! Two stores under one root, with an in-memory index over both:
//! - Objects up to [`SMALL_OBJECT`] bytes are records in an append-only log
//!   (`<root>/log/*.seg`, see [`log`]): a write is acknowledged once its record is
//!   synced, and concurrent writes share one sync (group commit). Compaction rewrites
//!   segments that are mostly dead.
//! - Larger objects are files of their own (`<root>/objects/<xx>/<sha256>`, see
//!   [`files`]): temp file, fsync, rename, directory fsync. An `External` record in the log
//!   marks each such write so that, after a crash, the newest of log and file wins.
//!
//! Either way an acknowledged write survives `kill -9` and power loss, and a reader sees
//! the old object or the new one, never a torn one. Keys never become paths: an object
//! is addressed by the SHA-256 of its full id, so `a`, `a/`, `a/b`, `a//a` and `../x` are
//! distinct objects and no key can escape the root. Only one process may open a root
//! (`<root>/LOCK`), which is what makes the in-memory index and cache coherent.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{
    matches_expected, same_version, Backend, BackendError, Payload, PayloadStream, StoredObject,
};
use crate::metrics::StorageMetrics;
use crate::object::{Metadata, ObjectId};

mod access;
mod files;
mod index;
mod log;

use index::{Entry, Index};
use log::{Kind, Location, Log, Record};

/// SHA-256 of an object id's JSON: the object's name on disk and in the index.
type Digest = [u8; 32];

/// Objects up to this size live in the log; larger ones get files of their own.
const SMALL_OBJECT: usize = 64 * 1024;
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

/// A logged object as served: decoded once, then shared by every read that hits it.
#[derive(Debug)]
struct Cached {
    metadata: Metadata,
    payload: Bytes,
}

#[derive(Clone)]
struct CacheWeight;

impl quick_cache::Weighter<(u64, u64), Arc<Cached>> for CacheWeight {
    fn weight(&self, _key: &(u64, u64), value: &Arc<Cached>) -> u64 {
        value.payload.len() as u64 + 256
    }
}

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

struct Shared {
    root: PathBuf,
    log: Log,
    index: Index,
    /// Keyed by record location, which never changes meaning, so it is never stale.
    cache: quick_cache::sync::Cache<(u64, u64), Arc<Cached>, CacheWeight>,
    /// Serialise mutations per key so index updates follow commit order.
    stripes: Vec<Mutex<()>>,
    metrics: StorageMetrics,
    /// Held for the backend's lifetime: one process per root.
    _lock: File,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn id_json(id: &ObjectId) -> Vec<u8> {
    serde_json::to_vec(id).expect("object ids always serialize")
}

fn digest_of(id_json: &[u8]) -> Digest {
    Sha256::digest(id_json).into()
}

fn metadata_json(metadata: &Metadata) -> Vec<u8> {
    let mut metadata = metadata.clone();
    metadata.size = None;
    serde_json::to_vec(&metadata).expect("metadata always serializes")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Io(io::Error::other(e.to_string())))?
}

/// What the log says last about a key, while the index is rebuilt.
struct Latest {
    kind: Kind,
    location: Location,
    expires: Option<SystemTime>,
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

/// Rebuilds the index: the highest sequence number per key wins; object files are kept
/// when the log's last word on them is `External` (or nothing: files written before the
/// log existed) and removed when a later `Put` or `Delete` superseded them.
fn recover(
    root: PathBuf,
    segment_bytes: u64,
    metrics: StorageMetrics,
) -> Result<Shared, BackendError> {
    std::fs::create_dir_all(&root).map_err(|e| access::root_error(&root, e))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("LOCK"))
        .map_err(|e| access::root_error(&root, e))?;
    lock.try_lock().map_err(|_| {
        BackendError::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "storage path {} is in use by another strata-server",
                root.display()
            ),
        ))
    })?;
    let file_digests = files::init_objects(&root)?;

    let mut latest: HashMap<Digest, Latest> = HashMap::new();
    let mut bad_metadata = None;
    let log = Log::open(
        root.join("log"),
        segment_bytes,
        metrics.clone(),
        |record, location| {
            let digest = digest_of(&record.id_json);
            if latest
                .get(&digest)
                .is_some_and(|l| l.location.seq > record.seq)
            {
                return;
            }
            let expires = match record.kind {
                Kind::Put => match serde_json::from_slice::<Metadata>(&record.metadata_json) {
                    Ok(metadata) => metadata.time_expires,
                    Err(err) => {
                        bad_metadata.get_or_insert(err.to_string());
                        None
                    }
                },
                Kind::Delete | Kind::External => None,
            };
            latest.insert(
                digest,
                Latest {
                    kind: record.kind,
                    location,
                    expires,
                },
            );
        },
    )?;
    if let Some(err) = bad_metadata {
        return Err(BackendError::Corrupt(format!("logged metadata: {err}")));
    }

    let index = Index::new(metrics.clone());
    for digest in file_digests {
        match latest.get(&digest).map(|l| l.kind) {
            Some(Kind::Put) | Some(Kind::Delete) => {
                files::remove(&files::object_path(&root, &digest), false)?;
            }
            Some(Kind::External) | None => {
                index.insert(digest, Entry::File);
            }
        }
    }
    for (digest, latest) in latest {
        if latest.kind == Kind::Put {
            index.insert(
                digest,
                Entry::Logged {
                    location: latest.location,
                    expires: latest.expires,
                },
            );
        }
    }
    Ok(Shared {
        root,
        log,
        index,
        cache: quick_cache::sync::Cache::with_weighter(
            (CACHE_BYTES / 4096) as usize,
            CACHE_BYTES,
            CacheWeight,
        ),
        stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        metrics,
        _lock: lock,
    })
}

impl Shared {
    fn stripe(&self, digest: &Digest) -> &Mutex<()> {
        &self.stripes[usize::from(u16::from_le_bytes([digest[2], digest[3]])) % LOCK_STRIPES]
    }

    fn object_path(&self, digest: &Digest) -> PathBuf {
        files::object_path(&self.root, digest)
    }

    /// Reads and decodes a logged object, from the cache when it is there.
    async fn load(&self, location: &Location, id_json: &[u8]) -> Result<Arc<Cached>, BackendError> {
        let key = (location.segment.id, location.offset);
        if let Some(cached) = self.cache.get(&key) {
            return Ok(cached);
        }
        let record = self.read_record(location).await?;
        if record.id_json != id_json {
            return Err(BackendError::Corrupt(
                "digest collision or misplaced record".to_owned(),
            ));
        }
        let mut metadata: Metadata = serde_json::from_slice(&record.metadata_json)
            .map_err(|e| BackendError::Corrupt(format!("bad logged metadata: {e}")))?;
        metadata.size = Some(record.payload.len() as u64);
        let cached = Arc::new(Cached {
            metadata,
            payload: record.payload,
        });
        self.cache.insert(key, cached.clone());
        Ok(cached)
    }

    async fn read_record(&self, location: &Location) -> Result<Record, BackendError> {
        let location = location.clone();
        blocking(move || {
            let bytes = location
                .segment
                .read(location.offset, location.len as usize)?;
            log::decode(&bytes)
                .map(|(record, _)| record)
                .map_err(|e| BackendError::Corrupt(format!("log record: {e:?}")))
        })
        .await
    }

    /// Drops the cached copy of a version the index no longer points at; passes it on.
    fn evict(&self, old: Option<Entry>) -> Option<Entry> {
        if let Some(Entry::Logged { location, .. }) = &old {
            self.cache.remove(&(location.segment.id, location.offset));
        }
        old
    }

    /// Commits a `Put` record and makes it the key's current version. Call with the
    /// key's stripe locked.
    async fn put_logged(
        &self,
        digest: Digest,
        id_json: &[u8],
        metadata: &Metadata,
        payload: Bytes,
    ) -> Result<(), BackendError> {
        let record = log::encode(Kind::Put, id_json, &metadata_json(metadata), &payload);
        let location = self.log.append(record).await?;
        let mut metadata = metadata.clone();
        metadata.size = Some(payload.len() as u64);
        let expires = metadata.time_expires;
        self.cache.insert(
            (location.segment.id, location.offset),
            Arc::new(Cached { metadata, payload }),
        );
        let old = self.evict(
            self.index
                .insert(digest, Entry::Logged { location, expires }),
        );
        if let Some(Entry::File) = old {
            // The log now outranks the file; recovery would remove it too.
            let path = self.object_path(&digest);
            blocking(move || Ok(files::remove(&path, false)?)).await?;
        }
        Ok(())
    }

    /// Writes a large object's file and makes it the key's current version.
    async fn put_file(
        &self,
        digest: Digest,
        id: &ObjectId,
        id_json: &[u8],
        metadata: &Metadata,
        head: Vec<u8>,
        mut rest: PayloadStream,
    ) -> Result<u64, BackendError> {
        let target = self.object_path(&digest);
        let temp = files::temp_path(&target);
        let mut guard = files::TempGuard(Some(temp.clone()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .await?;
        let mut size = head.len() as u64;
        let mut buffer = files::encode_header(id, metadata);
        buffer.extend_from_slice(&head);
        file.write_all(&buffer).await?;
        buffer.clear();
        while let Some(chunk) = rest.next().await {
            let chunk = chunk.map_err(BackendError::Payload)?;
            size += chunk.len() as u64;
            buffer.extend_from_slice(&chunk);
            if buffer.len() >= WRITE_CHUNK {
                file.write_all(&buffer).await?;
                buffer.clear();
            }
        }
        file.write_all(&buffer).await?;
        file.flush().await?;
        file.sync_data().await?;
        drop(file);

        let _lock = self.stripe(&digest).lock().await;
        let published = temp.clone();
        blocking(move || Ok(files::publish(&published, &target)?)).await?;
        guard.0 = None;
        // Only acknowledged once the log says the file outranks earlier records.
        self.log
            .append(log::encode(Kind::External, id_json, b"", b""))
            .await?;
        self.evict(self.index.insert(digest, Entry::File));
        Ok(size)
    }

    /// Reads a key's current version (for HEAD, `with_payload` false, a file's payload
    /// is not read), following it if it moves between log and file while being read.
    async fn read(
        &self,
        id: &ObjectId,
        with_payload: bool,
    ) -> Result<Option<StoredObject>, BackendError> {
        let id_json = id_json(id);
        let digest = digest_of(&id_json);
        for _ in 0..3 {
            match self.index.get(&digest) {
                None => return Ok(None),
                Some(Entry::Logged { location, .. }) => {
                    let cached = self.load(&location, &id_json).await?;
                    return Ok(Some(StoredObject {
                        metadata: cached.metadata.clone(),
                        payload: Payload::Bytes(cached.payload.clone()),
                    }));
                }
                Some(Entry::File) => {
                    let path = self.object_path(&digest);
                    let id = id.clone();
                    let opened = blocking(move || {
                        if with_payload {
                            files::read_object(&path, &id)
                        } else {
                            Ok(files::open_object(&path, &id)?
                                .map(|(_, metadata, _)| (metadata, Payload::Bytes(Bytes::new()))))
                        }
                    })
                    .await?;
                    if let Some((metadata, payload)) = opened {
                        return Ok(Some(StoredObject { metadata, payload }));
                    }
                    // The file was replaced by a logged version or deleted meanwhile.
                }
            }
        }
        Ok(None)
    }

    /// Deletes a key under its stripe lock.
    async fn delete_locked(&self, digest: Digest, id_json: &[u8]) -> Result<(), BackendError> {
        match self.index.get(&digest) {
            None => {}
            Some(Entry::Logged { .. }) => {
                self.log
                    .append(log::encode(Kind::Delete, id_json, b"", b""))
                    .await?;
                self.evict(self.index.remove(&digest));
            }
            Some(Entry::File) => {
                // No record needed: the log's last word on this key is `External` (or
                // nothing), which with no file means absent.
                let path = self.object_path(&digest);
                blocking(move || Ok(files::remove(&path, true)?)).await?;
                self.index.remove(&digest);
            }
        }
        Ok(())
    }

    /// Removes logged objects whose deadline passed before `now`.
    async fn sweep_logged(&self, now: SystemTime) -> Result<u64, BackendError> {
        let mut removed = 0;
        for digest in self.index.expired_logged(now) {
            let _lock = self.stripe(&digest).lock().await;
            // Re-check under the lock: the object may have been overwritten meanwhile.
            let Some(Entry::Logged {
                location,
                expires: Some(deadline),
            }) = self.index.get(&digest)
            else {
                continue;
            };
            if deadline > now {
                continue;
            }
            let record = self.read_record(&location).await?;
            self.delete_locked(digest, &record.id_json).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes object files whose deadline passed before `now`.
    async fn sweep_files(&self, now: SystemTime) -> Result<u64, BackendError> {
        let mut removed = 0;
        for digest in self.index.files() {
            let _lock = self.stripe(&digest).lock().await;
            if !matches!(self.index.get(&digest), Some(Entry::File)) {
                continue;
            }
            let path = self.object_path(&digest);
            let gone = blocking(move || {
                let Ok(mut file) = File::open(&path) else {
                    return Ok(false);
                };
                match files::read_header(&mut file) {
                    Ok((header, _)) if header.metadata.is_expired(now) => {
                        files::remove(&path, true)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await?;
            if gone {
                self.index.remove(&digest);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Compacts the sealed segment with the most dead bytes, if at least half of it is
    /// dead. Returns whether it compacted one.
    async fn compact_once(&self) -> Result<bool, BackendError> {
        let segments = self.log.segments();
        let Some((active, sealed)) = segments.split_last() else {
            return Ok(false);
        };
        let Some(victim) = sealed
            .iter()
            .filter(|s| {
                let size = s.size.load(std::sync::atomic::Ordering::Relaxed);
                s.dead() * 2 >= size
            })
            .max_by_key(|s| s.dead())
        else {
            return Ok(false);
        };
        // A tombstone or marker is still needed while another segment may hold an older
        // record for its key; copies keep old sequence numbers, so ask every segment.
        let others_min = segments
            .iter()
            .chain(std::iter::once(active))
            .filter(|s| s.id != victim.id)
            .map(|s| s.min_seq.load(std::sync::atomic::Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        let segment = victim.clone();
        let bytes = blocking(move || Ok(segment.read_all()?)).await?;

        let mut offset = 0;
        let mut copies: Vec<(Option<Digest>, u64, Option<SystemTime>)> = Vec::new();
        let mut batch = Vec::new();
        let mut lengths = Vec::new();
        while offset < bytes.len() {
            let (record, len) = log::decode(&bytes.slice(offset..))
                .map_err(|e| BackendError::Corrupt(format!("log record: {e:?}")))?;
            let digest = digest_of(&record.id_json);
            let keep = match record.kind {
                Kind::Put => self.index.points_at(&digest, victim.id, offset as u64),
                Kind::Delete | Kind::External => {
                    !matches!(self.index.get(&digest), Some(Entry::Logged { .. }))
                        && others_min < record.seq
                }
            };
            if keep {
                let expires = match self.index.get(&digest) {
                    Some(Entry::Logged { expires, .. }) => expires,
                    _ => None,
                };
                let is_put = record.kind == Kind::Put;
                copies.push((is_put.then_some(digest), offset as u64, expires));
                batch.extend_from_slice(&bytes[offset..offset + len]);
                lengths.push(len);
                if batch.len() >= COMPACT_BATCH {
                    self.commit_copies(victim.id, &mut copies, &mut batch, &mut lengths)
                        .await?;
                }
            }
            offset += len;
        }
        self.commit_copies(victim.id, &mut copies, &mut batch, &mut lengths)
            .await?;
        self.log.remove(victim)?;
        self.metrics.compactions.inc();
        tracing::debug!(segment = victim.id, "compacted log segment");
        Ok(true)
    }

    /// Appends a batch of copies and repoints each key still at its original.
    async fn commit_copies(
        &self,
        segment: u64,
        copies: &mut Vec<(Option<Digest>, u64, Option<SystemTime>)>,
        batch: &mut Vec<u8>,
        lengths: &mut Vec<usize>,
    ) -> Result<(), BackendError> {
        let locations = self
            .log
            .append_copies(std::mem::take(batch), std::mem::take(lengths))
            .await?;
        for ((digest, offset, expires), location) in copies.drain(..).zip(locations) {
            let Some(digest) = digest else { continue };
            let _lock = self.stripe(&digest).lock().await;
            if self.index.points_at(&digest, segment, offset) {
                self.evict(
                    self.index
                        .insert(digest, Entry::Logged { location, expires }),
                );
            }
        }
        Ok(())
    }
}

/// Runs compaction until the backend is dropped.
async fn compact_forever(shared: Weak<Shared>) {
    let start = tokio::time::Instant::now() + COMPACT_INTERVAL;
    let mut ticker = tokio::time::interval_at(start, COMPACT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        loop {
            match shared.compact_once().await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(%err, "log compaction failed");
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl Backend for FilesystemBackend {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        mut payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        let id_json = id_json(id);
        let digest = digest_of(&id_json);
        // Buffer the start of the body: most objects are small and go to the log whole.
        let mut head = Vec::new();
        while let Some(chunk) = payload.next().await {
            head.extend_from_slice(&chunk.map_err(BackendError::Payload)?);
            if head.len() > SMALL_OBJECT {
                return self
                    .shared
                    .put_file(digest, id, &id_json, metadata, head, payload)
                    .await;
            }
        }
        let size = head.len() as u64;
        let _lock = self.shared.stripe(&digest).lock().await;
        self.shared
            .put_logged(digest, &id_json, metadata, Bytes::from(head))
            .await?;
        Ok(size)
    }

    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        self.shared.read(id, true).await
    }

    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        Ok(self.shared.read(id, false).await?.map(|o| o.metadata))
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        let id_json = id_json(id);
        let digest = digest_of(&id_json);
        let _lock = self.shared.stripe(&digest).lock().await;
        self.shared.delete_locked(digest, &id_json).await
    }

    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let id_json = id_json(id);
        let digest = digest_of(&id_json);
        let shared = &self.shared;
        let _lock = shared.stripe(&digest).lock().await;
        match shared.index.get(&digest) {
            None => Ok(false),
            Some(Entry::Logged { location, .. }) => {
                let current = shared.load(&location, &id_json).await?;
                if !same_version(&current.metadata, expected) {
                    return Ok(false);
                }
                shared
                    .put_logged(digest, &id_json, metadata, current.payload.clone())
                    .await?;
                Ok(true)
            }
            Some(Entry::File) => {
                let path = shared.object_path(&digest);
                let temp = files::temp_path(&path);
                let id = id.clone();
                let expected = expected.clone();
                let metadata = metadata.clone();
                blocking(move || {
                    let Some((mut file, current, offset)) = files::open_object(&path, &id)? else {
                        return Ok(false);
                    };
                    if !same_version(&current, &expected) {
                        return Ok(false);
                    }
                    let guard = files::TempGuard(Some(temp.clone()));
                    let mut out = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&temp)?;
                    out.write_all(&files::encode_header(&id, &metadata))?;
                    file.seek(SeekFrom::Start(offset))?;
                    io::copy(&mut file, &mut out)?;
                    out.sync_all()?;
                    drop(out);
                    files::publish(&temp, &path)?;
                    std::mem::forget(guard);
                    Ok(true)
                })
                .await
            }
        }
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        Ok(self.shared.sweep_logged(now).await? + self.shared.sweep_files(now).await?)
    }

    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<bool, BackendError> {
        let id_json = id_json(id);
        let digest = digest_of(&id_json);
        let shared = &self.shared;
        let _lock = shared.stripe(&digest).lock().await;
        // Under the stripe lock the current version cannot change.
        let current = match shared.index.get(&digest) {
            None => None,
            Some(Entry::Logged { location, .. }) => {
                Some(shared.load(&location, &id_json).await?.metadata.clone())
            }
            Some(Entry::File) => {
                let path = shared.object_path(&digest);
                let id = id.clone();
                blocking(move || Ok(files::open_object(&path, &id)?.map(|(_, meta, _)| meta)))
                    .await?
            }
        };
        if !matches_expected(current.as_ref(), expected) {
            return Ok(false);
        }
        match new {
            // Small enough for the log whatever the log's own threshold: callers swap
            // tombstones and small objects.
            Some((metadata, payload)) => {
                shared
                    .put_logged(digest, &id_json, metadata, payload)
                    .await?
            }
            None => shared.delete_locked(digest, &id_json).await?,
        }
        Ok(true)
    }

    /// Unfinished uploads live in `<root>/uploads`, beside (never inside) the stores.
    fn upload_staging(&self) -> Option<crate::uploads::Staging> {
        Some(crate::uploads::Staging::Dir(
            self.shared.root.join("uploads"),
        ))
    }
}

#[cfg(test)]
mod tests {
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
            let digest = digest_of(&id_json(&id("k")));
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

    #[tokio::test]
    async fn a_copy_committed_after_a_newer_version_does_not_win_on_reopen() {
        // Compaction copies a record while a newer version of its key commits: the copy
        // lands later in the log but keeps its older sequence number.
        let dir = tempfile::tempdir().unwrap();
        {
            let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
            put(&backend, "k", small(1)).await;
            let digest = digest_of(&id_json(&id("k")));
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
