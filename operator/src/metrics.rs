//! The operator's own Prometheus metrics (`strata_operator_*`), in a private registry
//! so tests can create as many as they like.

use prometheus::{
    Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Metric handles; cheap to clone through an `Arc`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by `result`: `ok`, `invalid`, `error`.
    pub reconciliations: IntCounterVec,
    /// Wall time of one reconcile.
    pub reconcile_duration: Histogram,
    /// StorageServices in the cache.
    pub storage_services: IntGauge,
    /// Children applied in the last reconcile of each service, summed by `kind`.
    pub objects_managed: IntGaugeVec,
    /// Writes made, by `verb` (`apply`, `delete`, `status`) — zero in steady state.
    pub writes: IntCounterVec,
    /// 1 while this replica holds the leader Lease.
    pub leader: IntGauge,
    /// `strata_operator_storage_service_ready{namespace,name}`: 1 when the service's
    /// servers are all ready and updated, 0 otherwise (drives the not-Ready alert).
    pub storage_service_ready: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "strata_operator_reconciliations_total",
                "Reconciles by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "strata_operator_reconcile_duration_seconds",
                "Duration of one reconcile",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let storage_services = IntGauge::new(
            "strata_operator_storage_services",
            "StorageServices known to the operator",
        )
        .expect("valid metric");
        let objects_managed = IntGaugeVec::new(
            Opts::new(
                "strata_operator_objects_managed",
                "Child objects managed, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let writes = IntCounterVec::new(
            Opts::new(
                "strata_operator_writes_total",
                "Write calls to the Kubernetes API, by verb",
            ),
            &["verb"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "strata_operator_leader",
            "1 while this replica is the leader",
        )
        .expect("valid metric");
        let storage_service_ready = IntGaugeVec::new(
            Opts::new(
                "strata_operator_storage_service_ready",
                "1 when a StorageService is Ready, 0 when it is not",
            ),
            &["namespace", "name"],
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(storage_services.clone()),
            Box::new(objects_managed.clone()),
            Box::new(writes.clone()),
            Box::new(leader.clone()),
            Box::new(storage_service_ready.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        for r in ["ok", "invalid", "error"] {
            reconciliations.with_label_values(&[r]);
        }
        Self {
            registry,
            reconciliations,
            reconcile_duration,
            storage_services,
            objects_managed,
            writes,
            leader,
            storage_service_ready,
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding cannot fail")
    }
}
