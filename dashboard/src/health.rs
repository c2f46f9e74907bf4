//! Pure health classification: turns a pod's or a service's signals into one verdict plus the
//! human-readable reasons behind it, so the page can say *why* in words, not just colour.

/// Health verdict, ordered by severity (`max` gives the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Healthy.
    Ok,
    /// Not enough data yet (first scrape pending).
    Unknown,
    /// Degraded but serving: rejections, saturation, missing replicas, rollout in progress.
    Warning,
    /// On fire: panics, unreachable, no ready replica, Degraded condition.
    Critical,
}

impl Health {
    /// Text label shown next to the colour (colour is never the only carrier).
    pub fn label(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Unknown => "UNKNOWN",
            Health::Warning => "WARN",
            Health::Critical => "CRIT",
        }
    }

    /// A symbol that differs in shape per state, for colour-blind readers and grey screens.
    pub fn symbol(self) -> &'static str {
        match self {
            Health::Ok => "\u{2714}",       // ✔
            Health::Unknown => "?",         //
            Health::Warning => "\u{25B2}",  // ▲
            Health::Critical => "\u{2716}", // ✖
        }
    }

    /// CSS class suffix.
    pub fn css(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Unknown => "unknown",
            Health::Warning => "warn",
            Health::Critical => "crit",
        }
    }
}

/// Thresholds for classification; defaults suit on-call paging semantics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Saturation (in use / limit) at or above which a tier is a warning.
    pub saturation_warn: f64,
    /// Rejections per second (429 + 503) above which a pod is a warning.
    pub rejections_warn: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            saturation_warn: 0.9,
            rejections_warn: 0.0,
        }
    }
}

/// What is known about one pod right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSignals {
    /// Whether the last scrape failed; `Some(text)` carries "since HH:MM:SS".
    pub unreachable: Option<String>,
    /// Whether at least one scrape succeeded.
    pub scraped: bool,
    /// Panics in the last 5 minutes.
    pub panics_5m: f64,
    /// The latest of those, in words (`get at 10:01:02 UTC`).
    pub last_panic: Option<String>,
    /// 429 per second.
    pub rejections_429: f64,
    /// 503 per second.
    pub rejections_503: f64,
    /// Service-tier running / limit.
    pub service_saturation: Option<f64>,
    /// Web-tier in-flight / limit.
    pub web_saturation: Option<f64>,
    /// Kubernetes readiness, when known (local targets: `None`).
    pub ready: Option<bool>,
}

/// Classifies one pod; reasons are ordered worst first.
pub fn classify_pod(s: &PodSignals, t: &Thresholds) -> (Health, Vec<String>) {
    let mut crit = Vec::new();
    let mut warn = Vec::new();
    if let Some(since) = &s.unreachable {
        crit.push(format!("unreachable {since}"));
    }
    if s.panics_5m > 0.0 {
        let mut reason = format!("{} panic(s) in the last 5 min", s.panics_5m.round());
        if let Some(last) = &s.last_panic {
            reason.push_str(&format!(", last: {last}"));
        }
        crit.push(reason);
    }
    if s.ready == Some(false) {
        warn.push("pod not ready".to_owned());
    }
    let rej = s.rejections_429 + s.rejections_503;
    if rej > t.rejections_warn {
        warn.push(format!(
            "rejecting {:.2}/s (429 {:.2}/s, 503 {:.2}/s)",
            rej, s.rejections_429, s.rejections_503
        ));
    }
    if let Some(sat) = s.service_saturation.filter(|v| *v >= t.saturation_warn) {
        warn.push(format!("service tier {:.0}% busy", sat * 100.0));
    }
    if let Some(sat) = s.web_saturation.filter(|v| *v >= t.saturation_warn) {
        warn.push(format!("web tier {:.0}% busy", sat * 100.0));
    }
    let health = if !crit.is_empty() {
        Health::Critical
    } else if !warn.is_empty() {
        Health::Warning
    } else if !s.scraped {
        Health::Unknown
    } else {
        Health::Ok
    };
    if health == Health::Unknown {
        warn.push("waiting for first scrape".to_owned());
    }
    crit.extend(warn);
    (health, crit)
}

/// A Kubernetes-style condition reduced to what classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionSignal {
    /// `Ready`, `Progressing`, `Degraded`, …
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
}

/// What is known about one StorageService right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSignals {
    /// Desired replicas (spec), when known.
    pub desired: Option<u32>,
    /// Ready replicas (status), when known.
    pub ready: Option<u32>,
    /// Status conditions.
    pub conditions: Vec<ConditionSignal>,
    /// Verdicts of its pods.
    pub pods: Vec<Health>,
}

/// Classifies a service: the worst of its pods, raised by its own conditions and replica
/// counts.
pub fn classify_service(s: &ServiceSignals) -> (Health, Vec<String>) {
    let mut health = s.pods.iter().copied().max().unwrap_or(Health::Unknown);
    let mut reasons = Vec::new();
    let bad = |kind: &str, status: &str| {
        s.conditions
            .iter()
            .find(|c| c.kind == kind && c.status == status)
    };
    if let Some(c) = bad("Degraded", "True") {
        health = health.max(Health::Critical);
        reasons.push(format!("Degraded: {}", c.reason));
    }
    if let Some(c) = bad("Ready", "False") {
        health = health.max(Health::Critical);
        reasons.push(format!("not Ready: {}", c.reason));
    }
    if let Some(c) = bad("Progressing", "True") {
        health = health.max(Health::Warning);
        reasons.push(format!("Progressing: {}", c.reason));
    }
    if let (Some(desired), Some(ready)) = (s.desired, s.ready) {
        if desired > 0 && ready == 0 {
            health = health.max(Health::Critical);
            reasons.push(format!("0 of {desired} replicas ready"));
        } else if ready < desired {
            health = health.max(Health::Warning);
            reasons.push(format!("{ready} of {desired} replicas ready"));
        }
    }
    let crit_pods = s.pods.iter().filter(|h| **h == Health::Critical).count();
    let warn_pods = s.pods.iter().filter(|h| **h == Health::Warning).count();
    if crit_pods > 0 {
        reasons.push(format!("{crit_pods} pod(s) critical"));
    }
    if warn_pods > 0 {
        reasons.push(format!("{warn_pods} pod(s) warning"));
    }
    if s.pods.is_empty() {
        reasons.push("no pods".to_owned());
    }
    (health, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_pod() -> PodSignals {
        PodSignals {
            scraped: true,
            service_saturation: Some(0.1),
            web_saturation: Some(0.01),
            ..Default::default()
        }
    }

    #[test]
    fn healthy_pod_is_ok() {
        let (h, r) = classify_pod(&ok_pod(), &Thresholds::default());
        assert_eq!(h, Health::Ok);
        assert!(r.is_empty());
    }

    #[test]
    fn never_scraped_is_unknown() {
        let (h, r) = classify_pod(&PodSignals::default(), &Thresholds::default());
        assert_eq!(h, Health::Unknown);
        assert_eq!(r, vec!["waiting for first scrape"]);
    }

    #[test]
    fn panics_and_unreachable_are_critical() {
        let mut p = ok_pod();
        p.panics_5m = 2.0;
        assert_eq!(classify_pod(&p, &Thresholds::default()).0, Health::Critical);
        let mut u = ok_pod();
        u.unreachable = Some("since 10:00:00".into());
        let (h, r) = classify_pod(&u, &Thresholds::default());
        assert_eq!(h, Health::Critical);
        assert_eq!(r[0], "unreachable since 10:00:00");
    }

    #[test]
    fn rejections_and_saturation_warn() {
        let mut p = ok_pod();
        p.rejections_429 = 1.5;
        let (h, r) = classify_pod(&p, &Thresholds::default());
        assert_eq!(h, Health::Warning);
        assert!(r[0].contains("429 1.50/s"), "{r:?}");
        let mut s = ok_pod();
        s.service_saturation = Some(1.0);
        let (h, r) = classify_pod(&s, &Thresholds::default());
        assert_eq!(h, Health::Warning);
        assert_eq!(r, vec!["service tier 100% busy"]);
        // Critical wins over warning and both reasons are kept, worst first.
        p.panics_5m = 1.0;
        let (h, r) = classify_pod(&p, &Thresholds::default());
        assert_eq!(h, Health::Critical);
        assert!(r[0].contains("panic"));
        assert!(r[1].contains("rejecting"));
    }

    #[test]
    fn service_is_worst_of_pods_and_conditions() {
        let s = ServiceSignals {
            desired: Some(3),
            ready: Some(3),
            pods: vec![Health::Ok, Health::Warning, Health::Ok],
            ..Default::default()
        };
        assert_eq!(classify_service(&s).0, Health::Warning);

        let degraded = ServiceSignals {
            conditions: vec![ConditionSignal {
                kind: "Degraded".into(),
                status: "True".into(),
                reason: "CrashLoop".into(),
            }],
            pods: vec![Health::Ok],
            ..Default::default()
        };
        let (h, r) = classify_service(&degraded);
        assert_eq!(h, Health::Critical);
        assert_eq!(r[0], "Degraded: CrashLoop");

        let none_ready = ServiceSignals {
            desired: Some(2),
            ready: Some(0),
            pods: vec![Health::Unknown, Health::Unknown],
            ..Default::default()
        };
        assert_eq!(classify_service(&none_ready).0, Health::Critical);

        let partial = ServiceSignals {
            desired: Some(3),
            ready: Some(2),
            pods: vec![Health::Ok, Health::Ok],
            ..Default::default()
        };
        let (h, r) = classify_service(&partial);
        assert_eq!(h, Health::Warning);
        assert_eq!(r, vec!["2 of 3 replicas ready"]);

        let empty = ServiceSignals::default();
        assert_eq!(
            classify_service(&empty),
            (Health::Unknown, vec!["no pods".to_owned()])
        );
    }

    #[test]
    fn labels_differ_beyond_colour() {
        let all = [
            Health::Ok,
            Health::Unknown,
            Health::Warning,
            Health::Critical,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|h| h.label()).collect();
        let symbols: std::collections::HashSet<_> = all.iter().map(|h| h.symbol()).collect();
        assert_eq!(labels.len(), 4);
        assert_eq!(symbols.len(), 4);
        assert!(Health::Critical > Health::Warning && Health::Warning > Health::Ok);
    }
}
