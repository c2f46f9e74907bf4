//! The dashboard's own Prometheus metrics (`strata_dashboard_*`), so the watcher can be
//! watched: is it scraping, how long do cycles take, how many targets are down.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// All dashboard metrics in one registry (one per dashboard instance, so tests can run
/// several dashboards in one process).
#[derive(Clone)]
pub struct DashboardMetrics {
    registry: Registry,
    /// `strata_dashboard_scrapes_total{result="ok|error"}`.
    pub scrapes: IntCounterVec,
    /// `strata_dashboard_scrape_cycle_duration_seconds`.
    pub cycle_duration: Histogram,
    /// `strata_dashboard_scrape_cycle_overruns_total`: cycles longer than the interval.
    pub cycle_overruns: IntCounter,
    /// `strata_dashboard_targets`.
    pub targets: IntGauge,
    /// `strata_dashboard_targets_unreachable`.
    pub targets_unreachable: IntGauge,
    /// `strata_dashboard_discovery_errors_total`.
    pub discovery_errors: IntCounter,
    /// `strata_dashboard_http_requests_total{status}`.
    pub http_requests: IntCounterVec,
}

impl DashboardMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let scrapes = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "strata_dashboard_scrapes_total",
                    "Target scrapes by result.",
                ),
                &["result"],
            )
            .expect("valid"),
        );
        for r in ["ok", "error"] {
            scrapes.with_label_values(&[r]);
        }
        let cycle_duration = reg(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "strata_dashboard_scrape_cycle_duration_seconds",
                    "Time to scrape every target once.",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )
            .expect("valid"),
        );
        let cycle_overruns = reg(
            &registry,
            IntCounter::new(
                "strata_dashboard_scrape_cycle_overruns_total",
                "Scrape cycles that took longer than the scrape interval.",
            )
            .expect("valid"),
        );
        let targets = reg(
            &registry,
            IntGauge::new("strata_dashboard_targets", "Targets being scraped.").expect("valid"),
        );
        let targets_unreachable = reg(
            &registry,
            IntGauge::new(
                "strata_dashboard_targets_unreachable",
                "Targets whose last scrape failed.",
            )
            .expect("valid"),
        );
        let discovery_errors = reg(
            &registry,
            IntCounter::new(
                "strata_dashboard_discovery_errors_total",
                "Failed discovery passes (e.g. Kubernetes API errors).",
            )
            .expect("valid"),
        );
        let http_requests = reg(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "strata_dashboard_http_requests_total",
                    "Dashboard HTTP requests by status code class.",
                ),
                &["status"],
            )
            .expect("valid"),
        );
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        Self {
            registry,
            scrapes,
            cycle_duration,
            cycle_overruns,
            targets,
            targets_unreachable,
            discovery_errors,
            http_requests,
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("text encoding cannot fail")
    }
}

impl Default for DashboardMetrics {
    fn default() -> Self {
        Self::new()
    }
}
