//! The `strata-operator` binary: generated manifests on stdout, clear failures as JSON logs.

use std::process::Command;

use serde::Deserialize;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata-operator"))
}

#[test]
fn crd_and_rbac_subcommands_print_the_generated_yaml() {
    let out = bin().arg("crd").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        strata_operator::api::crd_yaml()
    );

    let out = bin().arg("rbac").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, strata_operator::rbac::cluster_role_rules_yaml());
    let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> = serde_yaml::from_str(&text).unwrap();
    assert_eq!(rules, strata_operator::rbac::cluster_role_rules());
}

#[test]
fn run_without_a_cluster_fails_with_a_json_log_line() {
    let dir = std::env::temp_dir().join(format!("strata-op-cli-{}", std::process::id()));
    let out = bin()
        .args(["run", "--no-leader-election", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", dir.join("missing-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "must fail without a cluster");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("strata-operator failed"))
        .unwrap_or_else(|| panic!("no failure log line in {stdout:?}"));
    let json: serde_json::Value = serde_json::from_str(line).expect("log lines are JSON");
    assert_eq!(json["level"], "ERROR");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("no Kubernetes configuration"),
        "{json}"
    );
}

fn example_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
    )
    .join(format!("tests/examples/{name}.yaml"))
}

#[test]
fn render_prints_the_children_of_a_storage_service() {
    let out = bin()
        .args(["render", "-f"])
        .arg(example_path("autoscaled"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let v = serde_json::Value::deserialize(doc).unwrap();
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler"
        ]
    );
    assert!(text.contains("type: tiered"), "{text}");
    assert!(text.contains("secretKeyRef"), "{text}");
}

#[test]
fn render_reports_validation_errors_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("strata-op-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: strata.dev/v1alpha1\nkind: StorageService\nmetadata: {name: bad}\nspec:\n  replicas: 3\n  storage: {type: filesystem}\n",
    )
    .unwrap();
    let out = bin().args(["render", "-f"]).arg(&file).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing rendered for an invalid spec"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("spec.replicas:"), "{err}");
    assert!(err.contains("use a shared backend"), "{err}");
}

#[test]
fn render_of_a_missing_file_fails() {
    let out = bin()
        .args(["render", "-f", "/nonexistent/strata.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/strata.yaml"));
}
