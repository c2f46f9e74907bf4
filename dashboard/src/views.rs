//! Pure view models: turn [`State`] plus "now" into exactly the strings and numbers the
//! templates print. No I/O and no locking here, so pages are unit-testable and the render
//! benchmark measures only this and the template.

use std::time::Duration;

use crate::format;
use crate::health::{
    classify_pod, classify_service, ConditionSignal, Health, PodSignals, ServiceSignals, Thresholds,
};
use crate::history::rate_series;
use crate::parse::Series;
use crate::sources::{display_url, ServiceInfo};
use crate::sparkline::{self, Size};
use crate::state::{PodKey, PodState, State};

/// Most items listed in the alerts strip; the rest are counted.
pub const MAX_ALERTS: usize = 20;

/// Settings that shape what pages show.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSettings {
    /// Window for rates (ops/s, 429/s, 503/s).
    pub rate_window: Duration,
    /// Window for latency percentiles.
    pub latency_window: Duration,
    /// How often the live fragments re-poll.
    pub refresh: Duration,
    /// Scrape interval (shown, and used to call data stale).
    pub scrape_interval: Duration,
    /// Health thresholds.
    pub thresholds: Thresholds,
    /// Where the data comes from, in words (`Kubernetes` / `static targets`).
    pub source: String,
}

impl Default for ViewSettings {
    fn default() -> Self {
        Self {
            rate_window: Duration::from_secs(60),
            latency_window: Duration::from_secs(300),
            refresh: Duration::from_secs(5),
            scrape_interval: Duration::from_secs(5),
            thresholds: Thresholds::default(),
            source: "static targets".to_owned(),
        }
    }
}

/// A health verdict ready to print: text label, shape symbol and CSS class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    /// `OK`, `WARN`, `CRIT`, `UNKNOWN`.
    pub label: &'static str,
    /// Shape symbol.
    pub symbol: &'static str,
    /// CSS class suffix.
    pub css: &'static str,
}

impl From<Health> for Badge {
    fn from(h: Health) -> Self {
        Self {
            label: h.label(),
            symbol: h.symbol(),
            css: h.css(),
        }
    }
}

/// A usage bar (`used / limit`) as text plus a server-drawn SVG.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// `12 / 64` or `—`.
    pub text: String,
    /// `19%` or empty.
    pub percent: String,
    /// Inline SVG (numbers only, safe).
    pub svg: String,
    /// Fraction used, when known.
    pub fraction: Option<f64>,
}

/// Draws a 0..=1 usage bar; the fill turns warn/crit at 75 % / 90 %.
pub fn bar(used: Option<f64>, limit: Option<f64>) -> Bar {
    let (text, fraction) = match (used, limit) {
        (Some(u), Some(l)) if u.is_finite() && l.is_finite() && l > 0.0 => (
            format!("{} / {}", format::count(u), format::count(l)),
            Some((u / l).clamp(0.0, 1.0)),
        ),
        (Some(u), _) if u.is_finite() => (format!("{} / ?", format::count(u)), None),
        _ => ("\u{2014}".to_owned(), None),
    };
    let f = fraction.unwrap_or(0.0);
    let level = if f >= 0.9 {
        "crit"
    } else if f >= 0.75 {
        "warn"
    } else {
        "ok"
    };
    let svg = format!(
        r#"<svg class="bar" width="80" height="10" viewBox="0 0 80 10" aria-hidden="true"><rect class="bar-bg" x="0" y="0" width="80" height="10"/><rect class="bar-{level}" x="0" y="0" width="{:.1}" height="10"/></svg>"#,
        f * 80.0
    );
    Bar {
        text,
        percent: fraction
            .map(|f| format!("{:.0}%", f * 100.0))
            .unwrap_or_default(),
        svg,
        fraction,
    }
}

/// One line in the alerts strip.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertItem {
    /// Severity.
    pub badge: Badge,
    /// `PANIC` or `UNREACHABLE`.
    pub kind: &'static str,
    /// `namespace/service`.
    pub service: String,
    /// Link to the service page.
    pub href: String,
    /// Pod name.
    pub pod: String,
    /// Operation (panics) or error text (unreachable).
    pub detail: String,
    /// Count text (`3 panics`), or empty.
    pub count: String,
    /// `10:01:02 UTC (2m ago)`.
    pub when: String,
    sort_at: f64,
}

/// The alerts strip: red while any pod panicked in the last 5 minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertStrip {
    /// Overall severity.
    pub badge: Badge,
    /// One-line headline in words.
    pub headline: String,
    /// Items, newest first, at most [`MAX_ALERTS`].
    pub items: Vec<AlertItem>,
    /// Items not listed.
    pub more: usize,
}

/// One row of the overview table.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Link to the service page.
    pub href: String,
    /// Health.
    pub badge: Badge,
    /// Why, in words.
    pub reasons: String,
    /// `2 / 3` ready / desired (or reachable / targets locally).
    pub replicas: String,
    /// Web tier in flight vs limit.
    pub in_flight: Bar,
    /// Service tier running vs limit.
    pub service_tier: Bar,
    /// 429/s.
    pub rate_429: String,
    /// 503/s.
    pub rate_503: String,
    /// ops/s.
    pub ops_rate: String,
    /// Panics in the last 5 minutes.
    pub panics_5m: String,
    /// Panics in the last 60 minutes.
    pub panics_60m: String,
    /// Whether any panic happened in the last 5 minutes (for emphasis).
    pub panicking: bool,
    /// Worst pod p99 latency.
    pub p99: String,
    health: Health,
}

/// The overview page (and its live fragment).
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewView {
    /// Render time `HH:MM:SS`.
    pub as_of: String,
    /// Render time in unix milliseconds (machine-readable).
    pub as_of_ms: i64,
    /// Live refresh period in milliseconds.
    pub refresh_ms: u64,
    /// Where data comes from.
    pub source: String,
    /// Last scrape cycle, in words.
    pub cycle: String,
    /// Discovery failure, capped pods or stale data, in words.
    pub discovery_error: Option<String>,
    /// `3 services: 1 CRIT, 2 OK`.
    pub summary: String,
    /// Alerts.
    pub alerts: AlertStrip,
    /// Services, worst first.
    pub services: Vec<ServiceRow>,
}

/// A status condition, printable.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionRow {
    /// Type.
    pub kind: String,
    /// Status.
    pub status: String,
    /// Whether this status is the bad one for its type.
    pub bad: bool,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// Since when.
    pub since: String,
}

/// An Event, printable.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// When.
    pub when: String,
    /// `Normal` / `Warning`.
    pub kind: String,
    /// Whether it is a warning.
    pub warning: bool,
    /// Reason.
    pub reason: String,
    /// Object.
    pub object: String,
    /// Message.
    pub message: String,
    /// `×3` or empty.
    pub count: String,
}

/// One pod row on a service page.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRow {
    /// Pod name.
    pub name: String,
    /// Health.
    pub badge: Badge,
    /// Why, in words.
    pub reasons: String,
    /// Redacted metrics URL.
    pub url: String,
    /// `Running, ready, 0 restarts` or empty.
    pub kube: String,
    /// Server version.
    pub version: String,
    /// `last scrape 10:00:01 (3s ago)` or `unreachable since …`.
    pub scrape: String,
    /// Whether unreachable now.
    pub unreachable: bool,
    /// Web tier.
    pub in_flight: Bar,
    /// Service tier.
    pub service_tier: Bar,
    /// Queued operations.
    pub queued: String,
    /// ops/s.
    pub ops_rate: String,
    /// 429/s.
    pub rate_429: String,
    /// 503/s.
    pub rate_503: String,
    /// Panics 5 min.
    pub panics_5m: String,
    /// Panics 60 min.
    pub panics_60m: String,
    /// Whether it panicked in the last 5 minutes.
    pub panicking: bool,
    /// Panics since process start, per operation (`get 3, insert 1`).
    pub panics_total: String,
    /// p99.
    pub p99: String,
    /// Sparkline: ops/s.
    pub spark_ops: String,
    /// Sparkline: rejections/s (429 + 503).
    pub spark_rejections: String,
    /// Sparkline: HTTP in flight.
    pub spark_in_flight: String,
    /// Sparkline: panics per scrape interval.
    pub spark_panics: String,
}

/// The service page (and its live fragment).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    /// Render time `HH:MM:SS`.
    pub as_of: String,
    /// Render time in unix milliseconds.
    pub as_of_ms: i64,
    /// Live refresh period in milliseconds.
    pub refresh_ms: u64,
    /// Fragment URL.
    pub fragment_href: String,
    /// The service's row (same numbers as the overview).
    pub row: ServiceRow,
    /// Endpoint, when known.
    pub endpoint: String,
    /// History window covered by sparklines, in words.
    pub window: String,
    /// Conditions.
    pub conditions: Vec<ConditionRow>,
    /// Recent events.
    pub events: Vec<EventRow>,
    /// Pods.
    pub pods: Vec<PodRow>,
    /// Alerts (global).
    pub alerts: AlertStrip,
    /// Last scrape cycle, in words.
    pub cycle: String,
}

fn unix_ms(now: f64) -> i64 {
    (now * 1000.0) as i64
}

fn when(at: f64, now: f64) -> String {
    format!("{} UTC ({} ago)", format::clock(at), format::age(now - at))
}

/// Percent-encodes a path segment (names are DNS labels in practice, but never trust that).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Link to a service page.
pub fn service_href(namespace: &str, name: &str) -> String {
    format!("/services/{}/{}", seg(namespace), seg(name))
}

struct PodNumbers {
    signals: PodSignals,
    ops: Option<f64>,
    r429: Option<f64>,
    r503: Option<f64>,
    panics_5m: f64,
    panics_60m: f64,
    p99: Option<f64>,
    in_flight: Option<f64>,
    http_limit: Option<f64>,
    running: Option<f64>,
    tasks_limit: Option<f64>,
    queued: Option<f64>,
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

fn pod_numbers(
    pod: Option<&PodState>,
    ready: Option<bool>,
    now: f64,
    s: &ViewSettings,
) -> PodNumbers {
    let since = now - s.rate_window.as_secs_f64();
    let Some(p) = pod else {
        return PodNumbers {
            signals: PodSignals {
                ready,
                ..Default::default()
            },
            ops: None,
            r429: None,
            r503: None,
            panics_5m: 0.0,
            panics_60m: 0.0,
            p99: None,
            in_flight: None,
            http_limit: None,
            running: None,
            tasks_limit: None,
            queued: None,
        };
    };
    let h = &p.history;
    let latest = |se: Series| finite(h.latest(se));
    let ops = h.rate_since(Series::Operations, since);
    let r429 = h.rate_since(Series::ServiceRejections, since);
    let r503 = h.rate_since(Series::HttpRejections, since);
    let panics_5m = p.panics_since(now - 300.0);
    let panics_60m = p.panics_since(now - 3600.0);
    let p99 = h.latency_quantile_since(0.99, now - s.latency_window.as_secs_f64());
    let (in_flight, http_limit) = (latest(Series::HttpInFlight), latest(Series::HttpLimit));
    let (running, tasks_limit) = (latest(Series::TasksRunning), latest(Series::TasksLimit));
    let frac = |u: Option<f64>, l: Option<f64>| match (u, l) {
        (Some(u), Some(l)) if l > 0.0 => Some(u / l),
        _ => None,
    };
    let unreachable = p.unreachable_since.map(|t| {
        format!(
            "since {} ({}){}",
            when(t, now),
            p.last_error.as_deref().unwrap_or("error"),
            ""
        )
    });
    let last_panic = p
        .panic_events
        .iter()
        .rev()
        .find(|e| e.at >= now - 300.0)
        .map(|e| format!("{} at {} UTC", e.operation, format::clock(e.at)));
    PodNumbers {
        signals: PodSignals {
            unreachable,
            scraped: p.last_success.is_some(),
            panics_5m,
            last_panic,
            rejections_429: r429.unwrap_or(0.0),
            rejections_503: r503.unwrap_or(0.0),
            service_saturation: frac(running, tasks_limit),
            web_saturation: frac(in_flight, http_limit),
            ready,
        },
        ops,
        r429,
        r503,
        panics_5m,
        panics_60m,
        p99,
        in_flight,
        http_limit,
        running,
        tasks_limit,
        queued: latest(Series::TasksQueued),
    }
}

fn sum(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut any = false;
    let mut total = 0.0;
    for v in values.flatten() {
        any = true;
        total += v;
    }
    any.then_some(total)
}

fn pod_key(s: &ServiceInfo, pod: &str) -> PodKey {
    PodKey {
        namespace: s.namespace.clone(),
        service: s.name.clone(),
        pod: pod.to_owned(),
    }
}

fn service_row(
    state: &State,
    svc: &ServiceInfo,
    now: f64,
    s: &ViewSettings,
) -> (ServiceRow, Vec<(Health, Vec<String>, PodNumbers)>) {
    let pods: Vec<(Health, Vec<String>, PodNumbers)> = svc
        .pods
        .iter()
        .map(|p| {
            let n = pod_numbers(state.pods.get(&pod_key(svc, &p.name)), p.ready, now, s);
            let (h, r) = classify_pod(&n.signals, &s.thresholds);
            (h, r, n)
        })
        .collect();
    let signals = ServiceSignals {
        desired: svc.desired,
        ready: svc.ready,
        conditions: svc
            .conditions
            .iter()
            .map(|c| ConditionSignal {
                kind: c.kind.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
            })
            .collect(),
        pods: pods.iter().map(|p| p.0).collect(),
    };
    let (health, mut reasons) = classify_service(&signals);
    // Bring the worst pod's own words up to the overview: "pod-1: 2 panic(s) …".
    if let Some((i, (_, r, _))) = pods
        .iter()
        .enumerate()
        .filter(|(_, (h, r, _))| *h >= Health::Warning && !r.is_empty())
        .max_by_key(|(_, (h, _, _))| *h)
    {
        reasons.insert(0, format!("{}: {}", svc.pods[i].name, r[0]));
    }
    if reasons.is_empty() && health == Health::Ok {
        reasons.push("serving normally".to_owned());
    }
    let replicas = match (svc.ready, svc.desired) {
        (Some(r), Some(d)) => format!("{r} / {d} ready"),
        (Some(r), None) => format!("{r} ready"),
        _ => {
            let up = pods
                .iter()
                .filter(|p| p.2.signals.scraped && p.2.signals.unreachable.is_none())
                .count();
            format!("{up} / {} reachable", pods.len())
        }
    };
    let nums = || pods.iter().map(|p| &p.2);
    let panics_5m: f64 = nums().map(|n| n.panics_5m).sum();
    let panics_60m: f64 = nums().map(|n| n.panics_60m).sum();
    let p99 = nums()
        .filter_map(|n| n.p99)
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    let row = ServiceRow {
        namespace: svc.namespace.clone(),
        name: svc.name.clone(),
        href: service_href(&svc.namespace, &svc.name),
        badge: health.into(),
        reasons: reasons.join("; "),
        replicas,
        in_flight: bar(
            sum(nums().map(|n| n.in_flight)),
            sum(nums().map(|n| n.http_limit)),
        ),
        service_tier: bar(
            sum(nums().map(|n| n.running)),
            sum(nums().map(|n| n.tasks_limit)),
        ),
        rate_429: format::rate(sum(nums().map(|n| n.r429))),
        rate_503: format::rate(sum(nums().map(|n| n.r503))),
        ops_rate: format::rate(sum(nums().map(|n| n.ops))),
        panics_5m: format::count(panics_5m),
        panics_60m: format::count(panics_60m),
        panicking: panics_5m > 0.0,
        p99: format::latency(p99),
        health,
    };
    (row, pods)
}

/// Builds the alerts strip from every pod's recent panics and unreachable targets.
pub fn alerts(state: &State, now: f64) -> AlertStrip {
    let mut items = Vec::new();
    for svc in &state.topology.services {
        let service = format!("{}/{}", svc.namespace, svc.name);
        let href = service_href(&svc.namespace, &svc.name);
        for p in &svc.pods {
            let Some(pod) = state.pods.get(&pod_key(svc, &p.name)) else {
                continue;
            };
            // Group this pod's panics of the last hour by operation.
            let mut ops: Vec<(&str, f64, f64)> = Vec::new(); // (op, count, last at)
            for e in pod.panic_events.iter().filter(|e| e.at >= now - 3600.0) {
                match ops.iter_mut().find(|(o, _, _)| *o == e.operation) {
                    Some((_, c, last)) => {
                        *c += e.count;
                        *last = last.max(e.at);
                    }
                    None => ops.push((&e.operation, e.count, e.at)),
                }
            }
            for (op, c, last) in ops {
                let recent = last >= now - 300.0;
                items.push(AlertItem {
                    badge: if recent {
                        Health::Critical
                    } else {
                        Health::Warning
                    }
                    .into(),
                    kind: "PANIC",
                    service: service.clone(),
                    href: href.clone(),
                    pod: p.name.clone(),
                    detail: format!("operation {op}"),
                    count: format!(
                        "{} panic{}",
                        format::count(c),
                        if c == 1.0 { "" } else { "s" }
                    ),
                    when: format!("last {}", when(last, now)),
                    sort_at: last + if recent { 1e12 } else { 0.0 },
                });
            }
            if let Some(since) = pod.unreachable_since {
                items.push(AlertItem {
                    badge: Health::Critical.into(),
                    kind: "UNREACHABLE",
                    service: service.clone(),
                    href: href.clone(),
                    pod: p.name.clone(),
                    detail: pod.last_error.clone().unwrap_or_default(),
                    count: String::new(),
                    when: format!("since {}", when(since, now)),
                    sort_at: since,
                });
            }
        }
    }
    items.sort_by(|a, b| b.sort_at.total_cmp(&a.sort_at));
    let recent_panics = items
        .iter()
        .filter(|i| i.kind == "PANIC" && i.badge.css == "crit")
        .count();
    let older_panics = items
        .iter()
        .filter(|i| i.kind == "PANIC" && i.badge.css != "crit")
        .count();
    let unreachable = items.iter().filter(|i| i.kind == "UNREACHABLE").count();
    let (health, headline) = if recent_panics > 0 {
        (
            Health::Critical,
            format!("FIRING: {recent_panics} pod/operation(s) panicked in the last 5 min"),
        )
    } else if unreachable > 0 {
        (
            Health::Critical,
            format!("FIRING: {unreachable} target(s) unreachable"),
        )
    } else if older_panics > 0 {
        (
            Health::Warning,
            format!("RECENT: {older_panics} pod/operation(s) panicked in the last 60 min"),
        )
    } else {
        (
            Health::Ok,
            "No panics in the last 60 min; every target reachable".to_owned(),
        )
    };
    let mut headline = headline;
    if recent_panics > 0 && unreachable > 0 {
        headline.push_str(&format!("; {unreachable} target(s) unreachable"));
    }
    let more = items.len().saturating_sub(MAX_ALERTS);
    items.truncate(MAX_ALERTS);
    AlertStrip {
        badge: health.into(),
        headline,
        items,
        more,
    }
}

fn cycle_text(state: &State, now: f64) -> String {
    match &state.last_cycle {
        None => "first scrape in progress".to_owned(),
        Some(c) => format!(
            "last scrape {} ({} ago): {} ok, {} failed, took {} ms",
            format::clock(c.at),
            format::age(now - c.at),
            c.ok,
            c.failed,
            c.duration.as_millis()
        ),
    }
}

/// The overview of every service, worst first.
pub fn overview(state: &State, now: f64, s: &ViewSettings) -> OverviewView {
    let mut services: Vec<ServiceRow> = state
        .topology
        .services
        .iter()
        .map(|svc| service_row(state, svc, now, s).0)
        .collect();
    services.sort_by(|a, b| {
        b.health
            .cmp(&a.health)
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    let count = |h: Health| services.iter().filter(|r| r.health == h).count();
    let mut parts = Vec::new();
    for h in [
        Health::Critical,
        Health::Warning,
        Health::Unknown,
        Health::Ok,
    ] {
        let n = count(h);
        if n > 0 {
            parts.push(format!("{n} {}", h.label()));
        }
    }
    let summary = if services.is_empty() {
        "no services found".to_owned()
    } else {
        format!("{} service(s): {}", services.len(), parts.join(", "))
    };
    let stale = state.last_cycle.as_ref().and_then(|c| {
        let limit = (s.scrape_interval.as_secs_f64() * 3.0).max(10.0);
        (now - c.at > limit).then(|| {
            format!(
                "data is stale: the last scrape cycle finished {} ago (interval {})",
                format::age(now - c.at),
                format::age(s.scrape_interval.as_secs_f64())
            )
        })
    });
    let mut discovery_error = state
        .discovery_error
        .as_ref()
        .map(|(m, since)| format!("discovery failing since {}: {m}", when(*since, now)));
    if state.dropped_pods > 0 {
        let msg = format!(
            "{} pod(s) not watched: more than the --max-targets cap",
            state.dropped_pods
        );
        discovery_error = Some(match discovery_error {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
    }
    if let Some(stale) = stale {
        discovery_error = Some(match discovery_error {
            Some(e) => format!("{stale}; {e}"),
            None => stale,
        });
    }
    OverviewView {
        as_of: format::clock(now),
        as_of_ms: unix_ms(now),
        refresh_ms: s.refresh.as_millis() as u64,
        source: s.source.clone(),
        cycle: cycle_text(state, now),
        discovery_error,
        summary,
        alerts: alerts(state, now),
        services,
    }
}

/// The page of one service, or `None` when it is not in the topology.
pub fn service(
    state: &State,
    namespace: &str,
    name: &str,
    now: f64,
    s: &ViewSettings,
) -> Option<ServiceView> {
    let svc = state
        .topology
        .services
        .iter()
        .find(|x| x.namespace == namespace && x.name == name)?;
    let (row, pod_numbers) = service_row(state, svc, now, s);
    let size = Size::default();
    let pods = svc
        .pods
        .iter()
        .zip(pod_numbers)
        .map(|(info, (health, reasons, n))| {
            let state_pod = state.pods.get(&pod_key(svc, &info.name));
            let history_start = f64::NEG_INFINITY;
            let (spark_ops, spark_rejections, spark_in_flight, spark_panics) = match state_pod {
                Some(p) => {
                    let h = &p.history;
                    let ops = rate_series(&h.points_since(Series::Operations, history_start));
                    let r429 = h.points_since(Series::ServiceRejections, history_start);
                    let r503 = h.points_since(Series::HttpRejections, history_start);
                    // 429s plus 503s as one counter (a missing series counts as zero).
                    let zero = |v: f64| if v.is_finite() { v } else { 0.0 };
                    let both: Vec<(f64, f64)> = r429
                        .iter()
                        .zip(r503.iter())
                        .map(|(a, b)| (a.0, zero(a.1) + zero(b.1)))
                        .collect();
                    let rej = rate_series(&both);
                    let panics: Vec<(f64, f64)> =
                        rate_series(&h.points_since(Series::Panics, history_start))
                            .into_iter()
                            .zip(h.points_since(Series::Panics, history_start).windows(2))
                            .map(|(r, w)| (r.0, r.1 * (w[1].0 - w[0].0)))
                            .collect();
                    (
                        sparkline::render(&ops, size, "operations per second"),
                        sparkline::render(&rej, size, "rejections (429+503) per second"),
                        sparkline::render(
                            &h.points_since(Series::HttpInFlight, history_start),
                            size,
                            "HTTP requests in flight",
                        ),
                        sparkline::render(&panics, size, "panics per scrape"),
                    )
                }
                None => (
                    sparkline::render(&[], size, "operations per second"),
                    sparkline::render(&[], size, "rejections (429+503) per second"),
                    sparkline::render(&[], size, "HTTP requests in flight"),
                    sparkline::render(&[], size, "panics per scrape"),
                ),
            };
            let scrape = match state_pod {
                Some(p) => match (p.unreachable_since, p.last_success) {
                    (Some(since), _) => format!(
                        "unreachable since {}: {}",
                        when(since, now),
                        p.last_error.as_deref().unwrap_or("error")
                    ),
                    (None, Some(t)) => format!("last scrape {}", when(t, now)),
                    (None, None) => "waiting for first scrape".to_owned(),
                },
                None => {
                    if info.metrics_url.is_some() {
                        "waiting for first scrape".to_owned()
                    } else {
                        "no pod IP yet: not scraped".to_owned()
                    }
                }
            };
            let mut kube = Vec::new();
            if let Some(phase) = &info.phase {
                kube.push(phase.clone());
            }
            match info.ready {
                Some(true) => kube.push("ready".to_owned()),
                Some(false) => kube.push("NOT ready".to_owned()),
                None => {}
            }
            if let Some(r) = info.restarts {
                kube.push(format!("{r} restart(s)"));
            }
            let panics_total = state_pod
                .map(|p| {
                    p.panics_by_operation
                        .iter()
                        .filter(|(_, c)| *c > 0.0)
                        .map(|(o, c)| format!("{o} {}", format::count(*c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "none".to_owned());
            PodRow {
                name: info.name.clone(),
                badge: health.into(),
                reasons: if reasons.is_empty() {
                    "serving normally".to_owned()
                } else {
                    reasons.join("; ")
                },
                url: info
                    .metrics_url
                    .as_deref()
                    .map(display_url)
                    .unwrap_or_default(),
                kube: kube.join(", "),
                version: state_pod
                    .and_then(|p| p.version.clone())
                    .unwrap_or_default(),
                unreachable: state_pod.is_some_and(|p| p.unreachable_since.is_some()),
                scrape,
                in_flight: bar(n.in_flight, n.http_limit),
                service_tier: bar(n.running, n.tasks_limit),
                queued: n
                    .queued
                    .map(format::count)
                    .unwrap_or_else(|| "\u{2014}".into()),
                ops_rate: format::rate(n.ops),
                rate_429: format::rate(n.r429),
                rate_503: format::rate(n.r503),
                panics_5m: format::count(n.panics_5m),
                panics_60m: format::count(n.panics_60m),
                panicking: n.panics_5m > 0.0,
                panics_total,
                p99: format::latency(n.p99),
                spark_ops,
                spark_rejections,
                spark_in_flight,
                spark_panics,
            }
        })
        .collect();
    let conditions = svc
        .conditions
        .iter()
        .map(|c| ConditionRow {
            bad: matches!(
                (c.kind.as_str(), c.status.as_str()),
                ("Ready", "False") | ("Degraded", "True") | ("Progressing", "True")
            ),
            kind: c.kind.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            since: c.since.map(format::date_time).unwrap_or_default(),
        })
        .collect();
    let events = svc
        .events
        .iter()
        .map(|e| EventRow {
            when: e
                .at
                .map(|t| format!("{} ({} ago)", format::date_time(t), format::age(now - t)))
                .unwrap_or_default(),
            warning: e.kind == "Warning",
            kind: e.kind.clone(),
            reason: e.reason.clone(),
            object: e.object.clone(),
            message: e.message.clone(),
            count: if e.count > 1 {
                format!("\u{00D7}{}", e.count)
            } else {
                String::new()
            },
        })
        .collect();
    let window =
        state.limits.history_points.saturating_sub(1) as f64 * s.scrape_interval.as_secs_f64();
    Some(ServiceView {
        as_of: format::clock(now),
        as_of_ms: unix_ms(now),
        refresh_ms: s.refresh.as_millis() as u64,
        fragment_href: format!("/fragments{}", row.href),
        endpoint: svc.endpoint.clone().unwrap_or_default(),
        window: format::age(window),
        row,
        conditions,
        events,
        pods,
        alerts: alerts(state, now),
        cycle: cycle_text(state, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_metrics;
    use crate::sources::{PodInfo, Topology};
    use crate::state::Limits;

    fn sample(panics_get: u32, rejections: u32, in_flight: u32) -> crate::parse::PodSample {
        parse_metrics(&format!(
            "# TYPE strata_service_panics_total counter\n\
             strata_service_panics_total{{operation=\"get\"}} {panics_get}\n\
             # TYPE strata_service_rejections_total counter\n\
             strata_service_rejections_total{{reason=\"at_capacity\"}} {rejections}\n\
             # TYPE strata_http_requests_in_flight gauge\n\
             strata_http_requests_in_flight {in_flight}\n\
             # TYPE strata_http_requests_limit gauge\n\
             strata_http_requests_limit 10\n"
        ))
        .unwrap()
    }

    fn state() -> State {
        let mut st = State::new(Limits::new(
            Duration::from_secs(5),
            Duration::from_secs(600),
            Duration::from_secs(300),
            100,
        ));
        st.set_topology(Topology {
            services: vec![
                ServiceInfo {
                    namespace: "prod".into(),
                    name: "calm".into(),
                    pods: vec![PodInfo {
                        name: "calm-0".into(),
                        metrics_url: Some("http://u:secret@10.0.0.1:8888/metrics".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ServiceInfo {
                    namespace: "prod".into(),
                    name: "fire<script>".into(),
                    pods: vec![PodInfo {
                        name: "fire-0".into(),
                        metrics_url: Some("http://10.0.0.2:8888/metrics".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        });
        st
    }

    fn key(svc: &str, pod: &str) -> PodKey {
        PodKey {
            namespace: "prod".into(),
            service: svc.into(),
            pod: pod.into(),
        }
    }

    #[test]
    fn overview_puts_fire_first_and_alerts_name_operation() {
        let mut st = state();
        for (i, t) in [1000.0, 1005.0, 1010.0].iter().enumerate() {
            st.apply_scrape(&key("calm", "calm-0"), *t, Ok(sample(0, 0, 1)));
            st.apply_scrape(
                &key("fire<script>", "fire-0"),
                *t,
                Ok(sample(i as u32 * 2, i as u32 * 10, 10)),
            );
        }
        let v = overview(&st, 1012.0, &ViewSettings::default());
        assert_eq!(v.services[0].name, "fire<script>");
        assert_eq!(v.services[0].badge.label, "CRIT");
        assert_eq!(v.services[0].panics_5m, "4");
        assert_eq!(v.services[0].rate_429, "2.00/s");
        assert_eq!(v.services[0].in_flight.text, "10 / 10");
        assert_eq!(v.services[1].badge.label, "OK");
        assert_eq!(v.alerts.badge.label, "CRIT");
        assert!(v.alerts.headline.starts_with("FIRING"));
        let item = &v.alerts.items[0];
        assert_eq!(item.kind, "PANIC");
        assert_eq!(item.pod, "fire-0");
        assert_eq!(item.detail, "operation get");
        assert_eq!(item.count, "4 panics");
        assert!(item.when.contains("00:16:50 UTC"), "{}", item.when);
        assert_eq!(item.href, "/services/prod/fire%3Cscript%3E");
        assert_eq!(v.summary, "2 service(s): 1 CRIT, 1 OK");

        // An hour later the panics are gone from the 5-minute window but still "recent".
        let later = overview(&st, 1010.0 + 600.0, &ViewSettings::default());
        assert_eq!(later.services[0].panics_5m, "0");
        assert_eq!(later.services[0].panics_60m, "4");
        assert_eq!(later.alerts.badge.label, "WARN");
    }

    #[test]
    fn unreachable_target_is_named_with_since() {
        let mut st = state();
        st.apply_scrape(
            &key("calm", "calm-0"),
            1000.0,
            Err("connection failed".into()),
        );
        let v = overview(&st, 1030.0, &ViewSettings::default());
        let row = v.services.iter().find(|r| r.name == "calm").unwrap();
        assert_eq!(row.badge.label, "CRIT");
        assert!(
            row.reasons
                .contains("unreachable since 00:16:40 UTC (30s ago)"),
            "{}",
            row.reasons
        );
        assert!(v.alerts.items.iter().any(|i| i.kind == "UNREACHABLE"));
        let page = service(&st, "prod", "calm", 1030.0, &ViewSettings::default()).unwrap();
        assert!(page.pods[0].scrape.starts_with("unreachable since"));
        // The URL is shown without its credentials.
        assert_eq!(page.pods[0].url, "http://10.0.0.1:8888/metrics");
    }

    #[test]
    fn service_page_has_sparklines_and_unknown_service_is_none() {
        let mut st = state();
        for i in 0..5 {
            st.apply_scrape(
                &key("calm", "calm-0"),
                1000.0 + i as f64 * 5.0,
                Ok(sample(0, i * 5, i)),
            );
        }
        let page = service(&st, "prod", "calm", 1021.0, &ViewSettings::default()).unwrap();
        assert!(page.pods[0].spark_rejections.contains("<polyline"));
        assert!(page.pods[0]
            .spark_in_flight
            .contains("last 4, min 0, max 4"));
        assert_eq!(page.fragment_href, "/fragments/services/prod/calm");
        assert!(service(&st, "prod", "nope", 0.0, &ViewSettings::default()).is_none());
    }

    #[test]
    fn stale_data_is_called_out() {
        let mut st = state();
        st.last_cycle = Some(crate::state::CycleSummary {
            at: 1000.0,
            duration: Duration::from_millis(5),
            ok: 2,
            failed: 0,
        });
        let fresh = overview(&st, 1004.0, &ViewSettings::default());
        assert_eq!(fresh.discovery_error, None);
        let stale = overview(&st, 1100.0, &ViewSettings::default());
        assert!(stale
            .discovery_error
            .unwrap()
            .starts_with("data is stale: the last scrape cycle finished 1m40s ago"),);
    }

    #[test]
    fn bar_levels_and_unknowns() {
        assert_eq!(bar(Some(5.0), Some(10.0)).percent, "50%");
        assert!(bar(Some(5.0), Some(10.0))
            .svg
            .contains(r#"class="bar-ok" x="0" y="0" width="40.0""#));
        assert!(bar(Some(9.5), Some(10.0)).svg.contains("bar-crit"));
        assert_eq!(bar(None, None).text, "\u{2014}");
        assert_eq!(bar(Some(3.0), None).text, "3 / ?");
        assert_eq!(bar(Some(30.0), Some(10.0)).fraction, Some(1.0));
    }
}
