//! The storage service: every operation acquires a service-tier permit, then runs in a
//! task of its own (or on a pool worker, `service.executor`) with panics caught; writes
//! always run to completion, reads stop when their caller goes away (`kind`).
//!
//! [`StorageService`] is the thin, cloneable public API taking owned arguments; the
//! business logic (expiry, TTI bumps, extensions) lives on the private [`Inner`] type.
//! If the caller goes away (an HTTP client hung up), the spawned task still finishes,
//! so multi-step writes are never left half applied; a panic becomes
//! [`ServiceError::Panic`], counts in `strata_service_panics_total` and releases its
//! permit while the process and all other work carry on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::backend::{Backend, PayloadStream, StoredObject};
use crate::config::ServiceConfig;
use crate::metrics::{BackgroundJob, Metrics, Operation, Outcome, RejectReason};
use crate::object::expiration::{self, ExtendError, ExtendExpiry};
use crate::object::{Metadata, ObjectId};

pub mod background;
mod bulk;
mod error;
pub mod executor;
pub mod kind;
pub mod limiter;
mod tti;
mod uploads;

pub use bulk::BufferedObject;
pub use error::ServiceError;
use limiter::Limiter;
use tti::TtiBumps;

/// How long `/ready` waits for the backend's probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Result of an expiry extension that reached an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendOutcome {
    /// The deadline is now at least the requested one.
    Satisfied,
    /// The object does not exist or has expired.
    NotFound,
}

/// Cloneable handle to the storage service.
#[derive(Clone, Debug)]
pub struct StorageService {
    inner: Arc<Inner>,
    limiter: Arc<Limiter>,
    executor: executor::Executor,
    background: Arc<background::Background>,
    metrics: Metrics,
    tasks: TaskTracker,
}

/// What a shutdown drain managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Every operation, background job and the backend finished within the wait.
    pub on_time: bool,
    /// Background jobs left undone (queued or running) when the wait ran out.
    pub background_left: usize,
}

/// Business logic over one backend; runs inside spawned tasks.
#[derive(Debug)]
struct Inner {
    backend: Arc<dyn Backend>,
    bumps: Arc<TtiBumps>,
}

impl Inner {
    async fn insert(
        &self,
        id: ObjectId,
        metadata: Metadata,
        payload: PayloadStream,
    ) -> Result<u64, ServiceError> {
        Ok(self.backend.put(&id, &metadata, payload).await?)
    }

    /// Reads an object, hiding expired ones and starting a TTI bump when one is due
    /// (never waiting for it). The returned metadata shows the deadline as it was before
    /// this access.
    async fn get(
        &self,
        id: ObjectId,
        now: SystemTime,
    ) -> Result<Option<StoredObject>, ServiceError> {
        let Some(object) = self.backend.get(&id).await? else {
            return Ok(None);
        };
        if object.metadata.is_expired(now) {
            return Ok(None);
        }
        self.bumps
            .schedule(&self.backend, &id, &object.metadata, now);
        Ok(Some(object))
    }

    async fn head(&self, id: ObjectId, now: SystemTime) -> Result<Option<Metadata>, ServiceError> {
        let Some(metadata) = self.backend.head(&id).await? else {
            return Ok(None);
        };
        if metadata.is_expired(now) {
            return Ok(None);
        }
        self.bumps.schedule(&self.backend, &id, &metadata, now);
        Ok(Some(metadata))
    }

    async fn delete(&self, id: ObjectId) -> Result<(), ServiceError> {
        Ok(self.backend.delete(&id).await?)
    }

    async fn extend_expiry(
        &self,
        id: ObjectId,
        extension: ExtendExpiry,
        now: SystemTime,
    ) -> Result<ExtendOutcome, ServiceError> {
        // A conditional update can lose to a concurrent write; retry a few times, then
        // report the conflict as a rejection (409).
        for _ in 0..3 {
            let Some(current) = self.backend.head(&id).await? else {
                return Ok(ExtendOutcome::NotFound);
            };
            if current.is_expired(now) {
                return Ok(ExtendOutcome::NotFound);
            }
            let updated = match expiration::apply_extension(&current, &extension, now) {
                Ok(Some(updated)) => updated,
                Ok(None) => return Ok(ExtendOutcome::Satisfied),
                Err(err @ ExtendError::OutOfRange) => return Err(ServiceError::ExtendInvalid(err)),
                Err(err) => return Err(ServiceError::ExtendRejected(err)),
            };
            if self
                .backend
                .update_metadata(&id, &current, &updated)
                .await?
            {
                return Ok(ExtendOutcome::Satisfied);
            }
        }
        Err(ServiceError::ExtendConflict)
    }
}

/// The text of a caught panic payload (`&str` or `String`; anything else gets a stand-in).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Decrements the running-task gauge however the task ends.
struct RunningGuard(prometheus::IntGauge);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl StorageService {
    /// Creates the service over `backend` with the `service` section's limits and
    /// executor (pool workers start here: call it inside a runtime).
    pub fn new(backend: Arc<dyn Backend>, config: &ServiceConfig, metrics: Metrics) -> Self {
        let executor = executor::Executor::new(config, &metrics);
        let background = Arc::new(background::Background::start(
            config.background_queue,
            executor.clone(),
            metrics.clone(),
        ));
        backend.attach_background(background.sink());
        Self {
            inner: Arc::new(Inner {
                backend,
                bumps: Arc::new(TtiBumps::new(&metrics)),
            }),
            limiter: Arc::new(Limiter::new(config, metrics.clone())),
            executor,
            background,
            metrics,
            tasks: TaskTracker::new(),
        }
    }

    /// Stores an object (creating or replacing it); returns the stored size.
    pub async fn insert(
        &self,
        id: ObjectId,
        metadata: Metadata,
        payload: PayloadStream,
    ) -> Result<u64, ServiceError> {
        self.run(
            Operation::Insert,
            |_| Outcome::Ok,
            move |inner| async move { inner.insert(id, metadata, payload).await },
        )
        .await
    }

    /// Opens an object as of `now` (the request time); the permit covers opening only,
    /// the payload streams afterwards.
    pub async fn get(
        &self,
        id: ObjectId,
        now: SystemTime,
    ) -> Result<Option<StoredObject>, ServiceError> {
        self.run(Operation::Get, found, move |inner| async move {
            inner.get(id, now).await
        })
        .await
    }

    /// Reads an object's metadata as of `now` (the request time).
    pub async fn head(
        &self,
        id: ObjectId,
        now: SystemTime,
    ) -> Result<Option<Metadata>, ServiceError> {
        self.run(Operation::Head, found, move |inner| async move {
            inner.head(id, now).await
        })
        .await
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, id: ObjectId) -> Result<(), ServiceError> {
        self.run(
            Operation::Delete,
            |_| Outcome::Ok,
            move |inner| async move { inner.delete(id).await },
        )
        .await
    }

    /// Moves an object's expiry deadline later (never earlier); `now` is the request time.
    pub async fn extend_expiry(
        &self,
        id: ObjectId,
        extension: ExtendExpiry,
        now: SystemTime,
    ) -> Result<ExtendOutcome, ServiceError> {
        self.run(
            Operation::ExtendExpiry,
            |outcome| match outcome {
                ExtendOutcome::Satisfied => Outcome::Ok,
                ExtendOutcome::NotFound => Outcome::NotFound,
            },
            move |inner| async move { inner.extend_expiry(id, extension, now).await },
        )
        .await
    }

    /// Queues a fire-and-forget chore at background priority (bounded, counted,
    /// retried); false when it was dropped because the queue is full or closed.
    pub fn submit_background(&self, job: BackgroundJob, work: background::Work) -> bool {
        self.background.submit(job, work)
    }

    /// Starts the ticker that queues an expiry sweep (a background job) every `interval`.
    pub fn start_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let inner = service.inner.clone();
                service.submit_background(
                    BackgroundJob::ExpirySweep,
                    background::work(move || {
                        let inner = inner.clone();
                        async move {
                            inner
                                .backend
                                .sweep_expired(SystemTime::now())
                                .await
                                .map_err(|err| err.to_string())
                        }
                    }),
                );
            }
        })
    }

    /// Waits (at most `timeout` in all) for every spawned operation, then for the queued
    /// background jobs, then for the backend's own background work; for shutdown. The
    /// tickers that queue chores should be stopped first.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        let deadline = Instant::now() + timeout;
        let remaining = || deadline.saturating_duration_since(Instant::now());
        self.tasks.close();
        let tasks_done = tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok();
        let leftover = self.background.drain(remaining()).await;
        self.executor.close();
        let backend_done = tokio::time::timeout(remaining(), self.inner.backend.shutdown())
            .await
            .is_ok();
        DrainReport {
            on_time: tasks_done && leftover.left == 0 && backend_done,
            background_left: leftover.left,
        }
    }

    /// Checks that the backend answers (bounded by [`PROBE_TIMEOUT`]), for `/ready`.
    pub async fn probe(&self) -> Result<(), crate::backend::BackendError> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.inner.backend.probe()).await {
            Ok(result) => result,
            Err(_) => Err(crate::backend::BackendError::Unavailable {
                backend: self.inner.backend.name(),
                message: format!("no answer within {PROBE_TIMEOUT:?}"),
            }),
        }
    }

    /// Service-tier permits free right now.
    pub fn available_permits(&self) -> usize {
        self.limiter.available()
    }

    /// Admits, spawns and supervises one operation.
    async fn run<T, F, Fut>(
        &self,
        op: Operation,
        classify: fn(&T) -> Outcome,
        operation: F,
    ) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>> + Send + 'static,
    {
        let permit = match self.limiter.acquire().await {
            Ok(permit) => permit,
            Err(reason) => {
                self.metrics.record_operation(op, Outcome::Rejected, None);
                return Err(ServiceError::AtCapacity(reason));
            }
        };
        self.spawn_admitted(permit, op, classify, operation).await
    }

    /// Spawns and supervises one operation that already holds `permit`.
    async fn spawn_admitted<T, F, Fut>(
        &self,
        permit: limiter::Permit,
        op: Operation,
        classify: fn(&T) -> Outcome,
        operation: F,
    ) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>> + Send + 'static,
    {
        // The spawned task keeps the request's span (as its parent), so the operation's
        // log lines (a panic, a backend error) name the request they serve.
        let span = tracing::info_span!("operation", operation = op.as_str());
        let future = operation(self.inner.clone());
        let metrics = self.metrics.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Cancelled when this caller's future is dropped (its HTTP client hung up); only
        // read-only operations listen (see `kind`), writes run to completion regardless.
        let token = CancellationToken::new();
        let cancel_on_drop = token.clone().drop_guard();
        let cancellable = kind::cancellable(op);
        self.metrics.tasks_running.inc();
        let running = RunningGuard(self.metrics.tasks_running.clone());
        let job = async move {
            let _permit = permit;
            let _running = running;
            let started = Instant::now();
            let work = AssertUnwindSafe(future).catch_unwind();
            let finished = if cancellable {
                tokio::select! {
                    biased;
                    () = token.cancelled() => None,
                    finished = work => Some(finished),
                }
            } else {
                Some(work.await)
            };
            let result = match finished {
                Some(Ok(result)) => result,
                Some(Err(payload)) => {
                    let message = panic_message(payload.as_ref());
                    tracing::error!(operation = op.as_str(), %message, "storage operation panicked");
                    Err(ServiceError::Panic(message))
                }
                None => {
                    // The backend work was dropped with the select; the permit goes
                    // when this task ends, right below.
                    metrics.record_operation(op, Outcome::Cancelled, None);
                    return;
                }
            };
            let outcome = match &result {
                Ok(value) => classify(value),
                Err(ServiceError::Panic(_)) => Outcome::Panic,
                Err(ServiceError::ExtendRejected(_))
                | Err(ServiceError::ExtendInvalid(_))
                | Err(ServiceError::ExtendConflict) => {
                    Outcome::Ok
                }
                Err(_) => Outcome::Error,
            };
            metrics.record_operation(op, outcome, Some(started.elapsed().as_secs_f64()));
            // The caller may be gone; the work is done either way.
            let _ = tx.send(result);
        }
        .instrument(span);
        if self
            .executor
            .execute(&self.tasks, kind::priority(op), job)
            .is_err()
        {
            // The pool's queue is full (the job, its permit and gauges are dropped).
            self.metrics.record_operation(op, Outcome::Rejected, None);
            self.metrics
                .service_rejections
                .with_label_values(&[RejectReason::AtCapacity.as_str()])
                .inc();
            return Err(ServiceError::AtCapacity(RejectReason::AtCapacity));
        }
        let result = rx.await.unwrap_or(Err(ServiceError::TaskDropped));
        cancel_on_drop.disarm();
        result
    }
}

fn found<T>(value: &Option<T>) -> Outcome {
    if value.is_some() {
        Outcome::Ok
    } else {
        Outcome::NotFound
    }
}
