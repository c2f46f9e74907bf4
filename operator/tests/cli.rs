//! The `strata-operator` binary: generated manifests on stdout, clear failures as JSON logs.

use std::process::Command;

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
