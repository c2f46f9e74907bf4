//! Service-tier admission: a semaphore of `max_concurrency` permits, an optional bounded
//! wait queue, and a smaller bulk budget for batch operations.
//!
//! Rejection is immediate and allocation-free when no permit and no queue ticket is free,
//! so an overloaded server answers in microseconds and never queues unboundedly.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServiceConfig;
use crate::metrics::{Metrics, RejectReason};

/// A held admission: dropping it frees the permit (and the bulk permit, if any).
#[derive(Debug)]
pub struct Permit {
    _permit: OwnedSemaphorePermit,
    _bulk: Option<BulkHeld>,
}

/// A held bulk permit; keeps `strata_service_bulk_tasks_running` in step.
#[derive(Debug)]
struct BulkHeld {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for BulkHeld {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Counts one waiter in `strata_service_tasks_queued` for as long as it lives.
struct QueuedGuard(prometheus::IntGauge);

impl QueuedGuard {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for QueuedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The limiter; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Limiter {
    permits: Arc<Semaphore>,
    max: usize,
    queue: Option<Arc<Semaphore>>,
    queue_timeout: Duration,
    bulk: Arc<Semaphore>,
    metrics: Metrics,
}

/// Bulk budget: `ceil(max × pct / 100)`, at least one permit.
pub fn bulk_permits(max: usize, percent: u8) -> usize {
    (max * percent as usize).div_ceil(100).max(1)
}

impl Limiter {
    /// Builds a limiter from the `service` section and publishes its limit gauge.
    pub fn new(config: &ServiceConfig, metrics: Metrics) -> Self {
        metrics.tasks_limit.set(config.max_concurrency as i64);
        Self {
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            max: config.max_concurrency,
            queue: (config.queue_depth > 0).then(|| Arc::new(Semaphore::new(config.queue_depth))),
            queue_timeout: config.queue_timeout,
            bulk: Arc::new(Semaphore::new(bulk_permits(
                config.max_concurrency,
                config.bulk_percent,
            ))),
            metrics,
        }
    }

    /// Takes a permit for a single operation: at once when one is free, else via a queue
    /// ticket for at most `queue_timeout`.
    pub async fn acquire(&self) -> Result<Permit, RejectReason> {
        let result = self.acquire_inner().await;
        if let Err(reason) = result {
            self.metrics
                .service_rejections
                .with_label_values(&[reason.as_str()])
                .inc();
        }
        result.map(|permit| Permit {
            _permit: permit,
            _bulk: None,
        })
    }

    async fn acquire_inner(&self) -> Result<OwnedSemaphorePermit, RejectReason> {
        if self.max == 0 {
            return Err(RejectReason::AtCapacity);
        }
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let Some(queue) = &self.queue else {
            return Err(RejectReason::AtCapacity);
        };
        let Ok(_ticket) = queue.clone().try_acquire_owned() else {
            return Err(RejectReason::AtCapacity);
        };
        // A guard, not inc/dec around the await: a caller dropped while waiting (its
        // client hung up) must not leave the gauge counting it.
        let _queued = QueuedGuard::new(&self.metrics.tasks_queued);
        let waited =
            tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await;
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(RejectReason::AtCapacity),
            Err(_elapsed) => Err(RejectReason::QueueTimeout),
        }
    }

    /// Takes a bulk permit and then a normal one, both within one `queue_timeout`
    /// deadline (batch operations; they never use queue tickets).
    pub async fn acquire_bulk(&self) -> Result<Permit, RejectReason> {
        if self.max == 0 {
            return Err(RejectReason::AtCapacity);
        }
        let both = async {
            let bulk = self.bulk.clone().acquire_owned().await.ok()?;
            let permit = self.permits.clone().acquire_owned().await.ok()?;
            Some((bulk, permit))
        };
        let result = match tokio::time::timeout(self.queue_timeout, both).await {
            Ok(Some((bulk, permit))) => {
                self.metrics.bulk_tasks_running.inc();
                Ok(Permit {
                    _permit: permit,
                    _bulk: Some(BulkHeld {
                        _permit: bulk,
                        gauge: self.metrics.bulk_tasks_running.clone(),
                    }),
                })
            }
            Ok(None) => Err(RejectReason::AtCapacity),
            Err(_) => Err(RejectReason::QueueTimeout),
        };
        if let Err(reason) = result {
            self.metrics
                .service_rejections
                .with_label_values(&[reason.as_str()])
                .inc();
        }
        result
    }

    /// Bulk permits free right now (for tests and debugging).
    pub fn bulk_available(&self) -> usize {
        self.bulk.available_permits()
    }

    /// Permits free right now (for tests and debugging).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: usize, queue: usize, timeout_ms: u64) -> Limiter {
        Limiter::new(
            &ServiceConfig {
                max_concurrency: max,
                queue_depth: queue,
                queue_timeout: Duration::from_millis(timeout_ms),
                bulk_percent: 60,
                ..ServiceConfig::default()
            },
            Metrics::new(),
        )
    }

    #[test]
    fn bulk_budget_rounds_up_and_is_at_least_one() {
        assert_eq!(bulk_permits(500, 60), 300);
        assert_eq!(bulk_permits(1, 60), 1);
        assert_eq!(bulk_permits(0, 60), 1);
        assert_eq!(bulk_permits(3, 50), 2);
    }

    #[tokio::test]
    async fn rejects_at_once_without_queue() {
        let l = limiter(1, 0, 1000);
        let held = l.acquire().await.unwrap();
        assert_eq!(l.acquire().await.unwrap_err(), RejectReason::AtCapacity);
        drop(held);
        assert!(l.acquire().await.is_ok());
    }

    #[tokio::test]
    async fn zero_capacity_rejects_everything() {
        let l = limiter(0, 5, 1000);
        assert_eq!(l.acquire().await.unwrap_err(), RejectReason::AtCapacity);
        assert_eq!(
            l.acquire_bulk().await.unwrap_err(),
            RejectReason::AtCapacity
        );
    }

    #[tokio::test(start_paused = true)]
    async fn queued_waiter_times_out() {
        let l = limiter(1, 1, 100);
        let _held = l.acquire().await.unwrap();
        assert_eq!(l.acquire().await.unwrap_err(), RejectReason::QueueTimeout);
        assert_eq!(
            l.metrics
                .service_rejections
                .with_label_values(&["queue_timeout"])
                .get(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_dropped_while_queued_leaves_the_gauge_at_zero() {
        let l = Arc::new(limiter(1, 4, 60_000));
        let _held = l.acquire().await.unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire().await.map(|_| ()) })
        };
        while l.metrics.tasks_queued.get() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(l.metrics.tasks_queued.get(), 1);
        // The caller goes away mid-wait (an HTTP client hung up).
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(l.metrics.tasks_queued.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_full_rejects_and_queued_waiter_gets_freed_permit() {
        let l = Arc::new(limiter(1, 1, 10_000));
        let held = l.acquire().await.unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire().await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        while l.metrics.tasks_queued.get() == 0 {
            tokio::task::yield_now().await;
        }
        // The one queue slot is taken: the next caller is rejected immediately.
        assert_eq!(l.acquire().await.unwrap_err(), RejectReason::AtCapacity);
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_dropped_while_queued_lowers_the_queued_gauge() {
        let l = limiter(1, 1, 10_000);
        let _held = l.acquire().await.unwrap();
        {
            // A client hanging up drops its request future while it waits in the queue.
            let waiting = l.acquire();
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert_eq!(l.metrics.tasks_queued.get(), 1);
        }
        assert_eq!(l.metrics.tasks_queued.get(), 0);
        // And its queue ticket was returned: the next caller queues (then times out).
        let next = l.acquire();
        tokio::pin!(next);
        assert!(futures::poll!(next.as_mut()).is_pending());
        assert_eq!(l.metrics.tasks_queued.get(), 1);
    }
}
