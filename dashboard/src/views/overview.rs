//! The overview page: every service, worst first.

use super::rows::service_row;
use super::*;

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
    /// Storage kind (`tiered`, `filesystem`, …; `—` when unknown, e.g. local targets).
    pub storage: String,
    /// Whether the spec says `auth.enforce: false` (anyone reaching it may read, write
    /// and delete); false when unknown (local targets).
    pub access_off: bool,
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
    pub(super) health: Health,
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
