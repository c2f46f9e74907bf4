//! ServiceMonitor (Prometheus Operator) scraping every server pod's `/metrics`.
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
    let mut endpoint = json!({ "port": PORT_NAME, "path": "/metrics", "scheme": "http" });
    if let Some(interval) = &spec.interval {
        endpoint["interval"] = json!(interval);
    }
    let mut obj = DynamicObject::new(&ctx.name, &api_resource()).data(json!({
        "spec": {
            "selector": { "matchLabels": ctx.selector_labels() },
            "endpoints": [endpoint],
        }
    }));
    obj.metadata = meta;
    obj
}
