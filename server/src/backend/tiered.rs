//! Tiered backend: objects up to [`THRESHOLD`] live in the high-volume backend; larger
//! ones live in the long-term backend behind a redirect tombstone in the high-volume
//! backend.
//!
//! A tombstone is a high-volume entry with an empty payload whose metadata is the
//! object's own plus two reserved custom entries (names no header can carry, because
//! they contain a space): the long-term key and the real size. Every change of the
//! high-volume entry is a compare-and-swap against the version read just before, so
//! concurrent writers never lose track of a long-term object; the order of steps keeps
//! one invariant: **a tombstone never points at nothing**.
//!
//! - A large write first uploads under a fresh long-term key, then swaps the tombstone
//!   in. A failure, panic or cancellation before the swap leaves only an orphan, which
//!   a guard deletes in a tracked background task.
//! - Replacing or deleting a tombstone swaps it out first and deletes its target
//!   afterwards, in the background: as an `orphan_cleanup` job on the service's
//!   background queue when one is attached, else (or when the queue is full or closed)
//!   in a tracked task of the backend's own.
//! - Long-term objects carry the object's deadline, and a deadline is only ever moved
//!   there before it moves on the tombstone, so the long-term sweep removes them only
//!   after the tombstone expired too.
//!
//! Reads of small objects are one high-volume read; a HEAD never touches long-term
//! storage; a GET of a large object adds the long-term read.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio_util::task::TaskTracker;

use super::{
    matches_expected, same_version, Backend, BackendError, NativeMultipart, NativeUpload,
    PartLimits, PayloadStream, StoredObject,
};
use crate::metrics::BackgroundJob;
use crate::object::{Metadata, ObjectId};
use crate::service::background::{work, BackgroundSink};

/// Largest object kept in the high-volume backend (1 MiB).
pub const THRESHOLD: usize = 1024 * 1024;
/// Reserved custom entry: the long-term key a tombstone points at.
const REDIRECT: &str = "strata redirect";
/// Reserved custom entry: the size of the object a tombstone stands for.
const SIZE: &str = "strata size";
/// Age beyond which an unreferenced long-term object counts as orphaned.
pub const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Attempts of a compare-and-swap loop before giving up on heavy contention.
const ATTEMPTS: usize = 16;

/// High-volume plus long-term storage, joined by redirect tombstones.
pub struct TieredBackend {
    high_volume: Arc<dyn Backend>,
    long_term: Arc<dyn Backend>,
    /// The service's background queue, once attached.
    background: OnceLock<BackgroundSink>,
    /// Clean-ups the queue did not take (none attached, full or closed).
    cleanup: TaskTracker,
}

impl std::fmt::Debug for TieredBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredBackend")
            .field("high_volume", &self.high_volume)
            .field("long_term", &self.long_term)
            .field("background", &self.background.get().is_some())
            .finish_non_exhaustive()
    }
}

/// What a high-volume entry is.
enum Entry {
    /// A small object, stored whole.
    Small,
    /// A tombstone pointing at this long-term object.
    Redirect(ObjectId),
}

fn entry_of(id: &ObjectId, raw: &Metadata) -> Entry {
    match raw.custom.get(REDIRECT) {
        Some(key) => Entry::Redirect(long_term_id(id, key)),
        None => Entry::Small,
    }
}

/// A fresh long-term id for a large write of `id`, so readers of the tombstone it
/// replaces keep their data.
fn fresh_target(id: &ObjectId) -> ObjectId {
    long_term_id(id, &format!("{}/{}", uuid::Uuid::now_v7(), id.key))
}

fn long_term_id(id: &ObjectId, key: &str) -> ObjectId {
    ObjectId {
        usecase: id.usecase.clone(),
        scopes: id.scopes.clone(),
        key: key.to_owned(),
    }
}

/// The object's metadata as clients see it (reserved entries removed, size restored).
fn public(mut raw: Metadata) -> Metadata {
    if raw.custom.remove(REDIRECT).is_some() {
        raw.size = raw.custom.remove(SIZE).and_then(|s| s.parse().ok());
    }
    raw
}

/// The tombstone metadata for an object stored under `target`.
fn tombstone(metadata: &Metadata, target: &str, size: u64) -> Metadata {
    let mut raw = metadata.clone();
    raw.size = None;
    raw.custom.insert(REDIRECT.to_owned(), target.to_owned());
    raw.custom.insert(SIZE.to_owned(), size.to_string());
    raw
}

/// Deletes a long-term object unless disarmed; covers errors, panics and cancellation
/// between an upload and the swap that would have referenced it.
struct OrphanGuard<'a> {
    backend: &'a TieredBackend,
    target: Option<ObjectId>,
}

impl Drop for OrphanGuard<'_> {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            self.backend.remove_later(target);
        }
    }
}

impl TieredBackend {
    /// Joins the two backends.
    pub fn new(high_volume: Arc<dyn Backend>, long_term: Arc<dyn Backend>) -> Self {
        Self {
            high_volume,
            long_term,
            background: OnceLock::new(),
            cleanup: TaskTracker::new(),
        }
    }

    /// Deletes a long-term object later: as an `orphan_cleanup` job on the attached
    /// background queue (which retries it), else in a tracked task of its own (awaited
    /// at shutdown), so a full or closed queue loses nothing.
    fn remove_later(&self, target: ObjectId) {
        let long_term = self.long_term.clone();
        if let Some(submit) = self.background.get() {
            let (long_term, target) = (long_term.clone(), target.clone());
            let job = work(move || {
                let (long_term, target) = (long_term.clone(), target.clone());
                async move {
                    long_term
                        .delete(&target)
                        .await
                        .map(|()| 0)
                        .map_err(|err| format!("deleting long-term {}: {err}", target.key))
                }
            });
            if submit(BackgroundJob::OrphanCleanup, job) {
                return;
            }
        }
        self.cleanup.spawn(async move {
            for attempt in 1..=3u32 {
                match long_term.delete(&target).await {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::warn!(%err, key = %target.key, attempt, "cannot delete long-term object");
                        tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
                    }
                }
            }
        });
    }

    /// Deletes long-term objects no tombstone points at (left by a crash between an
    /// upload and its swap) once they are older than [`ORPHAN_GRACE`], so uploads still
    /// on their way to a swap are never touched. Needs a long-term store that lists.
    async fn remove_orphans(&self, now: SystemTime) -> Result<u64, BackendError> {
        let Some(ids) = self.long_term.list_ids().await? else {
            return Ok(0);
        };
        let mut removed = 0;
        for (target, modified) in ids {
            let Some((stamp, key)) = target.key.split_once('/') else {
                continue;
            };
            let Some(started) = uuid::Uuid::parse_str(stamp)
                .ok()
                .and_then(|u| u.get_timestamp())
                .map(|t| {
                    let (secs, nanos) = t.to_unix();
                    SystemTime::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
                })
            else {
                continue;
            };
            // The later of upload start and completion: a slow upload completes long
            // after its key was made, and its swap follows the completion.
            let written = started.max(modified);
            if now.duration_since(written).unwrap_or_default() < ORPHAN_GRACE {
                continue;
            }
            let Ok(owner) = ObjectId::new(target.usecase.as_str(), target.scopes.clone(), key)
            else {
                continue;
            };
            let referenced = self
                .high_volume
                .head(&owner)
                .await?
                .is_some_and(|raw| raw.custom.get(REDIRECT) == Some(&target.key));
            if !referenced {
                self.long_term.delete(&target).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "orphaned long-term objects removed");
        }
        Ok(removed)
    }

    /// Runs `write`, which stores a large object of `id` at the fresh long-term
    /// `target`, then swaps its tombstone in; a failure, panic or cancellation before
    /// the swap leaves the target to the orphan guard.
    async fn publish_large(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        target: ObjectId,
        write: impl std::future::Future<Output = Result<u64, BackendError>>,
    ) -> Result<u64, BackendError> {
        let mut guard = OrphanGuard {
            backend: self,
            target: Some(target.clone()),
        };
        let size = write.await?;
        let raw = tombstone(metadata, &target.key, size);
        self.swap_in(id, Some((&raw, Bytes::new()))).await?;
        guard.target = None;
        Ok(size)
    }

    /// The long-term store's native multipart, which tiered ones run through.
    fn long_term_native(&self) -> Result<&dyn NativeMultipart, BackendError> {
        self.long_term
            .native_multipart()
            .ok_or_else(|| BackendError::Config("the long-term store has no multipart".into()))
    }

    /// Swaps the high-volume entry from whatever it is now to `new`, retrying on
    /// contention; the replaced tombstone's target is deleted afterwards.
    async fn swap_in(
        &self,
        id: &ObjectId,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<(), BackendError> {
        for _ in 0..ATTEMPTS {
            let current = self.high_volume.head(id).await?;
            if current.is_none() && new.is_none() {
                return Ok(());
            }
            if self
                .high_volume
                .compare_and_swap(id, current.as_ref(), new.clone())
                .await?
            {
                if let Some(Entry::Redirect(old)) = current.as_ref().map(|raw| entry_of(id, raw)) {
                    self.remove_later(old);
                }
                return Ok(());
            }
        }
        Err(BackendError::Unavailable {
            backend: "tiered",
            message: "too many concurrent writers on one key".to_owned(),
        })
    }
}

#[async_trait]
impl Backend for TieredBackend {
    fn name(&self) -> &'static str {
        "tiered"
    }

    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        mut payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        let mut head = BytesMut::new();
        while head.len() <= THRESHOLD {
            match payload.next().await {
                Some(chunk) => head.extend_from_slice(&chunk.map_err(BackendError::Payload)?),
                None => {
                    let size = head.len() as u64;
                    self.swap_in(id, Some((metadata, head.freeze()))).await?;
                    return Ok(size);
                }
            }
        }
        let target = fresh_target(id);
        let body = futures::stream::once(async move { Ok(head.freeze()) })
            .chain(payload)
            .boxed();
        let write = self.long_term.put(&target, metadata, body);
        self.publish_large(id, metadata, target.clone(), write)
            .await
    }

    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        // A target vanishes only after its tombstone was replaced: re-read then.
        for _ in 0..ATTEMPTS {
            let Some(object) = self.high_volume.get(id).await? else {
                return Ok(None);
            };
            let Entry::Redirect(target) = entry_of(id, &object.metadata) else {
                return Ok(Some(object));
            };
            if let Some(stored) = self.long_term.get(&target).await? {
                return Ok(Some(StoredObject {
                    metadata: public(object.metadata),
                    payload: stored.payload,
                }));
            }
            if self.high_volume.head(id).await?.as_ref() == Some(&object.metadata) {
                return Err(BackendError::Corrupt(format!(
                    "tombstone of {} points at a missing long-term object",
                    id.key
                )));
            }
        }
        Ok(None)
    }

    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        Ok(self.high_volume.head(id).await?.map(public))
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        self.swap_in(id, None).await
    }

    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let Some(raw) = self.high_volume.head(id).await? else {
            return Ok(false);
        };
        if !same_version(&public(raw.clone()), expected) {
            return Ok(false);
        }
        let new_raw = match entry_of(id, &raw) {
            Entry::Small => metadata.clone(),
            Entry::Redirect(target) => {
                // The long-term deadline moves first, and only ever later.
                if let Some(stored) = self.long_term.head(&target).await? {
                    let later = match (stored.time_expires, metadata.time_expires) {
                        (Some(old), Some(new)) => new > old,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    if later {
                        let mut moved = stored.clone();
                        moved.time_expires = metadata.time_expires;
                        moved.expiration = metadata.expiration;
                        if !self
                            .long_term
                            .update_metadata(&target, &stored, &moved)
                            .await?
                        {
                            return Ok(false);
                        }
                    }
                }
                let size = raw.custom.get(SIZE).cloned().unwrap_or_default();
                let key = raw.custom.get(REDIRECT).cloned().unwrap_or_default();
                let mut new_raw = metadata.clone();
                new_raw.size = None;
                new_raw.custom.insert(REDIRECT.to_owned(), key);
                new_raw.custom.insert(SIZE.to_owned(), size);
                new_raw
            }
        };
        self.high_volume.update_metadata(id, &raw, &new_raw).await
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        // Expired tombstones go with the high-volume sweep; their targets carry the same
        // (or a later) deadline and go with the long-term sweep.
        // Every object has a high-volume entry, so that count is the object count.
        let removed = self.high_volume.sweep_expired(now).await?;
        self.long_term.sweep_expired(now).await?;
        self.remove_orphans(now).await?;
        Ok(removed)
    }

    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<bool, BackendError> {
        let current = self.high_volume.head(id).await?;
        let visible = current.clone().map(public);
        if !matches_expected(visible.as_ref(), expected) {
            return Ok(false);
        }
        if !self
            .high_volume
            .compare_and_swap(id, current.as_ref(), new)
            .await?
        {
            return Ok(false);
        }
        if let Some(Entry::Redirect(old)) = current.as_ref().map(|raw| entry_of(id, raw)) {
            self.remove_later(old);
        }
        Ok(true)
    }

    /// Uploads stage where large objects end up (the long-term store, an
    /// `s3compatible` bucket shared by every pod) and publish through the tiered `put`,
    /// which keeps the redirect tombstone consistent; high-volume staging is the fallback.
    fn upload_staging(&self) -> Option<crate::uploads::Staging> {
        self.long_term
            .upload_staging()
            .or_else(|| self.high_volume.upload_staging())
    }

    /// Multipart uploads with native parts go to a fresh long-term object (they are
    /// larger than [`THRESHOLD`], S3's smallest part alone is) and swap a tombstone in
    /// at completion, like a large `put`.
    fn native_multipart(&self) -> Option<&dyn NativeMultipart> {
        self.long_term.native_multipart().map(|_| self as _)
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.high_volume.probe().await?;
        self.long_term.probe().await
    }

    fn attach_background(&self, sink: BackgroundSink) {
        self.high_volume.attach_background(sink.clone());
        self.long_term.attach_background(sink.clone());
        let _ = self.background.set(sink);
    }

    async fn shutdown(&self) {
        self.cleanup.close();
        self.cleanup.wait().await;
        self.cleanup.reopen();
        self.high_volume.shutdown().await;
        self.long_term.shutdown().await;
    }
}

#[async_trait]
impl NativeMultipart for TieredBackend {
    fn part_limits(&self) -> PartLimits {
        self.long_term_native().map_or(
            PartLimits {
                min_size: u64::MAX,
                max_size: 0,
                max_number: 0,
            },
            |native| native.part_limits(),
        )
    }

    async fn create(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
    ) -> Result<NativeUpload, BackendError> {
        let target = fresh_target(id);
        self.long_term_native()?.create(&target, metadata).await
    }

    async fn upload_part(
        &self,
        upload: &NativeUpload,
        number: u32,
        length: u64,
        content_md5: Option<[u8; 16]>,
        body: PayloadStream,
    ) -> Result<String, BackendError> {
        self.long_term_native()?
            .upload_part(upload, number, length, content_md5, body)
            .await
    }

    async fn complete(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        upload: &NativeUpload,
        parts: Vec<(u32, String)>,
        size: u64,
    ) -> Result<(), BackendError> {
        let native = self.long_term_native()?;
        let target = upload.target.clone();
        let write = async {
            native
                .complete(&target, metadata, upload, parts, size)
                .await
                .map(|()| size)
        };
        self.publish_large(id, metadata, upload.target.clone(), write)
            .await
            .map(|_| ())
    }

    async fn abort(&self, upload: &NativeUpload) -> Result<(), BackendError> {
        self.long_term_native()?.abort(upload).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::payload::collect;
    use crate::object::Scopes;

    /// What a probe does on compare-and-swap.
    #[derive(Debug, Clone, Copy, PartialEq, Default)]
    enum OnSwap {
        #[default]
        Pass,
        Fail,
        Panic,
        Hang,
    }

    /// Memory storage (either tier) that counts reads, remembers every key written, and
    /// whose swaps can fail, panic or hang.
    #[derive(Debug, Default)]
    struct Probe {
        inner: MemoryBackend,
        on_swap: Mutex<OnSwap>,
        written: Mutex<Vec<ObjectId>>,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Backend for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        async fn list_ids(&self) -> Result<Option<Vec<(ObjectId, SystemTime)>>, BackendError> {
            self.inner.list_ids().await
        }
        async fn put(
            &self,
            id: &ObjectId,
            m: &Metadata,
            p: PayloadStream,
        ) -> Result<u64, BackendError> {
            self.written.lock().unwrap().push(id.clone());
            self.inner.put(id, m, p).await
        }
        async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.get(id).await
        }
        async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.head(id).await
        }
        async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
            self.inner.delete(id).await
        }
        async fn update_metadata(
            &self,
            id: &ObjectId,
            e: &Metadata,
            m: &Metadata,
        ) -> Result<bool, BackendError> {
            self.inner.update_metadata(id, e, m).await
        }
        async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
            self.inner.sweep_expired(now).await
        }
        async fn compare_and_swap(
            &self,
            id: &ObjectId,
            expected: Option<&Metadata>,
            new: Option<(&Metadata, Bytes)>,
        ) -> Result<bool, BackendError> {
            let mode = *self.on_swap.lock().unwrap();
            match mode {
                OnSwap::Pass => self.inner.compare_and_swap(id, expected, new).await,
                OnSwap::Fail => Err(BackendError::Unavailable {
                    backend: "probe",
                    message: "injected".into(),
                }),
                OnSwap::Panic => panic!("injected panic in the swap"),
                OnSwap::Hang => futures::future::pending().await,
            }
        }
    }

    impl Probe {
        /// Long-term keys that still hold an object.
        async fn live(&self) -> Vec<ObjectId> {
            let written = self.written.lock().unwrap().clone();
            let mut live = Vec::new();
            for id in written {
                if self.inner.head(&id).await.unwrap().is_some() && !live.contains(&id) {
                    live.push(id);
                }
            }
            live
        }
    }

    struct Setup {
        tiered: Arc<TieredBackend>,
        high: Arc<Probe>,
        long: Arc<Probe>,
    }

    fn setup() -> Setup {
        let high = Arc::new(Probe::default());
        let long = Arc::new(Probe::default());
        let tiered = Arc::new(TieredBackend::new(high.clone(), long.clone()));
        Setup { tiered, high, long }
    }

    fn id() -> ObjectId {
        ObjectId::new("tiered", Scopes(vec![]), "key").unwrap()
    }

    fn body(len: usize, byte: u8) -> PayloadStream {
        futures::stream::once(async move { Ok(Bytes::from(vec![byte; len])) }).boxed()
    }

    async fn read(tiered: &TieredBackend) -> Option<Vec<u8>> {
        let object = tiered.get(&id()).await.unwrap()?;
        Some(collect(object.payload.into_stream()).await.unwrap())
    }

    const LARGE: usize = THRESHOLD + 1;

    #[tokio::test]
    async fn small_reads_and_every_head_are_one_high_volume_read() {
        use std::sync::atomic::Ordering::Relaxed;
        let s = setup();
        let small = ObjectId::new("tiered", Scopes(vec![]), "small").unwrap();
        s.tiered
            .put(&small, &Metadata::default(), body(100, 1))
            .await
            .unwrap();
        s.tiered
            .put(&id(), &Metadata::default(), body(LARGE, 2))
            .await
            .unwrap();
        let calls = |s: &Setup| (s.high.calls.swap(0, Relaxed), s.long.calls.swap(0, Relaxed));
        calls(&s);
        s.tiered.get(&small).await.unwrap().unwrap();
        assert_eq!(calls(&s), (1, 0), "small GET");
        s.tiered.head(&id()).await.unwrap().unwrap();
        assert_eq!(calls(&s), (1, 0), "large HEAD");
        s.tiered.get(&id()).await.unwrap().unwrap();
        assert_eq!(calls(&s), (1, 1), "large GET follows the tombstone once");
    }

    #[tokio::test]
    async fn the_threshold_splits_the_tiers_and_replaced_targets_are_removed() {
        let s = setup();
        let m = Metadata::default();
        s.tiered.put(&id(), &m, body(THRESHOLD, 1)).await.unwrap();
        assert!(s.long.live().await.is_empty(), "1 MiB stays in high volume");
        s.tiered.put(&id(), &m, body(LARGE, 2)).await.unwrap();
        let first = s.long.live().await;
        assert_eq!(first.len(), 1);
        let raw = s.high.head(&id()).await.unwrap().unwrap();
        assert_eq!(raw.size, Some(0), "the tombstone holds no payload");
        assert_eq!(
            s.tiered.head(&id()).await.unwrap().unwrap().size,
            Some(LARGE as u64)
        );
        assert!(s
            .tiered
            .head(&id())
            .await
            .unwrap()
            .unwrap()
            .custom
            .is_empty());

        s.tiered.put(&id(), &m, body(LARGE, 3)).await.unwrap();
        s.tiered.shutdown().await;
        let second = s.long.live().await;
        assert_eq!(second.len(), 1, "the replaced target is gone");
        assert_ne!(first, second);
        assert_eq!(read(&s.tiered).await.unwrap(), vec![3; LARGE]);

        s.tiered.put(&id(), &m, body(5, 4)).await.unwrap();
        s.tiered.shutdown().await;
        assert!(
            s.long.live().await.is_empty(),
            "large to small removes the target"
        );
        assert_eq!(read(&s.tiered).await.unwrap(), vec![4; 5]);

        s.tiered.put(&id(), &m, body(LARGE, 5)).await.unwrap();
        s.tiered.delete(&id()).await.unwrap();
        s.tiered.shutdown().await;
        assert!(s.long.live().await.is_empty(), "delete removes the target");
        assert!(read(&s.tiered).await.is_none());
    }

    /// After a failed, panicked or abandoned large write the old version is intact, no
    /// tombstone points anywhere new, and the uploaded orphan is removed.
    async fn interrupted_swap_keeps_the_old_version(mode: OnSwap) {
        let s = setup();
        let m = Metadata::default();
        s.tiered.put(&id(), &m, body(LARGE, 1)).await.unwrap();
        let before = s.high.head(&id()).await.unwrap();
        *s.high.on_swap.lock().unwrap() = mode;
        let tiered = s.tiered.clone();
        let write = tokio::spawn(async move {
            tiered
                .put(&id(), &Metadata::default(), body(LARGE, 2))
                .await
        });
        match mode {
            OnSwap::Fail => assert!(write.await.unwrap().is_err()),
            OnSwap::Panic => assert!(write.await.unwrap_err().is_panic()),
            OnSwap::Hang => {
                // Wait until the upload is done and the swap hangs, then abandon it.
                while s.long.written.lock().unwrap().len() < 2 {
                    tokio::task::yield_now().await;
                }
                write.abort();
                assert!(write.await.unwrap_err().is_cancelled());
            }
            OnSwap::Pass => unreachable!(),
        }
        *s.high.on_swap.lock().unwrap() = OnSwap::Pass;
        s.tiered.shutdown().await;
        assert_eq!(s.high.head(&id()).await.unwrap(), before, "{mode:?}");
        assert_eq!(
            s.long.live().await.len(),
            1,
            "{mode:?}: the orphan is removed"
        );
        assert_eq!(read(&s.tiered).await.unwrap(), vec![1; LARGE], "{mode:?}");
    }

    #[tokio::test]
    async fn a_failed_swap_leaves_no_orphan() {
        interrupted_swap_keeps_the_old_version(OnSwap::Fail).await;
    }

    #[tokio::test]
    async fn a_panic_before_the_swap_leaves_no_orphan() {
        interrupted_swap_keeps_the_old_version(OnSwap::Panic).await;
    }

    #[tokio::test]
    async fn an_abandoned_write_leaves_no_orphan() {
        interrupted_swap_keeps_the_old_version(OnSwap::Hang).await;
    }

    #[tokio::test]
    async fn only_unreferenced_long_term_objects_past_the_grace_period_are_removed() {
        let s = setup();
        s.tiered
            .put(&id(), &Metadata::default(), body(LARGE, 1))
            .await
            .unwrap();
        let referenced = s.long.live().await.pop().unwrap();
        let mut orphan = referenced.clone();
        orphan.key = format!("{}/key", uuid::Uuid::now_v7());
        s.long
            .put(&orphan, &Metadata::default(), body(10, 2))
            .await
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(
            s.tiered.remove_orphans(now).await.unwrap(),
            0,
            "within the grace"
        );
        let later = now + ORPHAN_GRACE + std::time::Duration::from_secs(1);
        assert_eq!(s.tiered.remove_orphans(later).await.unwrap(), 1);
        assert_eq!(s.long.live().await, vec![referenced]);
        assert_eq!(read(&s.tiered).await.unwrap(), vec![1; LARGE]);
    }

    #[tokio::test]
    async fn a_broken_upload_stores_nothing() {
        let s = setup();
        s.tiered
            .put(&id(), &Metadata::default(), body(10, 1))
            .await
            .unwrap();
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from(vec![0u8; LARGE])),
            Err(std::io::Error::other("client went away")),
        ])
        .boxed();
        let err = s
            .tiered
            .put(&id(), &Metadata::default(), broken)
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Payload(_)), "{err}");
        s.tiered.shutdown().await;
        assert!(s.long.live().await.is_empty());
        assert_eq!(read(&s.tiered).await.unwrap(), vec![1; 10]);
    }

    #[tokio::test]
    async fn extending_a_large_object_moves_the_long_term_deadline_first() {
        let s = setup();
        let now = SystemTime::now();
        let mut m = Metadata {
            time_expires: Some(now + std::time::Duration::from_secs(60)),
            ..Metadata::default()
        };
        s.tiered.put(&id(), &m, body(LARGE, 1)).await.unwrap();
        let visible = s.tiered.head(&id()).await.unwrap().unwrap();
        m.time_expires = Some(now + std::time::Duration::from_secs(3600));
        assert!(s.tiered.update_metadata(&id(), &visible, &m).await.unwrap());
        let target = s.long.live().await.pop().unwrap();
        let stored = s.long.head(&target).await.unwrap().unwrap();
        assert_eq!(stored.time_expires, m.time_expires);
        // Sweeping before the new deadline keeps both the tombstone and its target.
        let later = now + std::time::Duration::from_secs(120);
        assert_eq!(s.tiered.sweep_expired(later).await.unwrap(), 0);
        assert_eq!(read(&s.tiered).await.unwrap(), vec![1; LARGE]);
    }

    /// A tiered backend under a running service, whose background queue it joins.
    fn with_service() -> (
        Setup,
        crate::service::StorageService,
        crate::metrics::Metrics,
    ) {
        let s = setup();
        let metrics = crate::metrics::Metrics::new();
        let service = crate::service::StorageService::new(
            s.tiered.clone(),
            &crate::config::ServiceConfig::default(),
            metrics.clone(),
        );
        (s, service, metrics)
    }

    fn orphan_jobs(vec: &prometheus::IntCounterVec) -> u64 {
        vec.with_label_values(&[BackgroundJob::OrphanCleanup.as_str()])
            .get()
    }

    #[tokio::test]
    async fn replaced_targets_are_removed_by_orphan_cleanup_background_jobs() {
        let (s, service, metrics) = with_service();
        let m = Metadata::default();
        s.tiered.put(&id(), &m, body(LARGE, 1)).await.unwrap();
        let first = s.long.live().await;
        assert_eq!(first.len(), 1);
        s.tiered.put(&id(), &m, body(LARGE, 2)).await.unwrap();

        let report = service.drain(std::time::Duration::from_secs(30)).await;
        assert!(report.on_time);
        assert_eq!(orphan_jobs(&metrics.background_jobs_completed), 1);
        assert_eq!(orphan_jobs(&metrics.background_jobs_dropped), 0);
        let second = s.long.live().await;
        assert_eq!(second.len(), 1, "the replaced target is gone");
        assert_ne!(first, second);
        assert_eq!(read(&s.tiered).await.unwrap(), vec![2; LARGE]);
    }

    #[tokio::test]
    async fn a_closed_background_queue_falls_back_to_a_tracked_cleanup() {
        let (s, service, metrics) = with_service();
        let m = Metadata::default();
        s.tiered.put(&id(), &m, body(LARGE, 1)).await.unwrap();
        let first = s.long.live().await;
        // Draining closes the queue: the next clean-up is refused and done directly.
        assert!(
            service
                .drain(std::time::Duration::from_secs(30))
                .await
                .on_time
        );
        s.tiered.put(&id(), &m, body(LARGE, 2)).await.unwrap();
        s.tiered.shutdown().await;

        assert_eq!(orphan_jobs(&metrics.background_jobs_dropped), 1);
        assert_eq!(orphan_jobs(&metrics.background_jobs_completed), 0);
        let second = s.long.live().await;
        assert_eq!(second.len(), 1, "the replaced target is gone all the same");
        assert_ne!(first, second);
    }
}
