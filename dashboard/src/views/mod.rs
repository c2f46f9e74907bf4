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

mod alerts;
mod overview;
mod rows;
mod service;

pub use alerts::{alerts, AlertItem, AlertStrip};
pub use overview::{overview, OverviewView, ServiceRow};
pub use service::{service, ConditionRow, EventRow, PodRow, ServiceView};

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

fn pod_key(s: &ServiceInfo, pod: &str) -> PodKey {
    PodKey {
        namespace: s.namespace.clone(),
        service: s.name.clone(),
        pod: pod.to_owned(),
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
