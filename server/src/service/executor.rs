//! Where admitted operations run: a fresh task each (`spawn`), or a fixed pool of
//! workers fed by bounded per-priority queues (`pool`, `service.executor`).
//!
//! The pool never creates tasks under load: a job waits in the queue of its priority
//! (interactive before bulk before background) until a worker is free, and a full queue
//! refuses the job instead of growing. Every job is run under `catch_unwind`, so a
//! panicking job ends that job only: its worker carries on and the pool keeps its size.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::kind::Priority;
use crate::config::{ExecutorKind, ServiceConfig};
use crate::metrics::Metrics;

/// A unit of work for the executor; it reports its own result (over a channel).
pub type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The queue of `priority` is full; the job was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {} queue is full", .0.as_str())]
pub struct QueueFull(pub Priority);

/// Runs jobs; cheap to clone.
#[derive(Debug, Clone)]
pub enum Executor {
    /// A tracked `tokio::spawn` per job.
    Spawn,
    /// A fixed pool of workers.
    Pool(Arc<Pool>),
}

impl Executor {
    /// The executor the `service` section asks for (pool workers start here, so call this
    /// inside a runtime).
    pub fn new(config: &ServiceConfig, metrics: &Metrics) -> Self {
        match config.executor {
            ExecutorKind::Spawn => {
                metrics.workers.set(0);
                Executor::Spawn
            }
            ExecutorKind::Pool => {
                let request_capacity = config.max_concurrency.max(1);
                Executor::Pool(Pool::start(
                    config.workers,
                    [request_capacity, request_capacity, config.background_queue],
                    metrics.clone(),
                ))
            }
        }
    }

    /// Runs `job` at `priority`, tracked by `tasks` until it ends (shutdown waits on it).
    pub fn execute(
        &self,
        tasks: &TaskTracker,
        priority: Priority,
        job: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), QueueFull> {
        match self {
            Executor::Spawn => {
                tasks.spawn(job);
                Ok(())
            }
            Executor::Pool(pool) => pool.submit(priority, Box::pin(tasks.track_future(job))),
        }
    }

    /// Stops the workers once their queues are empty (after shutdown drained the jobs).
    pub fn close(&self) {
        if let Executor::Pool(pool) = self {
            pool.ready.close();
        }
    }
}

/// Bounded per-priority queues and the workers that empty them.
pub struct Pool {
    queues: Mutex<[VecDeque<Job>; 3]>,
    capacity: [usize; 3],
    /// One permit per queued job; closed at shutdown to stop the workers.
    ready: Semaphore,
    metrics: Metrics,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// Keeps a gauge counting something for as long as it lives.
struct Counted(prometheus::IntGauge);

impl Counted {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Pool {
    /// Starts `workers` workers (at least one) over queues of `capacity` jobs each
    /// (indexed by [`Priority::index`]).
    pub fn start(workers: usize, capacity: [usize; 3], metrics: Metrics) -> Arc<Self> {
        let pool = Arc::new(Self {
            queues: Mutex::new(Default::default()),
            capacity,
            ready: Semaphore::new(0),
            metrics,
        });
        for _ in 0..workers.max(1) {
            let pool = pool.clone();
            let alive = Counted::new(&pool.metrics.workers);
            tokio::spawn(async move {
                let _alive = alive;
                pool.work().await;
            });
        }
        pool
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, [VecDeque<Job>; 3]> {
        // Nothing panics while the lock is held (jobs run outside it), but a poisoned
        // lock must not take the pool down with it either.
        self.queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues `job` behind others of its priority, or refuses it when that queue is full.
    pub fn submit(&self, priority: Priority, job: Job) -> Result<(), QueueFull> {
        {
            let mut queues = self.queues();
            let queue = &mut queues[priority.index()];
            if queue.len() >= self.capacity[priority.index()] {
                return Err(QueueFull(priority));
            }
            queue.push_back(job);
        }
        self.metrics
            .executor_queue_depth
            .with_label_values(&[priority.as_str()])
            .inc();
        self.ready.add_permits(1);
        Ok(())
    }

    /// The next job, highest priority first.
    fn next(&self) -> Option<Job> {
        let mut queues = self.queues();
        for priority in Priority::ALL {
            if let Some(job) = queues[priority.index()].pop_front() {
                self.metrics
                    .executor_queue_depth
                    .with_label_values(&[priority.as_str()])
                    .dec();
                return Some(job);
            }
        }
        None
    }

    /// One worker: take the best job, run it to its end, repeat until closed.
    async fn work(&self) {
        loop {
            let Ok(permit) = self.ready.acquire().await else {
                return;
            };
            permit.forget();
            let Some(job) = self.next() else {
                continue;
            };
            let _busy = Counted::new(&self.metrics.workers_busy);
            if let Err(payload) = AssertUnwindSafe(job).catch_unwind().await {
                let message = super::panic_message(payload.as_ref());
                tracing::error!(%message, "executor job panicked; the worker carries on");
            }
        }
    }

    /// Jobs waiting right now, across priorities.
    pub fn queued(&self) -> usize {
        self.queues().iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    fn pool(workers: usize, capacity: usize) -> (Arc<Pool>, Metrics) {
        let metrics = Metrics::new();
        (
            Pool::start(workers, [capacity; 3], metrics.clone()),
            metrics,
        )
    }

    #[tokio::test]
    async fn panicking_job_leaves_the_worker_and_the_pool_intact() {
        let (pool, metrics) = pool(2, 16);
        tokio::task::yield_now().await;
        assert_eq!(metrics.workers.get(), 2);
        for _ in 0..10 {
            pool.submit(Priority::Interactive, Box::pin(async { panic!("boom") }))
                .unwrap();
        }
        let (tx, rx) = oneshot::channel();
        pool.submit(
            Priority::Interactive,
            Box::pin(async move {
                let _ = tx.send(7);
            }),
        )
        .unwrap();
        assert_eq!(rx.await.unwrap(), 7);
        assert_eq!(metrics.workers.get(), 2);
        assert_eq!(metrics.workers_busy.get(), 0);
    }

    #[tokio::test]
    async fn higher_priority_jobs_run_first_and_full_queues_refuse() {
        let (pool, metrics) = pool(1, 2);
        // Occupy the only worker until released.
        let (release, hold) = oneshot::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        pool.submit(
            Priority::Bulk,
            Box::pin(async move {
                let _ = started_tx.send(());
                let _ = hold.await;
            }),
        )
        .unwrap();
        started.await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        for (priority, name) in [
            (Priority::Background, "background"),
            (Priority::Bulk, "bulk"),
            (Priority::Interactive, "interactive"),
        ] {
            let (order, done_tx) = (order.clone(), done_tx.clone());
            pool.submit(
                priority,
                Box::pin(async move {
                    order.lock().unwrap().push(name);
                    let _ = done_tx.send(());
                }),
            )
            .unwrap();
        }
        assert_eq!(
            metrics
                .executor_queue_depth
                .with_label_values(&["bulk"])
                .get(),
            1
        );
        // Capacity 2 per priority: a third bulk job is refused.
        pool.submit(Priority::Bulk, Box::pin(async {})).unwrap();
        assert_eq!(
            pool.submit(Priority::Bulk, Box::pin(async {})).unwrap_err(),
            QueueFull(Priority::Bulk)
        );
        assert_eq!(pool.queued(), 4);
        release.send(()).unwrap();
        for _ in 0..3 {
            done.recv().await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["interactive", "bulk", "background"]
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            while pool.queued() > 0 || metrics.workers_busy.get() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        for p in Priority::ALL {
            assert_eq!(
                metrics
                    .executor_queue_depth
                    .with_label_values(&[p.as_str()])
                    .get(),
                0
            );
        }
    }
}
