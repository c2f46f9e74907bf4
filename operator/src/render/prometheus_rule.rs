//! PrometheusRule with Strata's alerts, scoped to one StorageService.
//!
//! Alert names carry a `StrataStorageService` prefix so they never collide with the
//! fleet-wide rules the chart ships (`deploy/prometheus/strata-rules.yaml`).
//!
//! Alerts are on symptoms (DESIGN §2.6 metric names): panics page at once; sustained
//! rejections, saturation and missing targets warn.

use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

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

/// The rule group for this service's pods (`namespace` + `service` target labels that
/// the ServiceMonitor attaches).
pub fn render(ctx: &Context<'_>, spec: &PrometheusRuleSpec) -> DynamicObject {
    let sel = format!(r#"namespace="{}",service="{}""#, ctx.namespace, ctx.name);
    let who = format!("StorageService {}/{}", ctx.namespace, ctx.name);
    let rules = json!([
        {
            "alert": "StrataStorageServicePanics",
            "expr": format!("sum(increase(strata_service_panics_total{{{sel}}}[5m])) > 0"),
            "labels": { "severity": "critical" },
            "annotations": {
                "summary": format!("{who}: storage operations are panicking"),
                "description": "Panics were caught in the last 5 minutes; see strata_service_panics_total by operation and the server logs.",
                "runbook_url": "https://github.com/strata-dev/strata/blob/main/docs/runbook.md#strataserverpanics"
            }
        },
        {
            "alert": "StrataStorageServiceRejecting",
            "expr": format!("(sum(rate(strata_service_rejections_total{{{sel}}}[5m])) + sum(rate(strata_http_rejections_total{{{sel}}}[5m]))) / clamp_min(sum(rate(strata_http_requests_total{{{sel}}}[5m])), 1e-9) > 0.05"),
            "for": "10m",
            "labels": { "severity": "warning" },
            "annotations": {
                "summary": format!("{who}: more than 5% of requests rejected"),
                "description": "Requests are answered 429/503 by admission control; raise limits or replicas (or enable autoscaling).",
                "runbook_url": "https://github.com/strata-dev/strata/blob/main/docs/runbook.md#strataservicerejectionssustained"
            }
        },
        {
            "alert": "StrataStorageServiceSaturated",
            "expr": format!("max(strata_service_tasks_running{{{sel}}} / clamp_min(strata_service_tasks_limit{{{sel}}}, 1)) > 0.9"),
            "for": "15m",
            "labels": { "severity": "warning" },
            "annotations": {
                "summary": format!("{who}: a server runs above 90% of its concurrency limit"),
                "description": "Sustained saturation precedes rejections; add replicas or raise limits.maxConcurrency.",
                "runbook_url": "https://github.com/strata-dev/strata/blob/main/docs/runbook.md#stratawebtiersaturated"
            }
        },
        {
            "alert": "StrataStorageServiceTargetDown",
            "expr": format!("sum(up{{{sel}}}) == 0 or absent(up{{{sel}}})"),
            "for": "5m",
            "labels": { "severity": "critical" },
            "annotations": {
                "summary": format!("{who}: no server pod can be scraped"),
                "description": "Check the StorageService conditions (kubectl describe storageservice) and pod events.",
                "runbook_url": "https://github.com/strata-dev/strata/blob/main/docs/runbook.md#strataserviceallserversdown"
            }
        }
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
