//! PodDisruptionBudget: node drains never take down more servers than allowed.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Context;

/// The budget from the spec, `maxUnavailable: 1` when unset, none when disabled.
pub fn render(ctx: &Context<'_>) -> Option<PodDisruptionBudget> {
    let (min_available, max_unavailable) = match &ctx.owner.spec.pod_disruption_budget {
        Some(p) if !p.enabled => return None,
        Some(p) => (p.min_available, p.max_unavailable),
        None => (None, Some(1)),
    };
    Some(PodDisruptionBudget {
        metadata: ctx.meta(&ctx.name),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(ctx.selector_labels()),
                ..LabelSelector::default()
            }),
            min_available: min_available.map(IntOrString::Int),
            max_unavailable: max_unavailable.map(IntOrString::Int),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
