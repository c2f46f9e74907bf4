//! Bandwidth buckets: GCRA that builds up debt while payload bytes stream (api §8).
//!
//! Each bucket keeps a theoretical arrival time (TAT) in nanoseconds since the limiter
//! started. Charging `n` bytes moves the TAT `n / rate` seconds past `max(TAT, now)`; a
//! new request is admitted while the debt `TAT - now` is at most the burst.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Pure GCRA arithmetic for one rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Bytes per second (> 0).
    pub rate: u64,
    /// Debt tolerated before new requests are refused, in nanoseconds.
    pub burst_nanos: u64,
}

impl Gcra {
    /// The TAT after charging `bytes` at time `now`.
    pub fn charge(self, tat: u64, now: u64, bytes: u64) -> u64 {
        let cost = (u128::from(bytes) * 1_000_000_000 / u128::from(self.rate.max(1)))
            .min(u128::from(u64::MAX / 2)) as u64;
        tat.max(now).saturating_add(cost)
    }

    /// Whether a new request may start at `now` given `tat`.
    pub fn admits(self, tat: u64, now: u64) -> bool {
        tat.saturating_sub(now) <= self.burst_nanos
    }
}

/// One bucket: its arithmetic and its shared TAT.
#[derive(Debug)]
pub struct Bucket {
    gcra: Gcra,
    tat: AtomicU64,
}

impl Bucket {
    /// A bucket with no debt.
    pub fn new(gcra: Gcra) -> Self {
        Self {
            gcra,
            tat: AtomicU64::new(0),
        }
    }

    /// Whether a new request may start at `now`.
    pub fn admits(&self, now: u64) -> bool {
        self.gcra.admits(self.tat.load(Ordering::Relaxed), now)
    }

    /// Charges `bytes` at `now`.
    pub fn charge(&self, now: u64, bytes: u64) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(self.gcra.charge(tat, now, bytes))
            });
    }
}

/// Buckets created on first use for each key (usecase or scope list), bounded.
#[derive(Debug)]
pub struct KeyedBuckets {
    gcra: Gcra,
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
}

/// Keys kept before idle buckets are forgotten.
const MAX_KEYS: usize = 10_000;

impl KeyedBuckets {
    /// Buckets that all use `gcra`.
    pub fn new(gcra: Gcra) -> Self {
        Self {
            gcra,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket of `key`, created when missing.
    pub fn get(&self, key: &str, now: u64) -> Arc<Bucket> {
        let mut map = self.buckets.lock().expect("bucket map poisoned");
        if let Some(b) = map.get(key) {
            return b.clone();
        }
        if map.len() >= MAX_KEYS {
            // Buckets without debt carry no state worth keeping.
            map.retain(|_, b| {
                Arc::strong_count(b) > 1 || !b.admits(now) || b.tat.load(Ordering::Relaxed) > now
            });
        }
        let bucket = Arc::new(Bucket::new(self.gcra));
        map.insert(key.to_owned(), bucket.clone());
        bucket
    }
}

/// Monotonic nanoseconds since the limiter was built.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds since start.
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The buckets one request charges while its payload streams.
#[derive(Debug, Clone, Default)]
pub struct Charge {
    buckets: Vec<Arc<Bucket>>,
    clock: Option<Clock>,
}

impl Charge {
    /// A charge against `buckets`.
    pub fn new(buckets: Vec<Arc<Bucket>>, clock: Clock) -> Self {
        Self {
            buckets,
            clock: Some(clock),
        }
    }

    /// Charges `bytes` to every bucket of this request.
    pub fn add(&self, bytes: u64) {
        if let Some(clock) = self.clock {
            let now = clock.now();
            for b in &self.buckets {
                b.charge(now, bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Charging never moves the TAT backwards, costs exactly bytes/rate past
        /// max(TAT, now), and a bucket whose debt exceeds the burst refuses until the
        /// debt has drained to the burst.
        #[test]
        fn gcra_arithmetic(
            rate in 1u64..10_000_000_000,
            burst in 0u64..10_000_000_000,
            tat in 0u64..1_000_000_000_000,
            now in 0u64..1_000_000_000_000,
            bytes in 0u64..1_000_000_000_000,
        ) {
            let g = Gcra { rate, burst_nanos: burst };
            let next = g.charge(tat, now, bytes);
            prop_assert!(next >= tat.max(now));
            let cost = (u128::from(bytes) * 1_000_000_000 / u128::from(rate)) as u64;
            prop_assert_eq!(next - tat.max(now), cost);
            // Admission depends only on the debt.
            prop_assert_eq!(g.admits(next, now), next - now.min(next) <= burst);
            // Once time reaches next - burst, the bucket admits again.
            prop_assert!(g.admits(next, next.saturating_sub(burst)));
            // Charges add up: two charges at the same instant equal one of the sum.
            let split = g.charge(g.charge(tat, now, bytes / 2), now, bytes - bytes / 2);
            prop_assert!(split.abs_diff(next) <= 1);
        }
    }

    #[test]
    fn debt_blocks_new_requests_until_drained() {
        let g = Gcra {
            rate: 1000,
            burst_nanos: 1_000_000_000,
        };
        let b = Bucket::new(g);
        assert!(b.admits(0));
        b.charge(0, 1500); // 1.5 s of debt
        assert!(!b.admits(0));
        assert!(!b.admits(499_999_999));
        assert!(b.admits(500_000_000));
    }
}
