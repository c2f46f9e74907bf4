//! HorizontalPodAutoscaler scaling the StorageService through its scale subresource.
//!
//! Targeting the StorageService (not the Deployment) keeps one writer per field: the
//! HPA writes `spec.replicas`, the operator copies it to the workload.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Resource;
use strata_types::config::Config;

use super::Context;
use crate::api::StorageService;

/// Per-pod gauge of in-flight HTTP requests that the server exports on `/keda`.
pub const IN_FLIGHT_METRIC: &str = "objectstore_requests_in_flight";

/// The autoscaler, when `autoscaling` is set. The in-flight target is the percentage
/// of the configured web-tier limit turned into an average per-pod value, which is
/// what an HPA Pods metric can express (HPA cannot divide two metrics itself).
pub fn render(ctx: &Context<'_>, config: &Config) -> Option<HorizontalPodAutoscaler> {
    let a = ctx.owner.spec.autoscaling.as_ref()?;
    let mut metrics = Vec::new();
    if let Some(cpu) = a.target_cpu_utilization_percentage {
        metrics.push(MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(cpu),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    if let Some(pct) = a.target_in_flight_percentage {
        let per_pod = ((config.http.max_requests as u64 * pct as u64) / 100).max(1);
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: IN_FLIGHT_METRIC.into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(per_pod.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    Some(HorizontalPodAutoscaler {
        metadata: ctx.meta(&ctx.name),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(StorageService::api_version(&()).into_owned()),
                kind: StorageService::kind(&()).into_owned(),
                name: ctx.name.clone(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        status: None,
    })
}
