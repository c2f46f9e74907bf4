//! Golden files: each example StorageService renders to exactly the committed YAML.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p strata-operator --test golden`.

mod common;

use std::path::PathBuf;

use strata_operator::render::{render, Capabilities};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
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
