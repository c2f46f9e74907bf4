//! The page of one service: its conditions, events and pods.

use super::rows::service_row;
use super::*;

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
    /// Executor: pool queue depth per priority and worker utilisation, in words.
    pub executor: String,
    /// Cancelled reads per second (clients that hung up).
    pub cancellations: String,
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
    /// Auth failures per second over the rate window, all pods.
    pub auth_failures_rate: String,
    /// Auth failures since pod start by status code, all pods (`401 12, 403 3`; `none`).
    pub auth_failures_by_code: String,
    /// Rate-limit rejections per second over the rate window, all pods.
    pub rate_limited_rate: String,
    /// Rate-limit rejections since pod start by kind, all pods (`none` when zero).
    pub rate_limited_by_kind: String,
    /// Alerts (global).
    pub alerts: AlertStrip,
    /// Last scrape cycle, in words.
    pub cycle: String,
}

/// `pool: 12/64 workers busy (19 %), queued 0 interactive · 3 bulk · 0 background`, or
/// `spawn (task per operation)` when the pod runs no pool, or `—` when it exports
/// neither (older servers).
fn executor_text(n: &super::rows::PodNumbers) -> String {
    let count = |v: Option<f64>| v.map(format::count).unwrap_or_else(|| "\u{2014}".into());
    match (n.workers, n.workers_busy) {
        (Some(workers), busy) if workers > 0.0 => {
            let busy = busy.unwrap_or(0.0);
            format!(
                "pool: {}/{} workers busy ({:.0} %), queued {} interactive \u{00B7} {} bulk \u{00B7} {} background",
                format::count(busy),
                format::count(workers),
                100.0 * busy / workers,
                count(n.executor_queue[0]),
                count(n.executor_queue[1]),
                count(n.executor_queue[2]),
            )
        }
        (Some(_), _) => "spawn (a task per operation)".to_owned(),
        (None, _) => "\u{2014}".to_owned(),
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
                executor: executor_text(&n),
                cancellations: format::rate(n.cancellations),
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
    let pod_states: Vec<&PodState> = svc
        .pods
        .iter()
        .filter_map(|p| state.pods.get(&pod_key(svc, &p.name)))
        .collect();
    let since = now - s.rate_window.as_secs_f64();
    let rate = |series: Series| {
        format::rate(rows::sum(
            pod_states
                .iter()
                .map(|p| p.history.rate_since(series, since)),
        ))
    };
    let by_label = |pick: fn(&PodState) -> &Vec<(String, f64)>| {
        let mut totals: Vec<(String, f64)> = Vec::new();
        for p in &pod_states {
            for (label, v) in pick(p) {
                match totals.iter_mut().find(|(l, _)| l == label) {
                    Some(t) => t.1 += v,
                    None => totals.push((label.clone(), *v)),
                }
            }
        }
        totals.sort_by(|a, b| a.0.cmp(&b.0));
        let text = totals
            .iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(l, v)| format!("{l} {}", format::count(*v)))
            .collect::<Vec<_>>()
            .join(", ");
        if text.is_empty() {
            "none".to_owned()
        } else {
            text
        }
    };
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
        auth_failures_rate: rate(Series::AuthFailures),
        auth_failures_by_code: by_label(|p| &p.auth_failures_by_code),
        rate_limited_rate: rate(Series::RateLimited),
        rate_limited_by_kind: by_label(|p| &p.rate_limited_by_kind),
        alerts: alerts(state, now),
        cycle: cycle_text(state, now),
    })
}
