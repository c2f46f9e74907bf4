//! Deployment for servers without per-pod persistent volumes.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Context;

/// Deployment running `template`; surge-only rollouts keep capacity during updates.
pub fn render(ctx: &Context<'_>, template: PodTemplateSpec) -> Deployment {
    Deployment {
        metadata: ctx.meta(&ctx.name),
        spec: Some(DeploymentSpec {
            replicas: Some(ctx.owner.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(ctx.selector_labels()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
