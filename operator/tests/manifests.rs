//! The generated CRD and RBAC rules versus the copies shipped by the chart and the
//! kustomize base: once a copy exists it must stay byte-for-byte equal.

use std::path::{Path, PathBuf};

use strata_operator::api::crd_yaml;
use strata_operator::rbac::cluster_role_rules_yaml;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn check_copy(relative: &str, generated: &str, command: &str) -> bool {
    let path = repo_root().join(relative);
    let Ok(copy) = std::fs::read_to_string(&path) else {
        eprintln!("{relative} does not exist yet; nothing to compare");
        return false;
    };
    assert!(
        copy == generated,
        "{relative} differs from `strata-operator {command}`; regenerate it with\n  cargo run -q -p strata-operator -- {command} > {relative}"
    );
    true
}

#[test]
fn chart_crd_matches_generated() {
    check_copy("charts/strata/crds/storageservice.yaml", &crd_yaml(), "crd");
}

#[test]
fn kustomize_crd_matches_generated() {
    check_copy("deploy/base/crd.yaml", &crd_yaml(), "crd");
}

#[test]
fn chart_rbac_rules_match_generated() {
    check_copy(
        "charts/strata/files/operator-rbac-rules.yaml",
        &cluster_role_rules_yaml(),
        "rbac",
    );
}

#[test]
fn crd_output_is_deterministic() {
    assert_eq!(crd_yaml(), crd_yaml());
}

#[test]
fn crd_has_subresources_columns_and_cel() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["group"], "strata.dev");
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        version["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    assert_eq!(
        version["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Replicas", "Endpoint", "Age"]);
    let text = crd_yaml();
    assert!(text.contains("x-kubernetes-validations"));
    assert!(text.contains("has(self.queueTimeout)"));
    assert!(text.contains("self.podDisruptionBudget.minAvailable"));
}

#[test]
fn no_dead_fields_in_spec() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"];
    for absent in ["auth", "rateLimits", "killswitches", "usecases"] {
        assert!(
            spec.get(absent).is_none(),
            "{absent} is not supported by the server yet"
        );
    }
    let backends = &spec["storage"]["properties"]["type"]["enum"];
    assert_eq!(
        backends,
        &serde_json::json!(["filesystem", "memory", "bigtable", "s3compatible", "tiered"])
    );
}
