//! Fire-and-forget chores (expiry sweeps, abandoned-upload cleanup) as low-priority
//! background jobs: bounded (`service.background_queue`; a full queue drops the job and
//! counts it), counted, retried with backoff, panic-isolated, and drained with a bounded
//! wait at shutdown, which reports what it had to leave undone.
//!
//! One runner takes the jobs in order and runs each through the executor at
//! [`Priority::Background`], so chores never crowd out requests on the pooled executor
//! and never run twice at once (two sweeps racing would only do the same work twice).

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::executor::Executor;
use super::kind::Priority;
use crate::metrics::{BackgroundJob, Metrics};

/// Attempts per job before it counts as failed.
pub const ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubled for each later one.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// One attempt of a chore: a fresh future each call (retries call again), resolving to
/// how many things it removed or why it failed.
pub type Work =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send>> + Send + Sync>;

/// A handle through which lower layers (the tiered backend) queue chores without
/// knowing the service: returns what [`Background::submit`] returned.
pub type BackgroundSink = Arc<dyn Fn(BackgroundJob, Work) -> bool + Send + Sync>;

/// Wraps a closure returning a future as [`Work`].
pub fn work<F, Fut>(f: F) -> Work
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

struct Queued {
    job: BackgroundJob,
    work: Work,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Queued>,
    closed: bool,
}

/// What shutdown could not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leftover {
    /// Jobs still queued (or running) when the wait ran out.
    pub left: usize,
}

/// The background queue and its runner.
pub struct Background {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    capacity: usize,
    runner: Mutex<Option<JoinHandle<()>>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Background {
    /// Starts the runner (inside a runtime); at most `capacity` jobs wait at once.
    pub fn start(capacity: usize, executor: Executor, metrics: Metrics) -> Self {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let wake = Arc::new(Notify::new());
        let runner = tokio::spawn(run(queue.clone(), wake.clone(), executor, metrics.clone()));
        Self {
            queue,
            wake,
            capacity,
            runner: Mutex::new(Some(runner)),
            metrics,
        }
    }

    /// Queues a chore; returns false (and counts it as dropped) when the queue is full or
    /// shutting down.
    pub fn submit(&self, job: BackgroundJob, work: Work) -> bool {
        {
            let mut queue = lock(&self.queue);
            if queue.closed || queue.jobs.len() >= self.capacity {
                drop(queue);
                tracing::warn!(
                    job = job.as_str(),
                    "background queue full or closed; job dropped"
                );
                self.metrics.background_dropped(job);
                return false;
            }
            queue.jobs.push_back(Queued { job, work });
        }
        self.metrics.background_jobs_queued.inc();
        self.wake.notify_one();
        true
    }

    /// A [`BackgroundSink`] into this queue; it answers false once the queue is gone.
    pub fn sink(self: &Arc<Self>) -> BackgroundSink {
        let queue = Arc::downgrade(self);
        Arc::new(move |job, work| match queue.upgrade() {
            Some(queue) => queue.submit(job, work),
            None => false,
        })
    }

    /// Takes no more jobs, then waits at most `wait` for the queued ones; whatever is
    /// left after that is dropped, counted and reported.
    pub async fn drain(&self, wait: Duration) -> Leftover {
        lock(&self.queue).closed = true;
        self.wake.notify_one();
        let Some(mut runner) = lock_runner(&self.runner).take() else {
            return Leftover::default();
        };
        if tokio::time::timeout(wait, &mut runner).await.is_ok() {
            return Leftover::default();
        }
        let running = usize::try_from(self.metrics.background_jobs_running.get()).unwrap_or(0);
        runner.abort();
        let _ = runner.await;
        let left: Vec<Queued> = lock(&self.queue).jobs.drain(..).collect();
        for queued in &left {
            self.metrics.background_jobs_queued.dec();
            self.metrics.background_dropped(queued.job);
        }
        let leftover = Leftover {
            left: left.len() + running,
        };
        tracing::warn!(
            left = leftover.left,
            "shutdown wait ran out with background jobs left undone"
        );
        leftover
    }
}

fn lock_runner(
    runner: &Mutex<Option<JoinHandle<()>>>,
) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
    runner.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Keeps `strata_service_background_jobs_running` up while a job runs (aborts included).
struct Running(prometheus::IntGauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn run(queue: Arc<Mutex<Queue>>, wake: Arc<Notify>, executor: Executor, metrics: Metrics) {
    // Attempts run on a tracker of their own: request draining never waits on chores.
    let tasks = TaskTracker::new();
    loop {
        let next = {
            let mut queue = lock(&queue);
            match queue.jobs.pop_front() {
                Some(job) => Some(job),
                None if queue.closed => return,
                None => None,
            }
        };
        let Some(Queued { job, work }) = next else {
            wake.notified().await;
            continue;
        };
        metrics.background_jobs_queued.dec();
        metrics.background_jobs_running.inc();
        let _running = Running(metrics.background_jobs_running.clone());
        let mut outcome = Err(String::new());
        for attempt in 1..=ATTEMPTS {
            outcome = attempt_once(&executor, &tasks, &work).await;
            match &outcome {
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(job = job.as_str(), attempt, %err, "background job failed");
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(attempt - 1)).await;
                    }
                }
            }
        }
        match outcome {
            Ok(0) => metrics.background_completed(job),
            Ok(n) => {
                tracing::info!(job = job.as_str(), removed = n, "background job done");
                metrics.background_completed(job);
            }
            Err(_) => metrics.background_failed(job),
        }
    }
}

/// One attempt through the executor at background priority, panics caught.
async fn attempt_once(
    executor: &Executor,
    tasks: &TaskTracker,
    work: &Work,
) -> Result<u64, String> {
    let future = work();
    let (tx, rx) = oneshot::channel();
    let job = async move {
        let result = match AssertUnwindSafe(future).catch_unwind().await {
            Ok(result) => result,
            Err(payload) => Err(format!(
                "panicked: {}",
                super::panic_message(payload.as_ref())
            )),
        };
        let _ = tx.send(result);
    };
    if executor.execute(tasks, Priority::Background, job).is_err() {
        return Err("executor queue full".to_owned());
    }
    rx.await
        .unwrap_or_else(|_| Err("attempt dropped".to_owned()))
}
