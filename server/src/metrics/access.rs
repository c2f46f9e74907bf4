//! Access-control metrics: auth failures, rate-limit rejections, killswitch hits, and
//! the configured limits `/keda` reports (upstream's optional gauges).

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::auth::{AuthError, FAILURE_REASONS};
use crate::limits::Limited;
use strata_types::metrics::names;

/// The handles behind access-control metrics.
pub struct AccessMetrics {
    /// `strata_auth_failures_total{code,reason}`.
    pub auth_failures: IntCounterVec,
    /// `strata_rate_limited_total{kind}`.
    pub rate_limited: IntCounterVec,
    /// `strata_killswitch_hits_total`.
    pub killswitch_hits: IntCounter,
    /// Configured `rate_limits.throughput.global_rps` (-1 when unset).
    pub throughput_limit: AtomicI64,
    /// Configured `rate_limits.bandwidth.global_bps` (-1 when unset).
    pub bandwidth_limit: AtomicI64,
}

impl AccessMetrics {
    /// Registers every access metric in `registry`, label sets at zero.
    pub fn new(registry: &Registry) -> Self {
        let auth_failures = IntCounterVec::new(
            Opts::new(
                names::AUTH_FAILURES_TOTAL,
                "Requests whose credentials or permissions failed (enforced or not).",
            ),
            &["code", "reason"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                names::RATE_LIMITED_TOTAL,
                "Requests over a throughput or bandwidth limit (429 unless report-only).",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let killswitch_hits = IntCounter::new(
            names::KILLSWITCH_HITS_TOTAL,
            "Requests refused by a killswitch (403).",
        )
        .expect("valid metric");
        for c in [&auth_failures, &rate_limited] {
            registry.register(Box::new(c.clone())).expect("unique");
        }
        registry
            .register(Box::new(killswitch_hits.clone()))
            .expect("unique");
        for (code, reason) in FAILURE_REASONS {
            auth_failures.with_label_values(&[code, reason]);
        }
        for kind in Limited::ALL {
            rate_limited.with_label_values(&[kind.as_str()]);
        }
        Self {
            auth_failures,
            rate_limited,
            killswitch_hits,
            throughput_limit: AtomicI64::new(-1),
            bandwidth_limit: AtomicI64::new(-1),
        }
    }

    /// Counts one auth failure.
    pub fn auth_failure(&self, err: &AuthError) {
        self.auth_failures
            .with_label_values(&[err.code(), err.reason()])
            .inc();
    }

    /// Records the configured global limits for `/keda`.
    pub fn set_limits(&self, rps: Option<u32>, bps: Option<u64>) {
        let v = |x: Option<i64>| x.unwrap_or(-1);
        self.throughput_limit
            .store(v(rps.map(i64::from)), Ordering::Relaxed);
        self.bandwidth_limit.store(
            v(bps.map(|b| i64::try_from(b).unwrap_or(i64::MAX))),
            Ordering::Relaxed,
        );
    }

    /// The `/keda` lines of the configured limits (only those that are set).
    pub fn keda_lines(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "objectstore_throughput_limit",
                "Configured global throughput limit (requests per second).",
                self.throughput_limit.load(Ordering::Relaxed),
            ),
            (
                "objectstore_bandwidth_limit",
                "Configured global bandwidth limit (bytes per second).",
                self.bandwidth_limit.load(Ordering::Relaxed),
            ),
        ] {
            if value >= 0 {
                out.push_str(&format!(
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
                ));
            }
        }
        out
    }
}
