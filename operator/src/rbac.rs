//! The exact RBAC rules the operator uses, as data.
//!
//! The Helm chart's ClusterRole is generated from `strata-operator rbac`, and a test
//! compares them, so a new API call cannot ship without its permission and no verb is
//! granted that the code does not use (least privilege).

use k8s_openapi::api::rbac::v1::PolicyRule;

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// Rules for the operator's ClusterRole (it watches StorageServices in every namespace).
///
/// * StorageServices: watched (the controller works from its cache, so no `get`),
///   status written with server-side apply.
/// * Children: read to detect drift (`get`), watched via `.owns()` (`list`, `watch`),
///   server-side applied (`patch`, plus `create` because an apply that creates is
///   authorised as create); only kinds that can stop being desired get `delete`.
/// * Pods and PVCs: listed only to explain why a rollout is not ready.
/// * Secrets: `get` only, on the ones `auth.keys` names, to report a missing one as
///   `Degraded` before rolling pods that would fail to mount it (never listed or
///   watched, so the operator caches no key material).
/// * Events: published through `kube::runtime::events` (`create`, `patch` for series).
/// * Leases: leader election (`get`, `create`, `patch`), see [`leader_election_rules`].
pub fn cluster_role_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule("strata.dev", &["storageservices"], &["list", "watch"]),
        rule("strata.dev", &["storageservices/status"], &["patch"]),
        rule(
            "",
            &["configmaps", "services"],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule(
            "apps",
            &["deployments", "statefulsets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "policy",
            &["poddisruptionbudgets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "autoscaling",
            &["horizontalpodautoscalers"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "networking.k8s.io",
            &["networkpolicies"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            "monitoring.coreos.com",
            &["servicemonitors", "prometheusrules"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule("", &["pods", "persistentvolumeclaims"], &["list"]),
        rule("", &["secrets"], &["get"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ];
    rules.extend(leader_election_rules());
    rules
}

/// The subset used for Lease-based leader election (kube-lease-manager): get the
/// Lease, create it on first start, renew/take it with server-side apply.
pub fn leader_election_rules() -> Vec<PolicyRule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "patch"],
    )]
}

/// The rules as YAML (what `strata-operator rbac` prints).
pub fn cluster_role_rules_yaml() -> String {
    serde_yaml::to_string(&cluster_role_rules()).expect("rules serialize")
}
