//! Optional NetworkPolicy: only the selected clients and scrapers reach the server pods,
//! and only on the HTTP port (which also serves `/metrics`).

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec as K8sNetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::service::PORT_NAME;
use super::Context;
use crate::api::{NetworkPolicySpec, PeerSpec};

fn peers(list: &[PeerSpec]) -> Vec<NetworkPolicyPeer> {
    list.iter()
        .map(|p| NetworkPolicyPeer {
            namespace_selector: p.namespace_selector.clone(),
            pod_selector: p.pod_selector.clone(),
            ip_block: None,
        })
        .collect()
}

fn http_rule(from: Vec<NetworkPolicyPeer>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(from),
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::String(PORT_NAME.into())),
            protocol: Some("TCP".into()),
            end_port: None,
        }]),
    }
}

/// The policy, when enabled: ingress to this service's pods from clients, then from
/// scrapers (kept as separate rules so `kubectl describe` shows who is who).
pub fn render(ctx: &Context<'_>, spec: &NetworkPolicySpec) -> Option<NetworkPolicy> {
    if !spec.enabled {
        return None;
    }
    let mut ingress = vec![http_rule(peers(&spec.clients))];
    if !spec.scrapers.is_empty() {
        ingress.push(http_rule(peers(&spec.scrapers)));
    }
    Some(NetworkPolicy {
        metadata: ctx.meta(&ctx.name),
        spec: Some(K8sNetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(ctx.selector_labels()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}
