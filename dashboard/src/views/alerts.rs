//! The alerts strip: recent panics and unreachable pods, newest first.

use super::*;

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
