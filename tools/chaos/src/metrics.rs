//! `/metrics` scrapes: the server's Prometheus text parsed into sums per metric name.
//! Names come from the contract in `types/src/metrics.rs`.

use anyhow::Context as _;

/// Service-tier rejections (429), by `reason`.
pub const SERVICE_REJECTIONS: &str = "strata_service_rejections_total";
/// Web-tier rejections (503).
pub const HTTP_REJECTIONS: &str = "strata_http_rejections_total";
/// Panics caught in operation tasks, by `operation`.
pub const PANICS: &str = "strata_service_panics_total";
/// Operations running in spawned tasks.
pub const TASKS_RUNNING: &str = "strata_service_tasks_running";
/// Operations waiting for a permit.
pub const TASKS_QUEUED: &str = "strata_service_tasks_queued";
/// Bulk permits held.
pub const BULK_RUNNING: &str = "strata_service_bulk_tasks_running";
/// HTTP requests in flight, internal routes (this scrape) included.
pub const HTTP_IN_FLIGHT: &str = "strata_http_requests_in_flight";

/// One parsed scrape.
#[derive(Debug, Default)]
pub struct Snapshot {
    samples: Vec<prometheus_parse::Sample>,
}

impl Snapshot {
    /// Parses Prometheus text exposition.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).context("parse /metrics")?;
        Ok(Self {
            samples: scrape.samples,
        })
    }

    /// Sum of a counter or gauge over all its label sets (0 when absent).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| scalar(&s.value))
            .sum()
    }
}

fn scalar(value: &prometheus_parse::Value) -> Option<f64> {
    use prometheus_parse::Value;
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        _ => None,
    }
}

/// Scrapes `base/metrics`.
pub async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<Snapshot> {
    let response = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .context("GET /metrics")?;
    anyhow::ensure!(
        response.status().is_success(),
        "/metrics answered {}",
        response.status()
    );
    Snapshot::parse(&response.text().await.context("read /metrics")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP strata_service_rejections_total Rejections.
# TYPE strata_service_rejections_total counter
strata_service_rejections_total{reason=\"at_capacity\"} 7
strata_service_rejections_total{reason=\"queue_timeout\"} 2
# HELP strata_service_tasks_running Running.
# TYPE strata_service_tasks_running gauge
strata_service_tasks_running 3
";

    #[test]
    fn sums_over_labels() {
        let snapshot = Snapshot::parse(TEXT).unwrap();
        assert_eq!(snapshot.sum(SERVICE_REJECTIONS), 9.0);
        assert_eq!(snapshot.sum(TASKS_RUNNING), 3.0);
        assert_eq!(snapshot.sum(PANICS), 0.0);
    }
}
