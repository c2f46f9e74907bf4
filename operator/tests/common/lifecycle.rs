//! One service's whole life, shared by the RBAC coverage tests of the reconcile
//! (`tests/controller.rs`) and of the live controller (`tests/run.rs`): every optional
//! child switched on, the workload swapped for a StatefulSet and back, everything
//! switched off again, then an invalid spec (which publishes an Event).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use strata_operator::api::{
    AutoscalingSpec, FilesystemSpec, MonitoringSpec, PersistenceSpec, PodDisruptionBudgetSpec,
    PrometheusRuleSpec, ServiceMonitorSpec, StorageService, StorageServiceSpec, StorageSpec,
};
use strata_operator::render::{self, Capabilities};

use super::object_path;

/// Name of the service (and of its children).
pub const NAME: &str = "life";
/// Children that only exist while everything is switched on.
pub const OPTIONAL_CHILDREN: [&str; 4] = [
    "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/life",
    "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/life",
    "/apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/life",
    "/apis/monitoring.coreos.com/v1/namespaces/default/prometheusrules/life",
];
/// The Deployment, while storage is shared.
pub const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/life";
/// The StatefulSet, while storage is a persistent filesystem.
pub const STATEFULSET: &str = "/apis/apps/v1/namespaces/default/statefulsets/life";
/// The NetworkPolicy, while one is asked for.
pub const NETWORK_POLICY: &str = OPTIONAL_CHILDREN[0];

/// The service with everything switched on; needs [`secret`] stored.
pub fn everything_on() -> StorageService {
    let mut obj = super::service_with_keys(NAME);
    obj.spec.storage = super::shared_storage();
    obj.spec.autoscaling = Some(AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 4,
        target_cpu_utilization_percentage: Some(70),
        target_in_flight_percentage: Some(50),
    });
    obj.spec.monitoring = Some(MonitoringSpec {
        service_monitor: Some(ServiceMonitorSpec {
            enabled: true,
            ..Default::default()
        }),
        prometheus_rule: Some(PrometheusRuleSpec {
            enabled: true,
            ..Default::default()
        }),
    });
    obj.spec.network_policy = Some(
        serde_json::from_value(json!({
            "clients": [{"namespaceSelector": {"matchLabels": {"team": "relay"}}}],
        }))
        .unwrap(),
    );
    obj
}

/// Path and content of the Secret holding the service's verification keys.
pub fn secret() -> (String, serde_json::Value) {
    (
        object_path("v1", "default", "secrets", "relay-keys"),
        super::relay_secret(&["v2.pem", "v1.pem"]),
    )
}

/// Persistent filesystem storage (one pod, no autoscaling): the Deployment gives way
/// to a StatefulSet.
pub fn to_statefulset(s: &mut StorageServiceSpec) {
    s.autoscaling = None;
    s.storage = StorageSpec {
        filesystem: Some(FilesystemSpec {
            persistence: Some(PersistenceSpec {
                size: Quantity("1Gi".into()),
                storage_class_name: None,
            }),
        }),
        ..StorageSpec::default()
    };
}

/// Everything optional off, and back to a Deployment.
pub fn everything_off(s: &mut StorageServiceSpec) {
    s.storage.filesystem = None;
    s.autoscaling = None;
    s.monitoring = None;
    s.network_policy = None;
    s.pod_disruption_budget = Some(PodDisruptionBudgetSpec {
        enabled: false,
        min_available: None,
        max_unavailable: None,
    });
}

/// A spec the operator rejects (so it publishes an Event).
pub fn invalid(s: &mut StorageServiceSpec) {
    s.replicas = -1;
}

/// Kinds the operator watches (`list` and `watch`).
const WATCHED_KINDS: [&str; 10] = [
    "storageservices",
    "configmaps",
    "services",
    "deployments",
    "statefulsets",
    "poddisruptionbudgets",
    "horizontalpodautoscalers",
    "networkpolicies",
    "servicemonitors",
    "prometheusrules",
];

/// The grants of the operator's RBAC rules that `used` does not contain, as
/// `group/resource: verb`, leaving out those only Event series updates and leader
/// election use and, when `watches_ran` is false, the watches' `list` and `watch`.
pub fn unused_grants(
    used: &BTreeSet<(String, String, String)>,
    watches_ran: bool,
) -> BTreeSet<String> {
    let mut unused = BTreeSet::new();
    for rule in strata_operator::rbac::cluster_role_rules() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let by_watches = !watches_ran
                        && WATCHED_KINDS.contains(&resource.as_str())
                        && (verb == "list" || verb == "watch");
                    let by_event_series = resource == "events" && verb == "patch";
                    let by_leader_election = group == "coordination.k8s.io";
                    if by_watches || by_event_series || by_leader_election {
                        continue;
                    }
                    if !used.contains(&(group.clone(), resource.clone(), verb.clone())) {
                        unused.insert(format!("{group}/{resource}: {verb}"));
                    }
                }
            }
        }
    }
    unused
}

/// The `get` grants on children: used only to read a child whose kind's cache has
/// not synced yet.
pub fn fallback_reads() -> BTreeSet<String> {
    render::managed_resources(Capabilities { monitoring: true })
        .into_iter()
        .map(|ar| format!("{}/{}: get", ar.group, ar.plural))
        .collect()
}
