//! Time-to-idle bumps, off the read path.
//!
//! Why: a TTI read moves the object's deadline, which is a metadata write. Done inside
//! the read, a slow or failing write (a read-only log, a full disk) would delay or fail
//! the read. So a due bump is spawned and the read answers at once; a bump is best
//! effort (missing one only lets the object expire a little sooner, never lose data
//! early: the debounce in [`expiration::tti_bump`] is far below the TTI), and at most one
//! runs per key, so a hot key read by many clients costs one write at a time. Each bump
//! is counted in `strata_service_tti_bumps_total{outcome}`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use futures::FutureExt as _;
use prometheus::IntCounterVec;

use crate::backend::Backend;
use crate::metrics::{Metrics, TtiBumpOutcome};
use crate::object::expiration;
use crate::object::{Metadata, ObjectId};

/// The bumps in flight, one per key at most.
#[derive(Debug)]
pub(super) struct TtiBumps {
    in_flight: Mutex<HashSet<ObjectId>>,
    outcomes: IntCounterVec,
}

impl TtiBumps {
    pub(super) fn new(metrics: &Metrics) -> Self {
        Self {
            in_flight: Mutex::new(HashSet::new()),
            outcomes: metrics.tti_bumps.clone(),
        }
    }

    fn count(&self, outcome: TtiBumpOutcome) {
        self.outcomes.with_label_values(&[outcome.as_str()]).inc();
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<ObjectId>> {
        // The set stays consistent whatever panicked while holding it.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a bump of `id`'s deadline for an access at `now` when one is due, unless
    /// one for `id` is already running. Never waits and never fails the caller.
    pub(super) fn schedule(
        self: &Arc<Self>,
        backend: &Arc<dyn Backend>,
        id: &ObjectId,
        metadata: &Metadata,
        now: SystemTime,
    ) {
        let Some(deadline) = expiration::tti_bump(metadata.expiration, metadata.time_expires, now)
        else {
            return;
        };
        if !self.in_flight().insert(id.clone()) {
            self.count(TtiBumpOutcome::Coalesced);
            return;
        }
        let mut updated = metadata.clone();
        updated.time_expires = Some(deadline);
        let (bumps, backend, id, expected) =
            (self.clone(), backend.clone(), id.clone(), metadata.clone());
        tokio::spawn(async move {
            let result =
                std::panic::AssertUnwindSafe(backend.update_metadata(&id, &expected, &updated))
                    .catch_unwind()
                    .await;
            bumps.in_flight().remove(&id);
            let outcome = match result {
                Ok(Ok(true)) => TtiBumpOutcome::Applied,
                // A concurrent write or bump replaced the version: it has its own deadline.
                Ok(Ok(false)) => TtiBumpOutcome::Superseded,
                Ok(Err(err)) => {
                    tracing::warn!(%err, "time-to-idle bump failed; the read was served");
                    TtiBumpOutcome::Failed
                }
                Err(panic) => {
                    tracing::error!(
                        panic = %super::panic_message(panic.as_ref()),
                        "time-to-idle bump panicked; the read was served"
                    );
                    TtiBumpOutcome::Failed
                }
            };
            bumps.count(outcome);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;
    use tokio::sync::Notify;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::backend::{BackendError, PayloadStream, StoredObject};
    use crate::config::ServiceConfig;
    use crate::service::StorageService;

    /// A memory backend whose metadata updates fail, or wait until released.
    #[derive(Debug, Default)]
    struct StuckUpdates {
        inner: MemoryBackend,
        fail: bool,
        release: Notify,
    }

    #[async_trait]
    impl Backend for StuckUpdates {
        fn name(&self) -> &'static str {
            "stuck"
        }
        async fn put(
            &self,
            id: &ObjectId,
            metadata: &Metadata,
            payload: PayloadStream,
        ) -> Result<u64, BackendError> {
            self.inner.put(id, metadata, payload).await
        }
        async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
            self.inner.get(id).await
        }
        async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
            self.inner.head(id).await
        }
        async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
            self.inner.delete(id).await
        }
        async fn update_metadata(
            &self,
            id: &ObjectId,
            expected: &Metadata,
            metadata: &Metadata,
        ) -> Result<bool, BackendError> {
            if self.fail {
                return Err(BackendError::Io(std::io::Error::new(
                    std::io::ErrorKind::ReadOnlyFilesystem,
                    "object log is read-only",
                )));
            }
            self.release.notified().await;
            self.inner.update_metadata(id, expected, metadata).await
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
            self.inner.compare_and_swap(id, expected, new).await
        }
    }

    fn id() -> ObjectId {
        ObjectId::from_raw_segments("attachments", "org=1", "idle").unwrap()
    }

    /// A service over `backend` holding one TTI object whose bump is due at `now`.
    async fn service_with_idle_object(
        backend: Arc<StuckUpdates>,
    ) -> (StorageService, Metrics, SystemTime) {
        let metrics = Metrics::new();
        let service = StorageService::new(backend, &ServiceConfig::default(), metrics.clone());
        let created = SystemTime::now() - Duration::from_secs(3600);
        let metadata = Metadata {
            expiration: expiration::ExpirationPolicy::TimeToIdle(Duration::from_secs(7200)),
            time_created: Some(created),
            time_expires: Some(created + Duration::from_secs(7200)),
            ..Metadata::default()
        };
        let body = futures::stream::once(async { Ok(Bytes::from_static(b"idle")) });
        service
            .insert(id(), metadata, Box::pin(body))
            .await
            .unwrap();
        (service, metrics, SystemTime::now())
    }

    fn bumps(metrics: &Metrics, outcome: TtiBumpOutcome) -> u64 {
        metrics
            .tti_bumps
            .with_label_values(&[outcome.as_str()])
            .get()
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn a_failing_bump_does_not_fail_the_read() {
        let backend = Arc::new(StuckUpdates {
            fail: true,
            ..StuckUpdates::default()
        });
        let (service, metrics, now) = service_with_idle_object(backend).await;
        let object = service.get(id(), now).await.unwrap().expect("served");
        assert_eq!(object.metadata.size, Some(4));
        eventually("the bump failed", || {
            bumps(&metrics, TtiBumpOutcome::Failed) == 1
        })
        .await;
        assert!(service.head(id(), now).await.unwrap().is_some());
        eventually("both bumps failed", || {
            bumps(&metrics, TtiBumpOutcome::Failed) == 2
        })
        .await;
        assert_eq!(bumps(&metrics, TtiBumpOutcome::Applied), 0);
    }

    #[tokio::test]
    async fn reads_neither_wait_for_a_bump_nor_start_a_second_one() {
        let backend = Arc::new(StuckUpdates::default());
        let (service, metrics, now) = service_with_idle_object(backend.clone()).await;
        // The first bump hangs in the backend; reads keep answering meanwhile.
        for _ in 0..3 {
            let read = tokio::time::timeout(Duration::from_secs(10), service.get(id(), now));
            assert!(read.await.expect("not held up").unwrap().is_some());
        }
        assert_eq!(bumps(&metrics, TtiBumpOutcome::Coalesced), 2);
        backend.release.notify_one();
        eventually("the bump applied", || {
            bumps(&metrics, TtiBumpOutcome::Applied) == 1
        })
        .await;
        let bumped = service.head(id(), now).await.unwrap().unwrap();
        assert!(bumped.time_expires.unwrap() > now + Duration::from_secs(7000));
    }
}
