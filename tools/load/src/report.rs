//! Per-worker measurements, merging, and the report (human-readable or JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks (microseconds); slower samples are clamped.
const MAX_TRACKED_MICROS: u64 = 3_600_000_000;

/// How one request ended, as far as the report is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The server answered with this HTTP status.
    Status(u16),
    /// Connecting failed.
    ConnectError,
    /// The connection broke while sending or receiving.
    IoError,
    /// The request did not finish within `--timeout`.
    Timeout,
}

impl Outcome {
    fn label(self) -> String {
        match self {
            Outcome::Status(code) => code.to_string(),
            Outcome::ConnectError => "connect-error".to_owned(),
            Outcome::IoError => "io-error".to_owned(),
            Outcome::Timeout => "timeout".to_owned(),
        }
    }

    /// True for 2xx answers.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(code) if (200..300).contains(&code))
    }
}

/// Measurements of one worker (or, after [`Stats::merge`], of all of them).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every recorded request, in microseconds.
    pub latency: Histogram<u64>,
    /// Count per outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Payload bytes sent in request bodies.
    pub bytes_sent: u64,
    /// Payload bytes received in response bodies.
    pub bytes_received: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)
                .expect("static histogram bounds are valid"),
            outcomes: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// Records one finished request.
    pub fn record(&mut self, outcome: Outcome, latency: Duration, sent: u64, received: u64) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_TRACKED_MICROS);
        self.latency.saturating_record(micros);
        *self.outcomes.entry(outcome).or_default() += 1;
        self.bytes_sent += sent;
        self.bytes_received += received;
    }

    /// Adds another worker's measurements to these.
    pub fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        for (outcome, count) in &other.outcomes {
            *self.outcomes.entry(*outcome).or_default() += count;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }

    /// Number of recorded requests.
    pub fn requests(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// Number of recorded requests that got a 2xx answer.
    pub fn successes(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(outcome, _)| outcome.is_success())
            .map(|(_, count)| count)
            .sum()
    }
}

/// Describes the run for the report header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// What was driven, e.g. `PUT http://127.0.0.1:8888/v1/objects/load/org=1/… (4096 B)`.
    pub description: String,
    /// Workers.
    pub concurrency: usize,
    /// Whether every request opened a new TCP connection.
    pub new_connection: bool,
    /// Warm-up that preceded the measurement.
    pub warmup: Duration,
    /// Measured wall-clock time (from the end of warm-up to the last completion).
    pub elapsed: Duration,
}

/// Formats microseconds as milliseconds with three decimals.
pub fn format_micros(micros: u64) -> String {
    format!("{}.{:03} ms", micros / 1000, micros % 1000)
}

/// Bytes per second as MiB/s with two decimals.
pub fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 / (1024.0 * 1024.0) / secs
}

/// Renders the final report.
pub fn render(info: &RunInfo, stats: &Stats) -> String {
    let secs = info.elapsed.as_secs_f64();
    let requests = stats.requests();
    let rate = if secs > 0.0 {
        requests as f64 / secs
    } else {
        0.0
    };
    let mut out = String::new();
    let _ = writeln!(out, "target       {}", info.description);
    let _ = writeln!(
        out,
        "workers      {} ({})",
        info.concurrency,
        if info.new_connection {
            "new connection per request"
        } else {
            "keep-alive"
        }
    );
    let _ = writeln!(
        out,
        "measured     {:.2} s (after {} warm-up)",
        secs,
        humantime::format_duration(info.warmup)
    );
    let _ = writeln!(
        out,
        "requests     {} ({:.1} req/s), {} succeeded",
        requests,
        rate,
        stats.successes()
    );
    let _ = writeln!(
        out,
        "throughput   {:.2} MiB/s sent, {:.2} MiB/s received",
        mib_per_sec(stats.bytes_sent, info.elapsed),
        mib_per_sec(stats.bytes_received, info.elapsed)
    );
    let statuses: Vec<String> = stats
        .outcomes
        .iter()
        .map(|(outcome, count)| format!("{}: {}", outcome.label(), count))
        .collect();
    let _ = writeln!(
        out,
        "status       {}",
        if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(", ")
        }
    );
    if requests == 0 {
        let _ = writeln!(out, "latency      no requests recorded");
    } else {
        let h = &stats.latency;
        let _ = writeln!(
            out,
            "latency      p50 {}  p99 {}  p999 {}  max {}",
            format_micros(h.value_at_quantile(0.50)),
            format_micros(h.value_at_quantile(0.99)),
            format_micros(h.value_at_quantile(0.999)),
            format_micros(h.max()),
        );
    }
    out
}

/// Renders the report as one JSON object (for scripts and benchmark logs): counts,
/// rates, `status` counts keyed by label, and latency percentiles in milliseconds.
pub fn render_json(info: &RunInfo, stats: &Stats) -> String {
    let secs = info.elapsed.as_secs_f64();
    let requests = stats.requests();
    let ms = |micros: u64| micros as f64 / 1000.0;
    let latency = if requests == 0 {
        serde_json::Value::Null
    } else {
        let h = &stats.latency;
        serde_json::json!({
            "p50": ms(h.value_at_quantile(0.50)),
            "p99": ms(h.value_at_quantile(0.99)),
            "p999": ms(h.value_at_quantile(0.999)),
            "max": ms(h.max()),
        })
    };
    let status: serde_json::Map<String, serde_json::Value> = stats
        .outcomes
        .iter()
        .map(|(outcome, count)| (outcome.label(), serde_json::Value::from(*count)))
        .collect();
    serde_json::json!({
        "target": info.description,
        "concurrency": info.concurrency,
        "new_connection": info.new_connection,
        "warmup_secs": info.warmup.as_secs_f64(),
        "elapsed_secs": secs,
        "requests": requests,
        "succeeded": stats.successes(),
        "requests_per_sec": if secs > 0.0 { requests as f64 / secs } else { 0.0 },
        "sent_mib_per_sec": mib_per_sec(stats.bytes_sent, info.elapsed),
        "received_mib_per_sec": mib_per_sec(stats.bytes_received, info.elapsed),
        "status": status,
        "latency_ms": latency,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(elapsed: Duration) -> RunInfo {
        RunInfo {
            description: "PUT http://127.0.0.1:1/v1/objects/load-test/_/load-* (4096 B)".to_owned(),
            concurrency: 4,
            new_connection: false,
            warmup: Duration::from_secs(2),
            elapsed,
        }
    }

    #[test]
    fn micros_format() {
        assert_eq!(format_micros(0), "0.000 ms");
        assert_eq!(format_micros(7), "0.007 ms");
        assert_eq!(format_micros(1_234), "1.234 ms");
        assert_eq!(format_micros(12_000_001), "12000.001 ms");
    }

    #[test]
    fn throughput_math() {
        assert_eq!(mib_per_sec(0, Duration::from_secs(1)), 0.0);
        assert_eq!(mib_per_sec(1 << 20, Duration::ZERO), 0.0);
        assert!((mib_per_sec(10 << 20, Duration::from_secs(2)) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn report_lists_counts_rates_and_percentiles() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        // 1000 requests: 980 fast (1 ms), 19 slow (10 ms), 1 very slow (100 ms),
        // plus one failed connection at 0.5 ms below.
        for i in 0..1000u64 {
            let latency = match i {
                0..=979 => Duration::from_millis(1),
                980..=998 => Duration::from_millis(10),
                _ => Duration::from_millis(100),
            };
            let outcome = if i % 100 == 0 {
                Outcome::Status(429)
            } else {
                Outcome::Status(200)
            };
            let target = if i % 2 == 0 { &mut a } else { &mut b };
            target.record(outcome, latency, 4096, 0);
        }
        b.record(Outcome::IoError, Duration::from_micros(500), 0, 0);
        a.merge(&b);
        assert_eq!(a.requests(), 1001);
        assert_eq!(a.successes(), 990);

        let text = render(&info(Duration::from_secs(2)), &a);
        assert!(
            text.contains("requests     1001 (500.5 req/s), 990 succeeded"),
            "{text}"
        );
        assert!(
            text.contains("status       200: 990, 429: 10, io-error: 1"),
            "{text}"
        );
        assert!(
            text.contains("1.95 MiB/s sent, 0.00 MiB/s received"),
            "{text}"
        );
        assert!(text.contains("workers      4 (keep-alive)"), "{text}");
        assert!(text.contains("after 2s warm-up"), "{text}");
        // HdrHistogram with 3 significant digits reports the bucket's upper edge.
        let line = text.lines().find(|l| l.starts_with("latency")).unwrap();
        assert!(line.contains("p50 1.000 ms"), "{line}");
        assert!(line.contains("p99 10.007 ms"), "{line}");
        assert!(line.contains("p999 10.007 ms"), "{line}");
        assert!(line.contains("max 100.031 ms"), "{line}");
    }

    #[test]
    fn json_report() {
        let mut stats = Stats::new();
        stats.record(Outcome::Status(200), Duration::from_micros(1500), 100, 0);
        stats.record(Outcome::Status(503), Duration::from_micros(500), 0, 0);
        stats.record(Outcome::Timeout, Duration::from_secs(1), 0, 0);
        let value: serde_json::Value =
            serde_json::from_str(&render_json(&info(Duration::from_secs(2)), &stats)).unwrap();
        assert_eq!(value["requests"], 3);
        assert_eq!(value["succeeded"], 1);
        assert_eq!(value["requests_per_sec"], 1.5);
        assert_eq!(value["concurrency"], 4);
        assert_eq!(value["status"]["200"], 1);
        assert_eq!(value["status"]["503"], 1);
        assert_eq!(value["status"]["timeout"], 1);
        assert_eq!(value["latency_ms"]["p50"], 1.5);
        assert_eq!(value["latency_ms"]["max"], 1000.447);

        let empty: serde_json::Value =
            serde_json::from_str(&render_json(&info(Duration::ZERO), &Stats::new())).unwrap();
        assert_eq!(empty["requests"], 0);
        assert!(empty["latency_ms"].is_null());
    }

    #[test]
    fn empty_report() {
        let text = render(&info(Duration::from_secs(1)), &Stats::new());
        assert!(
            text.contains("requests     0 (0.0 req/s), 0 succeeded"),
            "{text}"
        );
        assert!(text.contains("status       none"), "{text}");
        assert!(text.contains("no requests recorded"), "{text}");
    }

    #[test]
    fn huge_latency_is_clamped_not_lost() {
        let mut s = Stats::new();
        s.record(Outcome::Timeout, Duration::from_secs(100_000), 0, 0);
        assert_eq!(s.requests(), 1);
        assert!(s.latency.max() >= MAX_TRACKED_MICROS - MAX_TRACKED_MICROS / 1000);
    }
}
