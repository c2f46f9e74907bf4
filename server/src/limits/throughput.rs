//! Throughput token buckets (api §8) on `governor`: capacity `rps + burst`, refilled at
//! `rps` per second; one global bucket, one per usecase, one per full scope list, and
//! one shared bucket per rule.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::Limited;
use crate::object::Scopes;
use strata_types::access::ThroughputRule;

/// Keys a keyed limiter holds before idle ones are dropped.
const MAX_KEYS: usize = 10_000;

/// The quota of a bucket refilled at `rps` per second holding `rps + burst` tokens.
/// `None` when `rps` is 0 (an impossible limit, refused at start).
pub fn quota(rps: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rps)?;
    let capacity = NonZeroU32::new(rps.saturating_add(burst))?;
    Some(Quota::per_second(rate).allow_burst(capacity))
}

/// `pct` percent of `global`, rounded down.
pub fn percent_of(global: u32, pct: u8) -> u32 {
    (u64::from(global) * u64::from(pct) / 100) as u32
}

/// One rule with its bucket.
#[derive(Debug)]
pub struct Rule {
    usecase: Option<String>,
    scopes: Vec<(String, String)>,
    limiter: DefaultDirectRateLimiter,
}

impl Rule {
    /// A rule from its config and computed limit.
    pub fn new(config: &ThroughputRule, quota: Quota) -> Self {
        Self {
            usecase: config.usecase.clone(),
            scopes: config.scopes.clone(),
            limiter: RateLimiter::direct(quota),
        }
    }

    fn matches(&self, usecase: &str, scopes: &Scopes) -> bool {
        self.usecase.as_deref().is_none_or(|u| u == usecase)
            && self
                .scopes
                .iter()
                .all(|(n, v)| scopes.0.iter().any(|s| &s.name == n && &s.value == v))
    }
}

/// Every throughput bucket.
#[derive(Debug, Default)]
pub struct Throughput {
    /// The global bucket.
    pub global: Option<DefaultDirectRateLimiter>,
    /// Per-usecase buckets.
    pub usecase: Option<DefaultKeyedRateLimiter<String>>,
    /// Per-scope-list buckets.
    pub scope: Option<DefaultKeyedRateLimiter<String>>,
    /// Rules.
    pub rules: Vec<Rule>,
}

fn keyed_check(limiter: &DefaultKeyedRateLimiter<String>, key: String) -> bool {
    if limiter.len() >= MAX_KEYS {
        limiter.retain_recent();
    }
    limiter.check_key(&key).is_ok()
}

impl Throughput {
    /// Takes one token from every bucket that applies; the first empty one refuses.
    pub fn admit(&self, usecase: &str, scopes: &Scopes) -> Result<(), Limited> {
        if let Some(g) = &self.global {
            if g.check().is_err() {
                return Err(Limited::ThroughputGlobal);
            }
        }
        if let Some(l) = &self.usecase {
            if !keyed_check(l, usecase.to_owned()) {
                return Err(Limited::ThroughputUsecase);
            }
        }
        if let Some(l) = &self.scope {
            if !keyed_check(l, format!("{usecase}/{}", scopes.to_wire())) {
                return Err(Limited::ThroughputScope);
            }
        }
        for rule in &self.rules {
            if rule.matches(usecase, scopes) && rule.limiter.check().is_err() {
                return Err(Limited::ThroughputRule);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        /// A full bucket admits exactly `rps + burst` requests at once, then refuses;
        /// after one second it has `rps` tokens again (never more than its capacity).
        #[test]
        fn bucket_capacity_and_refill(rps in 1u32..200, burst in 0u32..200, idle_secs in 1u64..5) {
            let clock = FakeRelativeClock::default();
            let limiter = RateLimiter::direct_with_clock(quota(rps, burst).unwrap(), clock.clone());
            let mut admitted = 0;
            while limiter.check().is_ok() {
                admitted += 1;
                prop_assert!(admitted <= rps + burst);
            }
            prop_assert_eq!(admitted, rps + burst);
            clock.advance(Duration::from_secs(1));
            let mut refilled = 0;
            while limiter.check().is_ok() {
                refilled += 1;
            }
            prop_assert_eq!(refilled, rps);
            clock.advance(Duration::from_secs(idle_secs * 1000));
            let mut capped = 0;
            while limiter.check().is_ok() {
                capped += 1;
            }
            prop_assert_eq!(capped, rps + burst);
        }

        #[test]
        fn percentages(global in 0u32..1_000_000, pct in 0u8..=100) {
            let p = percent_of(global, pct);
            prop_assert!(p <= global);
            prop_assert_eq!(percent_of(global, 100), global);
            prop_assert!(u64::from(p) * 100 <= u64::from(global) * u64::from(pct));
        }
    }

    #[test]
    fn zero_rate_is_no_quota() {
        assert!(quota(0, 10).is_none());
    }
}
