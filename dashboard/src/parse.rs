//! Pure parsing of one `/metrics` scrape into the handful of numbers the dashboard shows.
//!
//! The text is parsed with the `prometheus-parse` crate (never with regexes of our own), then
//! reduced to a fixed-size [`PodSample`]. Reducing at parse time keeps memory per pod constant
//! no matter how many series a target exports: label values beyond [`MAX_OPERATIONS`] and
//! histogram buckets beyond [`MAX_BUCKETS`] are dropped.

use prometheus_parse::{Scrape, Value};
use strata_types::metrics::names;

/// Most distinct `operation` label values kept per pod (the real set has ~12).
pub const MAX_OPERATIONS: usize = 32;
/// Most latency histogram buckets kept per pod (the server exports 17).
pub const MAX_BUCKETS: usize = 40;

/// The fixed set of per-pod time series kept in history; each has one ring buffer per pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Series {
    /// `strata_service_tasks_running` (gauge).
    TasksRunning,
    /// `strata_service_tasks_queued` (gauge).
    TasksQueued,
    /// `strata_service_tasks_limit` (gauge).
    TasksLimit,
    /// `strata_http_requests_in_flight` (gauge).
    HttpInFlight,
    /// `strata_http_requests_limit` (gauge).
    HttpLimit,
    /// Sum of `strata_service_operations_total` over all labels (counter).
    Operations,
    /// `strata_service_operations_total{outcome="error"}` summed over operations (counter).
    OperationErrors,
    /// Sum of `strata_service_rejections_total` (counter; each one is a 429).
    ServiceRejections,
    /// `strata_http_rejections_total` (counter; each one is a 503).
    HttpRejections,
    /// Sum of `strata_service_panics_total` (counter).
    Panics,
    /// `strata_http_requests_total{status="5xx"}` summed over methods (counter).
    Http5xx,
    /// `strata_bytes_total{direction="in"}` (counter).
    BytesIn,
    /// `strata_bytes_total{direction="out"}` (counter).
    BytesOut,
    /// Sum of `strata_auth_failures_total` over codes and reasons (counter).
    AuthFailures,
    /// Sum of `strata_rate_limited_total` over kinds (counter).
    RateLimited,
    /// `strata_service_executor_queue_depth{priority="interactive"}` (gauge).
    QueueInteractive,
    /// `strata_service_executor_queue_depth{priority="bulk"}` (gauge).
    QueueBulk,
    /// `strata_service_executor_queue_depth{priority="background"}` (gauge).
    QueueBackground,
    /// `strata_service_workers` (gauge; 0 with the spawn executor).
    Workers,
    /// `strata_service_workers_busy` (gauge).
    WorkersBusy,
    /// Sum of `strata_service_cancellations_total` (counter).
    Cancellations,
}

/// Number of [`Series`] variants.
pub const SERIES_COUNT: usize = 21;

impl Series {
    /// Every series, in index order.
    pub const ALL: [Series; SERIES_COUNT] = [
        Series::TasksRunning,
        Series::TasksQueued,
        Series::TasksLimit,
        Series::HttpInFlight,
        Series::HttpLimit,
        Series::Operations,
        Series::OperationErrors,
        Series::ServiceRejections,
        Series::HttpRejections,
        Series::Panics,
        Series::Http5xx,
        Series::BytesIn,
        Series::BytesOut,
        Series::AuthFailures,
        Series::RateLimited,
        Series::QueueInteractive,
        Series::QueueBulk,
        Series::QueueBackground,
        Series::Workers,
        Series::WorkersBusy,
        Series::Cancellations,
    ];

    /// Position in [`PodSample::values`] and in the per-pod ring array.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the series is a monotonically increasing counter (rates apply) or a gauge.
    pub fn is_counter(self) -> bool {
        !matches!(
            self,
            Series::TasksRunning
                | Series::TasksQueued
                | Series::TasksLimit
                | Series::HttpInFlight
                | Series::HttpLimit
                | Series::QueueInteractive
                | Series::QueueBulk
                | Series::QueueBackground
                | Series::Workers
                | Series::WorkersBusy
        )
    }
}

/// Everything the dashboard keeps from one successful scrape of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    /// One value per [`Series`]; `NaN` when the target did not export it.
    pub values: [f64; SERIES_COUNT],
    /// Cumulative panics per `operation` label (sorted, at most [`MAX_OPERATIONS`]).
    pub panics_by_operation: Vec<(String, f64)>,
    /// Cumulative auth failures per `code` label (`400`, `401`, `403`; sorted, bounded).
    pub auth_failures_by_code: Vec<(String, f64)>,
    /// Cumulative rate-limit rejections per `kind` label (sorted, bounded).
    pub rate_limited_by_kind: Vec<(String, f64)>,
    /// Cumulative operation-latency buckets summed over operations: `(le, count)`, sorted by
    /// `le`, the last one `+Inf`; at most [`MAX_BUCKETS`].
    pub latency_buckets: Vec<(f64, f64)>,
    /// `version` label of `strata_build_info`.
    pub version: Option<String>,
}

impl PodSample {
    /// The value of one series (`NaN` when missing).
    pub fn get(&self, series: Series) -> f64 {
        self.values[series.index()]
    }
}

/// Why a scrape body could not be turned into a [`PodSample`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body parsed, but none of the Strata metric names (DESIGN §2.6) was in it: the
    /// URL most likely points at something that is not a strata-server.
    #[error("no strata_* metrics in the response (is this a strata-server /metrics?)")]
    NoStrataMetrics,
}

fn add(slot: &mut f64, v: f64) {
    if v.is_finite() {
        if slot.is_nan() {
            *slot = v;
        } else {
            *slot += v;
        }
    }
}

/// Adds `v` to the entry for `label` in a small sorted-later list of at most
/// [`MAX_OPERATIONS`] entries (further label values are dropped).
fn add_labelled(list: &mut Vec<(String, f64)>, label: &str, v: f64) {
    if let Some(i) = list.iter().position(|(l, _)| l == label) {
        list[i].1 += v;
    } else if list.len() < MAX_OPERATIONS {
        list.push((label.chars().take(64).collect(), v));
    }
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        _ => None,
    }
}

/// Parses Prometheus text exposition format into a [`PodSample`].
pub fn parse_metrics(text: &str) -> Result<PodSample, ParseError> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .map_err(|_| ParseError::NoStrataMetrics)?;
    let mut values = [f64::NAN; SERIES_COUNT];
    let mut panics: Vec<(String, f64)> = Vec::new();
    let mut auth_failures: Vec<(String, f64)> = Vec::new();
    let mut rate_limited: Vec<(String, f64)> = Vec::new();
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut version = None;
    let mut seen = false;

    for sample in &scrape.samples {
        let name = sample.metric.as_str();
        if !name.starts_with("strata_") {
            continue;
        }
        let series = match name {
            names::TASKS_RUNNING => Some(Series::TasksRunning),
            names::TASKS_QUEUED => Some(Series::TasksQueued),
            names::TASKS_LIMIT => Some(Series::TasksLimit),
            names::HTTP_IN_FLIGHT => Some(Series::HttpInFlight),
            names::HTTP_LIMIT => Some(Series::HttpLimit),
            names::SERVICE_REJECTIONS_TOTAL => Some(Series::ServiceRejections),
            names::HTTP_REJECTIONS_TOTAL => Some(Series::HttpRejections),
            names::PANICS_TOTAL => Some(Series::Panics),
            names::WORKERS => Some(Series::Workers),
            names::WORKERS_BUSY => Some(Series::WorkersBusy),
            names::CANCELLATIONS_TOTAL => Some(Series::Cancellations),
            names::EXECUTOR_QUEUE_DEPTH => match sample.labels.get("priority") {
                Some("interactive") => Some(Series::QueueInteractive),
                Some("bulk") => Some(Series::QueueBulk),
                Some("background") => Some(Series::QueueBackground),
                _ => None,
            },
            _ => None,
        };
        if let Some(series) = series {
            seen = true;
            if let Some(v) = scalar(&sample.value) {
                add(&mut values[series.index()], v);
                if series == Series::Panics {
                    let op = sample.labels.get("operation").unwrap_or("unknown");
                    if let Some(i) = panics.iter().position(|(o, _)| o == op) {
                        panics[i].1 += v;
                    } else if panics.len() < MAX_OPERATIONS {
                        panics.push((op.to_owned(), v));
                    }
                }
            }
            continue;
        }
        match name {
            names::AUTH_FAILURES_TOTAL => {
                seen = true;
                if let Some(v) = scalar(&sample.value).filter(|v| v.is_finite()) {
                    add(&mut values[Series::AuthFailures.index()], v);
                    let code = sample.labels.get("code").unwrap_or("unknown");
                    add_labelled(&mut auth_failures, code, v);
                }
            }
            names::RATE_LIMITED_TOTAL => {
                seen = true;
                if let Some(v) = scalar(&sample.value).filter(|v| v.is_finite()) {
                    add(&mut values[Series::RateLimited.index()], v);
                    let kind = sample.labels.get("kind").unwrap_or("unknown");
                    add_labelled(&mut rate_limited, kind, v);
                }
            }
            names::OPERATIONS_TOTAL => {
                seen = true;
                if let Some(v) = scalar(&sample.value) {
                    add(&mut values[Series::Operations.index()], v);
                    let err = if sample.labels.get("outcome") == Some("error") {
                        v
                    } else {
                        0.0
                    };
                    add(&mut values[Series::OperationErrors.index()], err);
                }
            }
            names::HTTP_REQUESTS_TOTAL => {
                seen = true;
                if let Some(v) = scalar(&sample.value) {
                    let v5 = if sample.labels.get("status") == Some("5xx") {
                        v
                    } else {
                        0.0
                    };
                    add(&mut values[Series::Http5xx.index()], v5);
                }
            }
            names::BYTES_TOTAL => {
                seen = true;
                if let Some(v) = scalar(&sample.value) {
                    match sample.labels.get("direction") {
                        Some("in") => add(&mut values[Series::BytesIn.index()], v),
                        Some("out") => add(&mut values[Series::BytesOut.index()], v),
                        _ => {}
                    }
                }
            }
            names::BUILD_INFO => {
                seen = true;
                version = sample
                    .labels
                    .get("version")
                    .map(|v| v.chars().take(64).collect());
            }
            names::OPERATION_DURATION => {
                seen = true;
                if let Value::Histogram(counts) = &sample.value {
                    for c in counts {
                        if let Some(i) = buckets.iter().position(|(le, _)| *le == c.less_than) {
                            buckets[i].1 += c.count;
                        } else if buckets.len() < MAX_BUCKETS {
                            buckets.push((c.less_than, c.count));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if !seen {
        return Err(ParseError::NoStrataMetrics);
    }
    panics.sort_by(|a, b| a.0.cmp(&b.0));
    auth_failures.sort_by(|a, b| a.0.cmp(&b.0));
    rate_limited.sort_by(|a, b| a.0.cmp(&b.0));
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(PodSample {
        values,
        panics_by_operation: panics,
        auth_failures_by_code: auth_failures,
        rate_limited_by_kind: rate_limited,
        latency_buckets: buckets,
        version,
    })
}

/// Estimates a quantile (e.g. 0.99) from the difference of two cumulative histograms, the
/// way Prometheus' `histogram_quantile` does (linear interpolation inside the bucket).
///
/// `older` may be empty (then `newer` is used as is, i.e. since process start). Returns
/// `None` when no observation fell in the window.
pub fn histogram_quantile(q: f64, newer: &[(f64, f64)], older: &[(f64, f64)]) -> Option<f64> {
    let mut delta: Vec<(f64, f64)> = newer
        .iter()
        .map(|&(le, n)| {
            let before = older
                .iter()
                .find(|(ole, _)| *ole == le)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            // A counter reset makes the difference negative: fall back to the newer counts.
            let d = if n >= before { n - before } else { n };
            (le, d)
        })
        .collect();
    delta.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = delta.last().map(|(_, n)| *n)?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_count = 0.0;
    for &(le, count) in &delta {
        if count >= rank {
            if le.is_infinite() {
                // Everything we know is that it is above the last finite bound.
                return Some(prev_le);
            }
            let in_bucket = count - prev_count;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(prev_le + (le - prev_le) * (rank - prev_count) / in_bucket);
        }
        prev_le = le;
        prev_count = count;
    }
    Some(prev_le)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const FIXTURE: &str = r#"# HELP strata_service_tasks_running Storage operations running now.
# TYPE strata_service_tasks_running gauge
strata_service_tasks_running 3
# TYPE strata_service_tasks_queued gauge
strata_service_tasks_queued 1
# TYPE strata_service_tasks_limit gauge
strata_service_tasks_limit 4
# TYPE strata_http_requests_in_flight gauge
strata_http_requests_in_flight 5
# TYPE strata_http_requests_limit gauge
strata_http_requests_limit 100
# TYPE strata_service_operations_total counter
strata_service_operations_total{operation="get",outcome="ok"} 10
strata_service_operations_total{operation="get",outcome="error"} 2
strata_service_operations_total{operation="insert",outcome="ok"} 5
# TYPE strata_service_rejections_total counter
strata_service_rejections_total{reason="at_capacity"} 7
strata_service_rejections_total{reason="queue_timeout"} 1
# TYPE strata_service_panics_total counter
strata_service_panics_total{operation="get"} 2
strata_service_panics_total{operation="insert"} 0
# TYPE strata_http_rejections_total counter
strata_http_rejections_total 4
# TYPE strata_http_requests_total counter
strata_http_requests_total{method="GET",status="2xx"} 10
strata_http_requests_total{method="GET",status="5xx"} 3
# TYPE strata_bytes_total counter
strata_bytes_total{direction="in"} 100
strata_bytes_total{direction="out"} 200
# TYPE strata_build_info gauge
strata_build_info{version="0.1.0"} 1
# TYPE strata_service_operation_duration_seconds histogram
strata_service_operation_duration_seconds_bucket{operation="get",le="0.01"} 5
strata_service_operation_duration_seconds_bucket{operation="get",le="0.1"} 9
strata_service_operation_duration_seconds_bucket{operation="get",le="+Inf"} 10
strata_service_operation_duration_seconds_sum{operation="get"} 0.5
strata_service_operation_duration_seconds_count{operation="get"} 10
strata_service_operation_duration_seconds_bucket{operation="insert",le="0.01"} 0
strata_service_operation_duration_seconds_bucket{operation="insert",le="0.1"} 0
strata_service_operation_duration_seconds_bucket{operation="insert",le="+Inf"} 10
process_resident_memory_bytes 1e6
"#;

    #[test]
    fn auth_failures_by_code_and_rate_limits_by_kind() {
        let text = "# TYPE strata_auth_failures_total counter
strata_auth_failures_total{code=\"401\",reason=\"expired\"} 3
strata_auth_failures_total{code=\"401\",reason=\"bad_signature\"} 2
strata_auth_failures_total{code=\"403\",reason=\"permission\"} 1
strata_auth_failures_total{code=\"400\",reason=\"missing\"} 0
# TYPE strata_rate_limited_total counter
strata_rate_limited_total{kind=\"throughput_global\"} 7
strata_rate_limited_total{kind=\"bandwidth_usecase\"} 0
";
        let s = parse_metrics(text).unwrap();
        assert_eq!(
            s.auth_failures_by_code,
            [
                ("400".to_owned(), 0.0),
                ("401".to_owned(), 5.0),
                ("403".to_owned(), 1.0)
            ]
        );
        assert_eq!(s.get(Series::AuthFailures), 6.0);
        assert_eq!(
            s.rate_limited_by_kind,
            [
                ("bandwidth_usecase".to_owned(), 0.0),
                ("throughput_global".to_owned(), 7.0)
            ]
        );
        assert_eq!(s.get(Series::RateLimited), 7.0);
        // A server without access control exports neither.
        let s = parse_metrics(FIXTURE).unwrap();
        assert!(s.auth_failures_by_code.is_empty() && s.rate_limited_by_kind.is_empty());
        assert!(s.get(Series::AuthFailures).is_nan());
    }

    #[test]
    fn parses_executor_queue_workers_and_cancellations() {
        let text = format!(
            "{FIXTURE}# TYPE strata_service_executor_queue_depth gauge\n\
             strata_service_executor_queue_depth{{priority=\"interactive\"}} 1\n\
             strata_service_executor_queue_depth{{priority=\"bulk\"}} 7\n\
             strata_service_executor_queue_depth{{priority=\"background\"}} 2\n\
             # TYPE strata_service_workers gauge\nstrata_service_workers 64\n\
             # TYPE strata_service_workers_busy gauge\nstrata_service_workers_busy 16\n\
             # TYPE strata_service_cancellations_total counter\n\
             strata_service_cancellations_total{{operation=\"get\"}} 5\n\
             strata_service_cancellations_total{{operation=\"batch_head\"}} 1\n"
        );
        let s = parse_metrics(&text).unwrap();
        assert_eq!(s.get(Series::QueueInteractive), 1.0);
        assert_eq!(s.get(Series::QueueBulk), 7.0);
        assert_eq!(s.get(Series::QueueBackground), 2.0);
        assert_eq!(s.get(Series::Workers), 64.0);
        assert_eq!(s.get(Series::WorkersBusy), 16.0);
        assert_eq!(s.get(Series::Cancellations), 6.0);
        assert!(Series::Cancellations.is_counter() && !Series::WorkersBusy.is_counter());
        // Servers from before the executor metrics: the series are simply missing.
        assert!(parse_metrics(FIXTURE)
            .unwrap()
            .get(Series::Workers)
            .is_nan());
    }

    #[test]
    fn parses_contract_metrics() {
        let s = parse_metrics(FIXTURE).unwrap();
        assert_eq!(s.get(Series::TasksRunning), 3.0);
        assert_eq!(s.get(Series::TasksQueued), 1.0);
        assert_eq!(s.get(Series::TasksLimit), 4.0);
        assert_eq!(s.get(Series::HttpInFlight), 5.0);
        assert_eq!(s.get(Series::HttpLimit), 100.0);
        assert_eq!(s.get(Series::Operations), 17.0);
        assert_eq!(s.get(Series::OperationErrors), 2.0);
        assert_eq!(s.get(Series::ServiceRejections), 8.0);
        assert_eq!(s.get(Series::HttpRejections), 4.0);
        assert_eq!(s.get(Series::Panics), 2.0);
        assert_eq!(s.get(Series::Http5xx), 3.0);
        assert_eq!(s.get(Series::BytesIn), 100.0);
        assert_eq!(s.get(Series::BytesOut), 200.0);
        assert_eq!(s.version.as_deref(), Some("0.1.0"));
        assert_eq!(
            s.panics_by_operation,
            vec![("get".to_owned(), 2.0), ("insert".to_owned(), 0.0)]
        );
        assert_eq!(
            s.latency_buckets,
            vec![(0.01, 5.0), (0.1, 9.0), (f64::INFINITY, 20.0)]
        );
    }

    #[test]
    fn missing_metrics_are_nan_and_foreign_text_is_an_error() {
        let s = parse_metrics(
            "# TYPE strata_http_rejections_total counter\nstrata_http_rejections_total 1\n",
        )
        .unwrap();
        assert!(s.get(Series::TasksRunning).is_nan());
        assert_eq!(s.get(Series::HttpRejections), 1.0);
        assert_eq!(
            parse_metrics("<html>hello</html>"),
            Err(ParseError::NoStrataMetrics)
        );
        assert_eq!(parse_metrics(""), Err(ParseError::NoStrataMetrics));
    }

    #[test]
    fn label_values_are_bounded() {
        let mut text = String::from("# TYPE strata_service_panics_total counter\n");
        for i in 0..1000 {
            text.push_str(&format!(
                "strata_service_panics_total{{operation=\"op{i}\"}} 1\n"
            ));
        }
        let s = parse_metrics(&text).unwrap();
        assert_eq!(s.panics_by_operation.len(), MAX_OPERATIONS);
        assert_eq!(s.get(Series::Panics), 1000.0);
    }

    #[test]
    fn quantile_interpolates_within_bucket() {
        let newer = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        let p50 = histogram_quantile(0.5, &newer, &[]).unwrap();
        assert!((p50 - 0.1).abs() < 1e-9);
        let p99 = histogram_quantile(0.99, &newer, &[]).unwrap();
        assert!((p99 - 0.198).abs() < 1e-9, "{p99}");
        // Window difference: only the last 50 observations, all in (0.1, 0.2].
        let older = [(0.1, 50.0), (0.2, 50.0), (f64::INFINITY, 50.0)];
        let p50w = histogram_quantile(0.5, &newer, &older).unwrap();
        assert!((p50w - 0.15).abs() < 1e-9, "{p50w}");
        assert_eq!(histogram_quantile(0.99, &older, &older), None);
        // Above the last finite bucket we can only say "at least".
        let inf = [(0.1, 0.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &inf, &[]), Some(0.1));
    }
}
