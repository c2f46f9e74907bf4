//! The generated CRD and RBAC rules versus the copies shipped by the chart and the
//! kustomize base: once a copy exists it must stay byte-for-byte equal.

use std::path::{Path, PathBuf};

use strata_operator::api::crd_yaml;
use strata_operator::rbac::cluster_role_rules_yaml;

fn repo_root() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()))
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
fn access_control_fields_reference_secrets_only() {
    let crd: serde_json::Value = serde_yaml::from_str(&crd_yaml()).unwrap();
    let spec_schema =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let spec = &spec_schema["properties"];
    for present in [
        "auth",
        "rateLimits",
        "killswitches",
        "usecases",
        "networkPolicy",
    ] {
        assert!(
            spec.get(present).is_some(),
            "{present} missing from the CRD"
        );
    }
    // A key is a Secret reference and nothing else: no field could carry a PEM.
    let key = &spec["auth"]["properties"]["keys"]["additionalProperties"];
    let mut fields: Vec<&str> = key["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["keyFiles", "maxPermissions", "secretName"]);
    assert_eq!(key["required"], serde_json::json!(["secretName"]));
    // `auth` must be stated, and enforcement needs keys; both say what to write.
    let rules = |node: &serde_json::Value| -> Vec<(String, String)> {
        node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["rule"].as_str().unwrap().to_owned(),
                    v["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let spec_rules = rules(spec_schema);
    let (_, msg) = spec_rules
        .iter()
        .find(|(r, _)| r == "has(self.auth)")
        .expect("auth is required by CEL");
    assert!(msg.contains("`auth: {enforce: false}`"), "{msg}");
    let auth_rules = rules(&spec["auth"]);
    assert!(
        auth_rules
            .iter()
            .any(|(r, m)| r.contains("size(self.keys) > 0") && m.contains("auth.keys is empty")),
        "{auth_rules:?}"
    );
    assert_eq!(spec["auth"]["properties"]["enforce"]["default"], true);
    let backends = &spec["storage"]["properties"]["type"]["enum"];
    assert_eq!(
        backends,
        &serde_json::json!(["filesystem", "memory", "bigtable", "s3compatible", "tiered"])
    );
}
