//! PrometheusRule with Strata's alerts, scoped to one StorageService.
//!
//! Alert names carry a `StrataStorageService` prefix so they never collide with the
//! fleet-wide rules the chart ships (`deploy/prometheus/strata-rules.yaml`).
//!
//! Alerts are on symptoms (DESIGN §2.6 metric names): panics page at once; sustained
//! rejections, saturation and missing targets warn.

use kube::api::{ApiResource, DynamicObject};
use serde_json::{json, Map, Value};

use super::Context;
use crate::api::PrometheusRuleSpec;

/// `monitoring.coreos.com/v1` PrometheusRule.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "PrometheusRule".into(),
        plural: "prometheusrules".into(),
    }
}

/// One alerting rule; `runbook` is the anchor in `docs/runbook.md`.
struct Alert {
    name: &'static str,
    expr: String,
    for_: Option<&'static str>,
    severity: &'static str,
    summary: String,
    description: &'static str,
    runbook: &'static str,
}

/// The rule as Prometheus reads it (keys in the order the chart's rules use).
fn alert(a: Alert) -> Value {
    let mut rule = Map::new();
    rule.insert("alert".into(), a.name.into());
    rule.insert("expr".into(), a.expr.into());
    if let Some(f) = a.for_ {
        rule.insert("for".into(), f.into());
    }
    rule.insert("labels".into(), json!({ "severity": a.severity }));
    rule.insert(
        "annotations".into(),
        json!({
            "summary": a.summary,
            "description": a.description,
            "runbook_url": format!("https://github.com/strata-dev/strata/blob/main/docs/runbook.md#{}", a.runbook),
        }),
    );
    Value::Object(rule)
}

/// The rule group for this service's pods (`namespace` + `service` target labels that
/// the ServiceMonitor attaches).
pub fn render(ctx: &Context<'_>, spec: &PrometheusRuleSpec) -> DynamicObject {
    let sel = format!(r#"namespace="{}",service="{}""#, ctx.namespace, ctx.name);
    let who = format!("StorageService {}/{}", ctx.namespace, ctx.name);
    let rules = json!([
        alert(Alert {
            name: "StrataStorageServicePanics",
            expr: format!("sum(increase(strata_service_panics_total{{{sel}}}[5m])) > 0"),
            for_: None,
            severity: "critical",
            summary: format!("{who}: storage operations are panicking"),
            description: "Panics were caught in the last 5 minutes; see strata_service_panics_total by operation and the server logs.",
            runbook: "strataserverpanics",
        }),
        alert(Alert {
            name: "StrataStorageServiceRejecting",
            expr: format!("(sum(rate(strata_service_rejections_total{{{sel}}}[5m])) + sum(rate(strata_http_rejections_total{{{sel}}}[5m]))) / clamp_min(sum(rate(strata_http_requests_total{{{sel}}}[5m])), 1e-9) > 0.05"),
            for_: Some("10m"),
            severity: "warning",
            summary: format!("{who}: more than 5% of requests rejected"),
            description: "Requests are answered 429/503 by admission control; raise limits or replicas (or enable autoscaling).",
            runbook: "strataservicerejectionssustained",
        }),
        alert(Alert {
            name: "StrataStorageServiceSaturated",
            expr: format!("max(strata_service_tasks_running{{{sel}}} / clamp_min(strata_service_tasks_limit{{{sel}}}, 1)) > 0.9"),
            for_: Some("15m"),
            severity: "warning",
            summary: format!("{who}: a server runs above 90% of its concurrency limit"),
            description: "Sustained saturation precedes rejections; add replicas or raise limits.maxConcurrency.",
            runbook: "stratawebtiersaturated",
        }),
        alert(Alert {
            name: "StrataStorageServiceTargetDown",
            expr: format!("sum(up{{{sel}}}) == 0 or absent(up{{{sel}}})"),
            for_: Some("5m"),
            severity: "critical",
            summary: format!("{who}: no server pod can be scraped"),
            description: "Check the StorageService conditions (kubectl describe storageservice) and pod events.",
            runbook: "strataserviceallserversdown",
        }),
    ]);
    let mut meta = ctx.meta(&ctx.name);
    let mut labels = meta.labels.take().unwrap_or_default();
    labels.extend(spec.labels.clone());
    meta.labels = Some(labels);
    let mut obj = DynamicObject::new(&ctx.name, &api_resource()).data(json!({
        "spec": {
            "groups": [{
                "name": format!("strata.{}.{}", ctx.namespace, ctx.name),
                "rules": rules,
            }]
        }
    }));
    obj.metadata = meta;
    obj
}
