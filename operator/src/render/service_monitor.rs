//! ServiceMonitor (Prometheus Operator) scraping every server pod (`/metrics`, `/keda`).
//!
//! Rendered as a `DynamicObject`: the operator must run on clusters without the
//! Prometheus Operator, so it cannot depend on its types being installed.

use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

use super::service::PORT_NAME;
use super::Context;
use crate::api::ServiceMonitorSpec;

/// `monitoring.coreos.com/v1` ServiceMonitor.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}

/// The ServiceMonitor with the user's extra labels on top of the recommended ones.
pub fn render(ctx: &Context<'_>, spec: &ServiceMonitorSpec) -> DynamicObject {
    let mut meta = ctx.meta(&ctx.name);
    let mut labels = meta.labels.take().unwrap_or_default();
    labels.extend(spec.labels.clone());
    meta.labels = Some(labels);
    // `/metrics` carries the strata_* contract; `/keda` the upstream-compatible
    // autoscaling gauges that the HPA's in-flight target (via an adapter) relies on.
    let endpoints: Vec<_> = ["/metrics", "/keda"]
        .into_iter()
        .map(|path| {
            let mut endpoint = json!({ "port": PORT_NAME, "path": path, "scheme": "http" });
            if let Some(interval) = &spec.interval {
                endpoint["interval"] = json!(interval);
            }
            endpoint
        })
        .collect();
    let mut obj = DynamicObject::new(&ctx.name, &api_resource()).data(json!({
        "spec": {
            "selector": { "matchLabels": ctx.selector_labels() },
            "endpoints": endpoints,
        }
    }));
    obj.metadata = meta;
    obj
}
