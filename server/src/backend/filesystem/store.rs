//! The state every filesystem operation shares (log, index, cache, per-key locks) and
//! the reads and writes of one key: logged puts, file puts, reads and deletes.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::index::{Entry, FileMeta, Index};
use super::log::{Location, Log, Pending};
use super::record::{self, Kind, PayloadRef, Record};
use super::{codec, files, Digest, LOCK_STRIPES, WRITE_CHUNK};
use crate::backend::{
    same_version, BackendError, IoContext as _, Payload, PayloadStream, StoredObject,
};
use crate::metrics::StorageMetrics;
use crate::object::{Metadata, ObjectId};

/// A logged object as served: decoded once, then shared by every read that hits it.
#[derive(Debug)]
pub(super) struct Cached {
    pub(super) metadata: Metadata,
    pub(super) payload: Bytes,
}

#[derive(Clone)]
pub(super) struct CacheWeight;

impl quick_cache::Weighter<(u64, u64), Arc<Cached>> for CacheWeight {
    fn weight(&self, _key: &(u64, u64), value: &Arc<Cached>) -> u64 {
        value.payload.len() as u64 + 256
    }
}

pub(super) struct Shared {
    pub(super) root: PathBuf,
    pub(super) log: Log,
    pub(super) index: Index,
    /// Keyed by record location, which never changes meaning, so it is never stale.
    pub(super) cache: quick_cache::sync::Cache<(u64, u64), Arc<Cached>, CacheWeight>,
    /// Order mutations per key so index updates follow commit order.
    pub(super) stripes: Vec<Stripe>,
    pub(super) metrics: StorageMetrics,
    /// Held for the backend's lifetime: one process per root.
    pub(super) _lock: File,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// The per-key (hashed into stripes) ordering of mutations.
///
/// Why two locks: a logged put only needs its place in the log fixed under the key's
/// lock, not its sync, so it holds `order` just while queueing its record and
/// `in_flight` (shared) until it has updated the index; its sync then overlaps with the
/// next same-key writes and they share group commits. Every other mutation (delete,
/// compare-and-swap, metadata change, file writes, compaction, sweeps) decides from the
/// current version, so [`Stripe::lock`] also waits until no put is in flight.
#[derive(Debug, Default)]
pub(super) struct Stripe {
    order: Mutex<()>,
    in_flight: RwLock<()>,
}

/// Exclusive hold of a stripe: no other mutation of its keys runs or is in flight.
pub(super) struct StripeGuard<'a> {
    _order: MutexGuard<'a, ()>,
    _drained: RwLockWriteGuard<'a, ()>,
}

impl Stripe {
    /// Takes the stripe exclusively, once every put in flight on it has updated the index.
    pub(super) async fn lock(&self) -> StripeGuard<'_> {
        let order = self.order.lock().await;
        // Puts take `in_flight` only while holding `order`, so none can start now.
        let drained = self.in_flight.write().await;
        StripeGuard {
            _order: order,
            _drained: drained,
        }
    }

    /// Orders a put: the first guard (held while queueing the record) keeps other
    /// mutations out, the second (held until the index is updated) keeps exclusive
    /// holders waiting for it.
    async fn order(&self) -> (MutexGuard<'_, ()>, RwLockReadGuard<'_, ()>) {
        let order = self.order.lock().await;
        // Immediate: a writer of `in_flight` holds `order` for as long as it waits or holds.
        let in_flight = self.in_flight.read().await;
        (order, in_flight)
    }
}

/// The canonical bytes of an id (format v1), hashed for its digest.
pub(super) fn id_bytes(id: &ObjectId) -> Vec<u8> {
    codec::encode_id(id)
}

pub(super) fn digest_of(id_bytes: &[u8]) -> Digest {
    Sha256::digest(id_bytes).into()
}

pub(super) fn metadata_bytes(metadata: &Metadata) -> Vec<u8> {
    codec::encode_metadata(metadata)
}

/// Runs blocking I/O off the async workers. A panic in `f` resumes in the caller, so
/// the service counts it as a panic (`strata_service_panics_total`), not an I/O error.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(BackendError::Io(io::Error::other(err.to_string()))),
    }
}

impl Shared {
    pub(super) fn stripe(&self, digest: &Digest) -> &Stripe {
        &self.stripes[usize::from(u16::from_le_bytes([digest[2], digest[3]])) % LOCK_STRIPES]
    }

    pub(super) fn object_path(&self, digest: &Digest) -> PathBuf {
        files::object_path(&self.root, digest)
    }

    /// Reads and decodes a logged object (its `Put` record, or its `MetaRef` record and
    /// the `Put` holding the payload), from the cache when it is there.
    pub(super) async fn load(
        &self,
        location: &Location,
        payload: Option<&Location>,
        id_bytes: &[u8],
    ) -> Result<Arc<Cached>, BackendError> {
        let key = (location.segment.id, location.offset);
        if let Some(cached) = self.cache.get(&key) {
            return Ok(cached);
        }
        let record = self.read_record(location).await?;
        let holder = match payload {
            Some(payload) => self.read_record(payload).await?,
            None => record.clone(),
        };
        if record.id_bytes != id_bytes || holder.id_bytes != id_bytes {
            return Err(BackendError::Corrupt(
                "digest collision or misplaced record".to_owned(),
            ));
        }
        let mut metadata = codec::decode_metadata(&record.metadata_bytes)
            .map_err(|e| BackendError::Corrupt(format!("bad logged metadata: {e}")))?;
        metadata.size = Some(holder.payload.len() as u64);
        let cached = Arc::new(Cached {
            metadata,
            payload: holder.payload,
        });
        self.cache.insert(key, cached.clone());
        Ok(cached)
    }

    /// Changes a logged object's metadata by committing a `MetaRef` record that refers
    /// to the `Put` holding its payload: the payload is never copied. Call with the key's stripe locked, `current` being
    /// the key's current version at `location` (and `payload`).
    pub(super) async fn update_logged_metadata(
        &self,
        digest: Digest,
        id_bytes: &[u8],
        (location, payload): (Location, Option<Location>),
        current: &Cached,
        metadata: &Metadata,
    ) -> Result<(), BackendError> {
        let holder = payload.unwrap_or(location);
        let reference = PayloadRef {
            segment: holder.segment.id,
            offset: holder.offset,
            len: holder.len,
            seq: holder.seq,
        };
        let record = record::encode(
            Kind::MetaRef,
            id_bytes,
            &metadata_bytes(metadata),
            &reference.encode(),
        );
        let location = self.log.append(record).await?;
        let mut metadata = metadata.clone();
        metadata.size = Some(current.payload.len() as u64);
        let expires = metadata.time_expires;
        self.cache.insert(
            (location.segment.id, location.offset),
            Arc::new(Cached {
                metadata,
                payload: current.payload.clone(),
            }),
        );
        self.evict(self.index.insert(
            digest,
            Entry::Logged {
                location,
                expires,
                payload: Some(holder),
            },
        ));
        Ok(())
    }

    pub(super) async fn read_record(&self, location: &Location) -> Result<Record, BackendError> {
        let location = location.clone();
        blocking(move || {
            let bytes = location
                .segment
                .read(location.offset, location.len as usize)?;
            record::decode(&bytes, &location.segment.nonce)
                .map(|(record, _)| record)
                .map_err(|e| BackendError::Corrupt(format!("log record: {e:?}")))
        })
        .await
    }

    /// Drops the cached copy of a version the index no longer points at; passes it on.
    pub(super) fn evict(&self, old: Option<Entry>) -> Option<Entry> {
        if let Some(Entry::Logged { location, .. }) = &old {
            self.cache.remove(&(location.segment.id, location.offset));
        }
        old
    }

    /// Commits a `Put` record and makes it the key's current version. Call with the
    /// key's stripe locked.
    pub(super) async fn put_logged(
        &self,
        digest: Digest,
        id_bytes: &[u8],
        metadata: &Metadata,
        payload: Bytes,
    ) -> Result<u64, BackendError> {
        let record = record::encode(Kind::Put, id_bytes, &metadata_bytes(metadata), &payload);
        let pending = self.log.enqueue(record)?;
        self.publish_logged(digest, pending, metadata, payload)
            .await
    }

    /// Like [`Shared::put_logged`], taking the key's place in the log itself: the stripe
    /// is held only while the record is queued, so same-key puts share group commits.
    /// Returns the record's sequence number (its place among the key's writes).
    pub(super) async fn put_ordered(
        &self,
        digest: Digest,
        id_bytes: &[u8],
        metadata: &Metadata,
        payload: Bytes,
    ) -> Result<u64, BackendError> {
        let record = record::encode(Kind::Put, id_bytes, &metadata_bytes(metadata), &payload);
        let (order, _in_flight) = self.stripe(&digest).order().await;
        let pending = self.log.enqueue(record)?;
        drop(order);
        self.publish_logged(digest, pending, metadata, payload)
            .await
    }

    /// Waits for a queued `Put` record to be durable, then makes it the key's current
    /// version unless a later record of the key already is (same-key puts finish in any
    /// order; the index only ever moves forward in log order). Returns its sequence number.
    async fn publish_logged(
        &self,
        digest: Digest,
        pending: Pending,
        metadata: &Metadata,
        payload: Bytes,
    ) -> Result<u64, BackendError> {
        let location = pending.durable().await?;
        let seq = location.seq;
        let mut metadata = metadata.clone();
        metadata.size = Some(payload.len() as u64);
        let expires = metadata.time_expires;
        let key = (location.segment.id, location.offset);
        let Some(old) = self.index.insert_newer(
            digest,
            Entry::Logged {
                location,
                expires,
                payload: None,
            },
        ) else {
            return Ok(seq);
        };
        self.cache
            .insert(key, Arc::new(Cached { metadata, payload }));
        if let Some(Entry::File { .. }) = self.evict(old) {
            // The log now outranks the file; recovery would remove it too.
            let path = self.object_path(&digest);
            blocking(move || files::remove(&path, false).at("remove object file", &path)).await?;
        }
        Ok(seq)
    }

    /// Writes a large object's file and makes it the key's current version.
    pub(super) async fn put_file(
        &self,
        digest: Digest,
        id: &ObjectId,
        id_bytes: &[u8],
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
            .await
            .at("create temp object file", &temp)?;
        let mut size = head.len() as u64;
        let mut buffer = files::encode_header(id, metadata);
        buffer.extend_from_slice(&head);
        file.write_all(&buffer)
            .await
            .at("write temp object file", &temp)?;
        buffer.clear();
        while let Some(chunk) = rest.next().await {
            let chunk = chunk.map_err(BackendError::Payload)?;
            size += chunk.len() as u64;
            buffer.extend_from_slice(&chunk);
            if buffer.len() >= WRITE_CHUNK {
                file.write_all(&buffer)
                    .await
                    .at("write temp object file", &temp)?;
                buffer.clear();
            }
        }
        file.write_all(&buffer)
            .await
            .at("write temp object file", &temp)?;
        file.flush().await.at("write temp object file", &temp)?;
        file.sync_data().await.at("sync temp object file", &temp)?;
        drop(file);

        let _lock = self.stripe(&digest).lock().await;
        let published = temp.clone();
        blocking(move || files::publish(&published, &target).at("publish object file", &target))
            .await?;
        guard.0 = None;
        self.mark_external(digest, id_bytes, metadata).await?;
        Ok(size)
    }

    /// Commits the `External` marker for a file just renamed into place and makes it the
    /// key's current version. A file write is only acknowledged once the log says the
    /// file outranks earlier records; the marker carries the metadata, so a restart
    /// indexes the deadline without opening the file. Call with the key's stripe locked.
    pub(super) async fn mark_external(
        &self,
        digest: Digest,
        id_bytes: &[u8],
        metadata: &Metadata,
    ) -> Result<(), BackendError> {
        self.log
            .append(record::encode(
                Kind::External,
                id_bytes,
                &metadata_bytes(metadata),
                b"",
            ))
            .await?;
        self.evict(self.index.insert(
            digest,
            Entry::File {
                expires: metadata.time_expires,
                meta: None,
            },
        ));
        Ok(())
    }

    /// Makes a staged upload's file (laid out as an object file since its session was
    /// created) the key's current version without copying it: link it into place
    /// ([`files::adopt`]), commit the `External` marker, and only then drop the staged
    /// name, so at every crash point either the session still holds its bytes or the
    /// object is committed. Returns the payload size, or why the file cannot be adopted
    /// (then nothing changed and the caller copies it).
    pub(super) async fn adopt_file(
        &self,
        digest: Digest,
        id: &ObjectId,
        id_bytes: &[u8],
        metadata: &Metadata,
        staged: PathBuf,
        header_len: u64,
    ) -> Result<Result<u64, files::NotAdoptable>, BackendError> {
        let _lock = self.stripe(&digest).lock().await;
        let target = self.object_path(&digest);
        let (id, owned_metadata, linked) = (id.clone(), metadata.clone(), staged.clone());
        let adopted =
            blocking(move || files::adopt(&linked, &target, &id, &owned_metadata, header_len))
                .await?;
        let size = match adopted {
            Ok(size) => size,
            Err(why) => return Ok(Err(why)),
        };
        self.mark_external(digest, id_bytes, metadata).await?;
        // Synced under the key's lock: once the session is told it finished (the staged
        // name gone), no crash brings `data` back to be adopted again over a version
        // written after this one. This one directory sync is the session's whole
        // completion record: it needs no `done` marker.
        blocking(move || files::remove(&staged, true).at("remove adopted staged file", &staged))
            .await?;
        Ok(Ok(size))
    }

    /// Reads a key's current version (for HEAD, `with_payload` false, a file's payload
    /// is not read), following it if it moves between log and file while being read.
    pub(super) async fn read(
        &self,
        id: &ObjectId,
        with_payload: bool,
    ) -> Result<Option<StoredObject>, BackendError> {
        let id_bytes = id_bytes(id);
        let digest = digest_of(&id_bytes);
        for _ in 0..3 {
            match self.index.get(&digest) {
                None => return Ok(None),
                Some(Entry::Logged {
                    location, payload, ..
                }) => {
                    let cached = self.load(&location, payload.as_ref(), &id_bytes).await?;
                    return Ok(Some(StoredObject {
                        metadata: cached.metadata.clone(),
                        payload: Payload::Bytes(cached.payload.clone()),
                    }));
                }
                Some(Entry::File { meta, .. }) => {
                    let path = self.object_path(&digest);
                    let id = id.clone();
                    let opened = blocking(move || {
                        if with_payload {
                            files::read_object(&path, &id)
                        } else {
                            Ok(
                                files::open_object(&path, &id)?.map(|(_, metadata, _, file_id)| {
                                    (metadata, Payload::Bytes(Bytes::new()), file_id)
                                }),
                            )
                        }
                    })
                    .await?;
                    if let Some((header, payload, file_id)) = opened {
                        let metadata = effective(header, meta.as_deref(), &file_id);
                        return Ok(Some(StoredObject { metadata, payload }));
                    }
                    // The file was replaced by a logged version or deleted meanwhile.
                }
            }
        }
        Ok(None)
    }

    /// Deletes a key under its stripe lock.
    pub(super) async fn delete_locked(
        &self,
        digest: Digest,
        id_bytes: &[u8],
    ) -> Result<(), BackendError> {
        match self.index.get(&digest) {
            None => {}
            Some(Entry::Logged { .. }) => {
                self.log
                    .append(record::encode(Kind::Delete, id_bytes, b"", b""))
                    .await?;
                self.evict(self.index.remove(&digest));
            }
            Some(Entry::File { .. }) => {
                // No record needed: the log's last word on this key is `External` (or
                // nothing), which with no file means absent.
                let path = self.object_path(&digest);
                blocking(move || files::remove(&path, true).at("remove object file", &path))
                    .await?;
                self.index.remove(&digest);
            }
        }
        Ok(())
    }

    /// The current metadata of an object file (its header's, unless a `Meta` record
    /// for this very file outranks it) and the file's id; `None` when it is gone.
    pub(super) async fn file_metadata(
        &self,
        digest: &Digest,
        id: &ObjectId,
        meta: Option<Arc<FileMeta>>,
    ) -> Result<Option<(Metadata, files::FileId)>, BackendError> {
        let path = self.object_path(digest);
        let id = id.clone();
        blocking(move || {
            Ok(
                files::open_object(&path, &id)?.map(|(_, header, _, file_id)| {
                    (effective(header, meta.as_deref(), &file_id), file_id)
                }),
            )
        })
        .await
    }

    /// Changes an object file's metadata (compare-and-swap on `expected`) by committing
    /// a `Meta` record that names the file: the payload is neither copied nor touched.
    /// Call with the key's stripe locked.
    pub(super) async fn update_file_metadata(
        &self,
        digest: Digest,
        id: &ObjectId,
        id_bytes: &[u8],
        meta: Option<Arc<FileMeta>>,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let Some((current, file_id)) = self.file_metadata(&digest, id, meta).await? else {
            return Ok(false);
        };
        if !same_version(&current, expected) {
            return Ok(false);
        }
        let location = self
            .log
            .append(record::encode(
                Kind::Meta,
                id_bytes,
                &metadata_bytes(metadata),
                &file_id,
            ))
            .await?;
        let mut metadata = metadata.clone();
        metadata.size = None;
        self.index.insert(
            digest,
            Entry::File {
                expires: metadata.time_expires,
                meta: Some(Arc::new(FileMeta {
                    location,
                    metadata,
                    file_id,
                })),
            },
        );
        Ok(true)
    }
}

/// An object file's metadata: `meta`'s when it was written for this very file (its id
/// matches), else the header's; the size is the header's (the payload's).
pub(super) fn effective(
    header: Metadata,
    meta: Option<&FileMeta>,
    file_id: &files::FileId,
) -> Metadata {
    match meta {
        Some(meta) if &meta.file_id == file_id => Metadata {
            size: header.size,
            ..meta.metadata.clone()
        },
        _ => header,
    }
}
