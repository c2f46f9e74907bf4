//! Golden files: each example StorageService renders to exactly the committed YAML.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p strata-operator --test golden`.

mod common;

use std::path::PathBuf;

use strata_operator::render::{render, Capabilities, Workload};

fn golden_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/golden")
}

/// All children of an example as one multi-document YAML stream.
fn rendered_yaml(name: &str, caps: Capabilities) -> String {
    let obj = common::example(name);
    let rendered = render(&obj, caps).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut out =
        format!("# Rendered from tests/examples/{name}.yaml; regenerate with UPDATE_GOLDEN=1.\n");
    for child in rendered.children() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&child.object).unwrap());
    }
    out
}

fn check(name: &str, caps: Capabilities) {
    let actual = rendered_yaml(name, caps);
    let path = golden_dir().join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: rendering differs from {} at line {}:\n  golden:   {:?}\n  rendered: {:?}\nrun with UPDATE_GOLDEN=1 if the change is intended",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

const NO_MONITORING: Capabilities = Capabilities { monitoring: false };
const MONITORING: Capabilities = Capabilities { monitoring: true };

#[test]
fn filesystem_persistent() {
    check("filesystem-persistent", NO_MONITORING);
}

#[test]
fn memory() {
    check("memory", NO_MONITORING);
}

#[test]
fn autoscaled() {
    check("autoscaled", NO_MONITORING);
}

#[test]
fn monitoring_on() {
    check("monitoring", MONITORING);
}

#[test]
fn paused() {
    check("paused", NO_MONITORING);
}

#[test]
fn faults_drill() {
    check("faults-drill", NO_MONITORING);
}

#[test]
fn monitoring_objects_need_the_api() {
    let obj = common::example("monitoring");
    let without = render(&obj, NO_MONITORING).unwrap();
    assert!(without.service_monitor.is_none() && without.prometheus_rule.is_none());
    let with = render(&obj, MONITORING).unwrap();
    assert!(with.service_monitor.is_some() && with.prometheus_rule.is_some());
}

#[test]
fn every_example_is_a_valid_storage_service() {
    for entry in std::fs::read_dir(common::examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let obj = common::example(&name);
        assert_eq!(strata_operator::api::validate(&obj.spec), Ok(()), "{name}");
    }
}

#[test]
fn s3compatible() {
    check("s3compatible", NO_MONITORING);
}

#[test]
fn bigtable() {
    check("bigtable", NO_MONITORING);
}

/// Shared backends are stateless: a Deployment with no data volume, whatever the
/// replica count.
#[test]
fn shared_backends_render_a_stateless_deployment() {
    for name in ["autoscaled", "s3compatible", "bigtable", "monitoring"] {
        let rendered = render(&common::example(name), NO_MONITORING).unwrap();
        let Workload::Deployment(d) = &rendered.workload else {
            panic!("{name}: shared backends need no StatefulSet");
        };
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let volumes: Vec<_> = pod.volumes.iter().flatten().map(|v| &v.name).collect();
        assert!(!volumes.iter().any(|v| *v == "data"), "{name}: {volumes:?}");
        assert!(
            d.spec.as_ref().unwrap().replicas.unwrap() > 1,
            "{name}: shared examples run several pods"
        );
    }
}

/// Credentials only ever appear as references: `secretKeyRef` env vars and a Secret
/// volume. The server YAML names no secret, no env var carries a literal credential,
/// and no rendered object is a Secret.
#[test]
fn no_secret_material_in_rendered_objects() {
    for name in ["autoscaled", "s3compatible", "bigtable"] {
        let obj = common::example(name);
        let rendered = render(&obj, MONITORING).unwrap();
        for child in rendered.children() {
            assert_ne!(child.object["kind"], "Secret", "{name}");
        }
        let yaml = &rendered.config_map.data.as_ref().unwrap()["strata.yaml"];
        for word in ["secret", "credential", "access_key", "AWS_", "GOOGLE_"] {
            assert!(
                !yaml.to_lowercase().contains(&word.to_lowercase()),
                "{name}: server config mentions {word}:\n{yaml}"
            );
        }
        let Workload::Deployment(d) = &rendered.workload else {
            panic!("{name}: expected a Deployment")
        };
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let env = pod.containers[0].env.clone().unwrap_or_default();
        let mut refs = 0;
        for var in &env {
            if var.name.starts_with("AWS_") {
                assert!(
                    var.value.is_none(),
                    "{name}: {} has a literal value",
                    var.name
                );
                let r = var
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .unwrap_or_else(|| panic!("{name}: {} is not a secretKeyRef", var.name));
                let s3 = obj.spec.storage.s3compatible.as_ref().unwrap();
                assert_eq!(r.name, s3.credentials_secret.as_ref().unwrap().name);
                refs += 1;
            }
            if var.name == "GOOGLE_APPLICATION_CREDENTIALS" {
                let path = var.value.as_deref().unwrap();
                let mount = pod.containers[0]
                    .volume_mounts
                    .iter()
                    .flatten()
                    .find(|m| path.starts_with(&m.mount_path))
                    .unwrap_or_else(|| panic!("{name}: {path} is not on a mounted volume"));
                assert_eq!(mount.read_only, Some(true));
                let volume = pod
                    .volumes
                    .iter()
                    .flatten()
                    .find(|v| v.name == mount.name)
                    .unwrap();
                let bt = obj.spec.storage.bigtable.as_ref().unwrap();
                assert_eq!(
                    volume.secret.as_ref().unwrap().secret_name.as_ref(),
                    Some(&bt.credentials_secret.as_ref().unwrap().name)
                );
                refs += 1;
            }
        }
        let expected = usize::from(obj.spec.storage.bigtable.is_some())
            + 2 * usize::from(obj.spec.storage.s3compatible.is_some());
        assert_eq!(refs, expected, "{name}: {env:?}");
    }
}

#[test]
fn access_control() {
    check("access-control", NO_MONITORING);
}

/// Verification keys are only ever Secret references: every rendered object, as
/// serialized for the API server, holds no PEM and no key bytes, while the server
/// config points at the read-only mounts of those Secrets.
#[test]
fn no_key_material_in_rendered_objects() {
    let obj = common::example("access-control");
    let rendered = render(&obj, MONITORING).unwrap();
    // What the Secrets would hold; none of it may leak into a child.
    let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    for child in rendered.children() {
        assert_ne!(child.object["kind"], "Secret");
        let text = serde_json::to_string(&child.object).unwrap();
        for needle in ["BEGIN", "PUBLIC KEY", "MCowBQYDK2VwAyEA", &pem[27..60]] {
            assert!(!text.contains(needle), "{}: contains {needle}", child.name);
        }
    }
    let yaml = &rendered.config_map.data.as_ref().unwrap()["strata.yaml"];
    let config: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(config["auth"]["enforce"], true);
    assert_eq!(
        config["auth"]["keys"]["relay"]["key_files"][1],
        "/var/run/secrets/strata/auth/relay/relay-v1.pem"
    );
    assert_eq!(
        config["auth"]["keys"]["janitor"]["key_files"][0],
        "/var/run/secrets/strata/auth/janitor/public.pem"
    );
    assert_eq!(
        config["auth"]["keys"]["relay"]["max_permissions"][1],
        "object.write"
    );
    assert_eq!(config["rate_limits"]["throughput"]["global_rps"], 500);
    assert_eq!(config["rate_limits"]["bandwidth"]["report_only"], true);
    assert_eq!(config["killswitches"][0]["scopes"]["org"], "17");
    assert_eq!(
        config["usecases"]["attachments"]["expiration"]["manual"]["allowed"],
        false
    );
    let Workload::Deployment(d) = &rendered.workload else {
        panic!("memory runs as a Deployment")
    };
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    for (kid, secret) in [("relay", "relay-keys"), ("janitor", "janitor-key")] {
        let m = mounts
            .iter()
            .find(|m| m.mount_path == format!("/var/run/secrets/strata/auth/{kid}"))
            .unwrap_or_else(|| panic!("{kid} not mounted"));
        assert_eq!(m.read_only, Some(true));
        let v = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap();
        assert_eq!(
            v.secret.as_ref().unwrap().secret_name.as_deref(),
            Some(secret)
        );
    }
}

/// Every access-control field takes part in the config hash, so changing one rolls
/// the pods (the server reads its config only at start).
#[test]
fn access_control_changes_roll_pods() {
    let base = common::example("access-control");
    let hash =
        |o: &strata_operator::api::StorageService| render(o, NO_MONITORING).unwrap().config_hash;
    let h0 = hash(&base);
    let mut changed = Vec::new();
    let mut o = base.clone();
    o.spec.auth.as_mut().unwrap().enforce = false;
    changed.push(o);
    let mut o = base.clone();
    o.spec
        .auth
        .as_mut()
        .unwrap()
        .keys
        .get_mut("relay")
        .unwrap()
        .key_files
        .reverse();
    changed.push(o);
    let mut o = base.clone();
    o.spec.killswitches.pop();
    changed.push(o);
    let mut o = base.clone();
    o.spec
        .rate_limits
        .as_mut()
        .unwrap()
        .throughput
        .as_mut()
        .unwrap()
        .global_rps = Some(600);
    changed.push(o);
    let mut o = base.clone();
    o.spec.usecases.clear();
    changed.push(o);
    for (i, o) in changed.iter().enumerate() {
        assert_ne!(hash(o), h0, "change {i} keeps the hash");
    }
}

/// The NetworkPolicy selects exactly this service's pods and admits clients and
/// scrapers on the HTTP port only; disabling it renders none.
#[test]
fn network_policy_admits_only_the_selected_peers() {
    let mut obj = common::example("access-control");
    let rendered = render(&obj, NO_MONITORING).unwrap();
    let np = rendered.network_policy.expect("network policy");
    assert_eq!(
        np.metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-guarded"
    );
    let spec = np.spec.unwrap();
    assert_eq!(
        spec.pod_selector.unwrap().match_labels.unwrap(),
        strata_operator::render::selector_labels("guarded")
    );
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 2, "clients, then scrapers");
    for rule in &ingress {
        let ports = rule.ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            ports[0].port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
        );
        assert!(rule
            .from
            .as_ref()
            .unwrap()
            .iter()
            .all(|p| p.ip_block.is_none()));
    }
    assert_eq!(ingress[0].from.as_ref().unwrap().len(), 2);
    let scraper = &ingress[1].from.as_ref().unwrap()[0];
    assert!(scraper.namespace_selector.is_some() && scraper.pod_selector.is_some());
    obj.spec.network_policy.as_mut().unwrap().enabled = false;
    assert!(render(&obj, NO_MONITORING)
        .unwrap()
        .network_policy
        .is_none());
    // Enabled with nobody admitted is refused, naming the field.
    obj.spec.network_policy.as_mut().unwrap().enabled = true;
    obj.spec.network_policy.as_mut().unwrap().clients.clear();
    let err = render(&obj, NO_MONITORING).unwrap_err().to_string();
    assert!(err.contains("spec.networkPolicy.clients"), "{err}");
}

/// Every example's server pods run as non-root on a read-only root filesystem, without
/// privilege escalation or capabilities (issue 15, security).
#[test]
fn server_pods_run_as_non_root_on_a_read_only_root() {
    for entry in std::fs::read_dir(common::examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let rendered = render(&common::example(&name), MONITORING).unwrap();
        let template = match &rendered.workload {
            Workload::Deployment(d) => &d.spec.as_ref().unwrap().template,
            Workload::StatefulSet(s) => &s.spec.as_ref().unwrap().template,
        };
        let pod = template.spec.as_ref().unwrap();
        let psc = pod.security_context.as_ref().expect("pod securityContext");
        assert_eq!(psc.run_as_non_root, Some(true), "{name}");
        assert!(psc.run_as_user.is_some_and(|uid| uid != 0), "{name}");
        for container in &pod.containers {
            let sc = container
                .security_context
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: {} has no securityContext", container.name));
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
            assert_eq!(sc.run_as_non_root, Some(true), "{name}");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
            let dropped = sc.capabilities.as_ref().and_then(|c| c.drop.clone());
            assert_eq!(dropped, Some(vec!["ALL".to_owned()]), "{name}");
        }
    }
}

/// The rendered server config spells out every HTTP client bound with its default.
#[test]
fn rendered_config_bounds_slow_clients() {
    let rendered = render(&common::example("memory"), NO_MONITORING).unwrap();
    let yaml = &rendered.config_map.data.as_ref().unwrap()["strata.yaml"];
    let config = strata_types::config::Config::from_yaml_str(yaml).unwrap();
    let defaults = strata_types::config::HttpConfig::default();
    assert_eq!(
        config.http.header_read_timeout,
        defaults.header_read_timeout
    );
    assert_eq!(config.http.body_idle_timeout, defaults.body_idle_timeout);
    assert_eq!(config.http.request_timeout, defaults.request_timeout);
    assert_eq!(config.http.max_header_bytes, defaults.max_header_bytes);
    for key in [
        "header_read_timeout: 10s",
        "body_idle_timeout: 30s",
        "request_timeout: 10m",
        "max_header_bytes: 65536",
    ] {
        assert!(yaml.contains(key), "{key} not rendered:\n{yaml}");
    }
}
