//! Prometheus metrics of the storage server (the DESIGN §2.6 contract).
//!
//! The dashboard and the alert rules depend on these names and label sets: change them
//! only together. Every label value comes from a small fixed set, never from a key,
//! usecase, scope or user.

use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub mod access;

pub use access::AccessMetrics;

pub use strata_types::metrics::{
    names, BackgroundJob, Operation, Outcome, RejectReason, TimeoutPhase, TtiBumpOutcome,
};

/// The filesystem backend's own metrics (`strata_storage_*`), updated where things
/// happen: by the log's writer thread, compaction and the index.
#[derive(Clone)]
pub struct StorageMetrics {
    /// `strata_storage_log_commits_total`.
    pub log_commits: IntCounter,
    /// `strata_storage_log_records_total`.
    pub log_records: IntCounter,
    /// `strata_storage_log_bytes`.
    pub log_bytes: IntGauge,
    /// `strata_storage_log_live_bytes`.
    pub log_live_bytes: IntGauge,
    /// `strata_storage_log_segments`.
    pub log_segments: IntGauge,
    /// `strata_storage_log_read_only`.
    pub log_read_only: IntGauge,
    /// `strata_storage_writer_alive`.
    pub writer_alive: IntGauge,
    /// `strata_storage_compactions_total`.
    pub compactions: IntCounter,
    /// `strata_storage_objects{location="log"}`.
    pub objects_in_log: IntGauge,
    /// `strata_storage_objects{location="file"}`.
    pub objects_in_files: IntGauge,
}

impl std::fmt::Debug for StorageMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageMetrics")
    }
}

impl StorageMetrics {
    /// Metrics that no registry exports (a backend opened outside a server).
    pub fn unregistered() -> Self {
        Self::new(None)
    }

    fn new(registry: Option<&Registry>) -> Self {
        fn register<C: prometheus::core::Collector + Clone + 'static>(
            registry: Option<&Registry>,
            c: C,
        ) -> C {
            if let Some(registry) = registry {
                registry.register(Box::new(c.clone())).expect("unique");
            }
            c
        }
        let counter = |name: &str, help: &str| {
            register(registry, IntCounter::new(name, help).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str| {
            register(registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let objects = register(
            registry,
            IntGaugeVec::new(
                Opts::new(names::OBJECTS, "Stored objects by where they live."),
                &["location"],
            )
            .expect("valid metric"),
        );
        Self {
            log_commits: counter(names::LOG_COMMITS_TOTAL, "Group commits of the object log."),
            log_records: counter(
                names::LOG_RECORDS_TOTAL,
                "Records made durable by log commits.",
            ),
            log_bytes: gauge(names::LOG_BYTES, "Bytes in all object log segments."),
            log_live_bytes: gauge(
                names::LOG_LIVE_BYTES,
                "Bytes of log records that are current object versions.",
            ),
            log_segments: gauge(names::LOG_SEGMENTS, "Object log segment files."),
            log_read_only: gauge(
                names::LOG_READ_ONLY,
                "1 once a failed sync made the object log refuse writes until a restart.",
            ),
            writer_alive: gauge(
                names::WRITER_ALIVE,
                "1 while the object log's writer thread runs; 0 once it died.",
            ),
            compactions: counter(
                names::COMPACTIONS_TOTAL,
                "Log segments rewritten by compaction.",
            ),
            objects_in_log: objects.with_label_values(&["log"]),
            objects_in_files: objects.with_label_values(&["file"]),
        }
    }
}

/// HTTP methods as labels: anything unusual folds into `other` to keep the set bounded.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::PUT => "PUT",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Status class label (`2xx` … `5xx`).
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// All server metrics, registered in one registry per server instance (so tests can run
/// several servers in one process). Cloned per request, so a clone is one `Arc`.
#[derive(Clone)]
pub struct Metrics(Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

/// The metric handles behind [`Metrics`].
pub struct MetricSet {
    registry: Registry,
    /// `strata_service_tasks_running`.
    pub tasks_running: IntGauge,
    /// `strata_service_tasks_queued`.
    pub tasks_queued: IntGauge,
    /// `strata_service_tasks_limit`.
    pub tasks_limit: IntGauge,
    /// `strata_service_bulk_tasks_running`.
    pub bulk_tasks_running: IntGauge,
    /// `strata_service_operations_total{operation,outcome}`.
    pub operations: IntCounterVec,
    /// `strata_service_operation_duration_seconds{operation}`.
    pub operation_duration: HistogramVec,
    /// `strata_service_rejections_total{reason}`.
    pub service_rejections: IntCounterVec,
    /// `strata_service_panics_total{operation}`.
    pub panics: IntCounterVec,
    /// `strata_service_cancellations_total{operation}`.
    pub cancellations: IntCounterVec,
    /// `strata_service_executor_queue_depth{priority}`.
    pub executor_queue_depth: IntGaugeVec,
    /// `strata_service_workers`.
    pub workers: IntGauge,
    /// `strata_service_workers_busy`.
    pub workers_busy: IntGauge,
    /// `strata_service_background_jobs_queued`.
    pub background_jobs_queued: IntGauge,
    /// `strata_service_background_jobs_running`.
    pub background_jobs_running: IntGauge,
    /// `strata_service_background_jobs_completed_total{job}`.
    pub background_jobs_completed: IntCounterVec,
    /// `strata_service_background_jobs_failed_total{job}`.
    pub background_jobs_failed: IntCounterVec,
    /// `strata_service_background_jobs_dropped_total{job}`.
    pub background_jobs_dropped: IntCounterVec,
    /// `strata_service_tti_bumps_total{outcome}`.
    pub tti_bumps: IntCounterVec,
    /// `strata_http_requests_in_flight`.
    pub http_in_flight: IntGauge,
    /// `strata_http_requests_limit`.
    pub http_limit: IntGauge,
    /// `strata_http_rejections_total`.
    pub http_rejections: IntCounter,
    /// `strata_http_requests_total{method,status}`.
    pub http_requests: IntCounterVec,
    /// `strata_http_request_timeouts_total{phase}`.
    pub http_timeouts: IntCounterVec,
    /// `strata_http_request_duration_seconds{method}`.
    pub http_duration: HistogramVec,
    /// `strata_bytes_total{direction}`.
    pub bytes: IntCounterVec,
    /// Requests admitted by the web tier (only exported on `/keda`).
    pub requests_admitted: IntCounter,
    /// The filesystem backend's metrics.
    pub storage: StorageMetrics,
    /// Auth failures, rate limiting, killswitches.
    pub access: AccessMetrics,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric; label sets of the fixed enums exist at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique");
            h
        };

        let metrics = MetricSet {
            tasks_running: gauge(names::TASKS_RUNNING, "Storage operations running now."),
            tasks_queued: gauge(
                names::TASKS_QUEUED,
                "Storage operations waiting for a permit.",
            ),
            tasks_limit: gauge(names::TASKS_LIMIT, "Service-tier concurrency limit."),
            bulk_tasks_running: gauge(
                names::BULK_TASKS_RUNNING,
                "Bulk (batch) permits held by batch operations now.",
            ),
            operations: counter_vec(
                names::OPERATIONS_TOTAL,
                "Storage operations by outcome.",
                &["operation", "outcome"],
            ),
            operation_duration: histogram_vec(
                names::OPERATION_DURATION,
                "Storage operation latency.",
                &["operation"],
            ),
            service_rejections: counter_vec(
                names::SERVICE_REJECTIONS_TOTAL,
                "Storage operations refused by the service-tier limiter (429).",
                &["reason"],
            ),
            panics: counter_vec(
                names::PANICS_TOTAL,
                "Panics caught in storage operation tasks.",
                &["operation"],
            ),
            cancellations: counter_vec(
                names::CANCELLATIONS_TOTAL,
                "Read-only storage operations stopped because their client went away.",
                &["operation"],
            ),
            executor_queue_depth: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        names::EXECUTOR_QUEUE_DEPTH,
                        "Jobs waiting for a pool worker, by priority.",
                    ),
                    &["priority"],
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique");
                g
            },
            workers: gauge(names::WORKERS, "Workers of the pooled executor."),
            workers_busy: gauge(names::WORKERS_BUSY, "Pool workers running a job now."),
            background_jobs_queued: gauge(
                names::BACKGROUND_JOBS_QUEUED,
                "Background chores waiting to run.",
            ),
            background_jobs_running: gauge(
                names::BACKGROUND_JOBS_RUNNING,
                "Background chores running now.",
            ),
            background_jobs_completed: counter_vec(
                names::BACKGROUND_JOBS_COMPLETED_TOTAL,
                "Background chores that succeeded.",
                &["job"],
            ),
            background_jobs_failed: counter_vec(
                names::BACKGROUND_JOBS_FAILED_TOTAL,
                "Background chores that failed every attempt.",
                &["job"],
            ),
            background_jobs_dropped: counter_vec(
                names::BACKGROUND_JOBS_DROPPED_TOTAL,
                "Background chores never run (queue full, or left at shutdown).",
                &["job"],
            ),
            tti_bumps: counter_vec(
                names::TTI_BUMPS_TOTAL,
                "Time-to-idle deadline bumps started by reads, by outcome.",
                &["outcome"],
            ),
            http_in_flight: gauge(names::HTTP_IN_FLIGHT, "HTTP requests in flight."),
            http_limit: gauge(names::HTTP_LIMIT, "Web-tier in-flight request limit."),
            http_rejections: {
                let c = IntCounter::new(
                    names::HTTP_REJECTIONS_TOTAL,
                    "HTTP requests refused by the web tier (503).",
                )
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("unique");
                c
            },
            http_requests: counter_vec(
                names::HTTP_REQUESTS_TOTAL,
                "HTTP requests by method and status class.",
                &["method", "status"],
            ),
            http_timeouts: counter_vec(
                names::HTTP_REQUEST_TIMEOUTS_TOTAL,
                "Clients cut off by an HTTP deadline (header: connection closed; body_idle, request: 408).",
                &["phase"],
            ),
            http_duration: histogram_vec(
                names::HTTP_DURATION,
                "HTTP request latency until the response head.",
                &["method"],
            ),
            bytes: counter_vec(
                names::BYTES_TOTAL,
                "Payload bytes received (in) and sent (out).",
                &["direction"],
            ),
            requests_admitted: IntCounter::new("requests_admitted", "unregistered").expect("valid"),
            storage: StorageMetrics::new(Some(&registry)),
            access: AccessMetrics::new(&registry),
            registry,
        };

        let build_info = IntGauge::with_opts(
            Opts::new(names::BUILD_INFO, "Build information; always 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);
        metrics
            .registry
            .register(Box::new(build_info))
            .expect("unique");
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique");
        let metrics = Metrics(Arc::new(metrics));

        for &op in Operation::ALL {
            metrics.panics.with_label_values(&[op.as_str()]);
            if crate::service::kind::cancellable(op) {
                metrics.cancellations.with_label_values(&[op.as_str()]);
            }
            metrics.operation_duration.with_label_values(&[op.as_str()]);
            for outcome in Outcome::ALL {
                metrics
                    .operations
                    .with_label_values(&[op.as_str(), outcome.as_str()]);
            }
        }
        for reason in [RejectReason::AtCapacity, RejectReason::QueueTimeout] {
            metrics
                .service_rejections
                .with_label_values(&[reason.as_str()]);
        }
        for outcome in TtiBumpOutcome::ALL {
            metrics.tti_bumps.with_label_values(&[outcome.as_str()]);
        }
        for direction in ["in", "out"] {
            metrics.bytes.with_label_values(&[direction]);
        }
        for priority in crate::service::kind::Priority::ALL {
            metrics
                .executor_queue_depth
                .with_label_values(&[priority.as_str()]);
        }
        for job in BackgroundJob::ALL {
            metrics
                .background_jobs_completed
                .with_label_values(&[job.as_str()]);
            metrics
                .background_jobs_failed
                .with_label_values(&[job.as_str()]);
            metrics
                .background_jobs_dropped
                .with_label_values(&[job.as_str()]);
        }
        for phase in TimeoutPhase::ALL {
            metrics.http_timeouts.with_label_values(&[phase.as_str()]);
        }
        metrics
    }

    /// Counts one client cut off by an HTTP deadline.
    pub fn record_timeout(&self, phase: TimeoutPhase) {
        self.http_timeouts
            .with_label_values(&[phase.as_str()])
            .inc();
    }

    /// Records one finished (or refused) operation.
    pub fn record_operation(&self, op: Operation, outcome: Outcome, seconds: Option<f64>) {
        self.operations
            .with_label_values(&[op.as_str(), outcome.as_str()])
            .inc();
        if let Some(seconds) = seconds {
            self.operation_duration
                .with_label_values(&[op.as_str()])
                .observe(seconds);
        }
        match outcome {
            Outcome::Panic => self.panics.with_label_values(&[op.as_str()]).inc(),
            Outcome::Cancelled => self.cancellations.with_label_values(&[op.as_str()]).inc(),
            _ => {}
        }
    }

    /// Counts a background chore that succeeded.
    pub fn background_completed(&self, job: BackgroundJob) {
        self.background_jobs_completed
            .with_label_values(&[job.as_str()])
            .inc();
    }

    /// Counts a background chore that failed every attempt.
    pub fn background_failed(&self, job: BackgroundJob) {
        self.background_jobs_failed
            .with_label_values(&[job.as_str()])
            .inc();
    }

    /// Counts a background chore that never ran.
    pub fn background_dropped(&self, job: BackgroundJob) {
        self.background_jobs_dropped
            .with_label_values(&[job.as_str()])
            .inc();
    }

    /// Counts payload bytes in one direction.
    pub fn add_bytes(&self, direction_in: bool, n: u64) {
        self.bytes
            .with_label_values(&[if direction_in { "in" } else { "out" }])
            .inc_by(n);
    }

    /// The whole registry in Prometheus text format.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding cannot fail")
    }

    /// Upstream-compatible autoscaling gauges for `/keda` (objectstore names).
    pub fn encode_keda(&self) -> String {
        let bytes: u64 = ["in", "out"]
            .iter()
            .map(|d| self.bytes.with_label_values(&[d]).get())
            .sum();
        let requests = self.requests_admitted.get();
        let mut out = String::new();
        let mut push = |name: &str, kind: &str, help: &str, value: i64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        push(
            "objectstore_bytes_total",
            "counter",
            "Payload bytes metered in both directions.",
            bytes as i64,
        );
        push(
            "objectstore_requests_total",
            "counter",
            "Requests admitted.",
            requests as i64,
        );
        push(
            "objectstore_requests_in_flight",
            "gauge",
            "HTTP requests in flight.",
            self.http_in_flight.get(),
        );
        push(
            "objectstore_requests_limit",
            "gauge",
            "Web-tier in-flight limit.",
            self.http_limit.get(),
        );
        push(
            "objectstore_tasks_running",
            "gauge",
            "Storage tasks running.",
            self.tasks_running.get(),
        );
        push(
            "objectstore_tasks_limit",
            "gauge",
            "Storage task limit.",
            self.tasks_limit.get(),
        );
        out.push_str(&self.access.keda_lines());
        out
    }

    /// Counts one auth failure (`strata_auth_failures_total`).
    pub fn record_auth_failure(&self, err: &crate::auth::AuthError) {
        self.access.auth_failure(err);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_name_is_exported() {
        let text = Metrics::new().encode();
        for name in [
            names::TASKS_RUNNING,
            names::TASKS_QUEUED,
            names::TASKS_LIMIT,
            names::BULK_TASKS_RUNNING,
            names::OPERATIONS_TOTAL,
            names::OPERATION_DURATION,
            names::SERVICE_REJECTIONS_TOTAL,
            names::PANICS_TOTAL,
            names::HTTP_IN_FLIGHT,
            names::HTTP_LIMIT,
            names::HTTP_REJECTIONS_TOTAL,
            names::HTTP_REQUEST_TIMEOUTS_TOTAL,
            names::BYTES_TOTAL,
            names::BUILD_INFO,
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(text.contains("strata_service_panics_total{operation=\"get\"} 0"));
        assert!(text.contains("strata_http_request_timeouts_total{phase=\"body_idle\"} 0"));
    }

    #[test]
    fn panic_outcome_counts_panics() {
        let m = Metrics::new();
        m.record_operation(Operation::Get, Outcome::Panic, Some(0.1));
        assert_eq!(m.panics.with_label_values(&["get"]).get(), 1);
        assert_eq!(m.operations.with_label_values(&["get", "panic"]).get(), 1);
    }

    #[test]
    fn keda_has_upstream_gauges() {
        let m = Metrics::new();
        m.http_limit.set(7);
        let text = m.encode_keda();
        assert!(text.contains("objectstore_requests_limit 7"));
        assert!(text.contains("# TYPE objectstore_tasks_limit gauge"));
    }
}
