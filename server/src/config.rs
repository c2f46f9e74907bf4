//! Loading the server configuration: a YAML file (or the defaults) deep-merged with
//! `STRATA__SECTION__KEY` environment overrides, then checked strictly.
//!
//! The schema itself (sections, defaults, validation) is the contract in
//! [`strata_types::config`], re-exported here; this is the only server module that
//! touches the file system or the environment for configuration.

use std::collections::BTreeMap;
use std::path::Path;

pub use strata_types::access::*;
pub use strata_types::config::*;

/// Loads `file` (or defaults when `None`) and applies `STRATA__…` overrides from `env`.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (mut value, mut origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let origin = path.display().to_string();
            let value = parse_yaml(&text, &origin)?;
            (value, origin)
        }
        None => (
            serde_yaml::Value::Mapping(Default::default()),
            "defaults".to_owned(),
        ),
    };
    if value.is_null() {
        value = serde_yaml::Value::Mapping(Default::default());
    }
    // Start from the defaults so an override of one key (say, the storage path)
    // keeps every other default around it.
    let mut merged = serde_yaml::to_value(Config::default()).expect("defaults serialize");
    merge(&mut merged, value);
    let mut value = merged;
    let overrides: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    for (name, raw) in &overrides {
        apply_override(&mut value, name, raw)?;
    }
    if !overrides.is_empty() {
        origin = format!("{origin} + environment");
    }
    from_value(value, &origin)
}

/// Deep-merges `overlay` into `base`. A tagged section (one with `type`) whose type
/// changes is replaced whole, so the old variant's fields do not linger.
fn merge(base: &mut serde_yaml::Value, overlay: serde_yaml::Value) {
    use serde_yaml::Value;
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            let tag = Value::String("type".to_owned());
            if let (Some(old), Some(new)) = (base.get(&tag), overlay.get(&tag)) {
                if old != new {
                    base.clear();
                }
            }
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Sets `STRATA__A__B=v` as `a.b: v`, parsing `v` as a YAML scalar so numbers stay numbers.
fn apply_override(root: &mut serde_yaml::Value, name: &str, raw: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(|part| part.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Invalid {
            origin: "environment".to_owned(),
            key: name.to_owned(),
            message: "empty key segment".to_owned(),
        });
    }
    let parsed: serde_yaml::Value =
        serde_yaml::from_str(raw).unwrap_or_else(|_| serde_yaml::Value::String(raw.to_owned()));
    let mut node = root;
    for (i, segment) in path.iter().enumerate() {
        let map = match node {
            serde_yaml::Value::Mapping(map) => map,
            _ => {
                return Err(ConfigError::Invalid {
                    origin: "environment".to_owned(),
                    key: name.to_owned(),
                    message: format!("`{}` is not a section", path[..i].join(".")),
                })
            }
        };
        let key = serde_yaml::Value::String(segment.clone());
        if i + 1 == path.len() {
            if segment == "type" && map.get(&key) != Some(&parsed) {
                // Switching a tagged section's variant drops the old variant's fields.
                map.clear();
            }
            map.insert(key, parsed);
            return Ok(());
        }
        node = map
            .entry(key)
            .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn load_str(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.yaml");
        std::fs::write(&path, yaml).unwrap();
        // Access control is off in these tests unless a test turns it on.
        let env = [("STRATA__AUTH__ENFORCE", "false")].iter().chain(env);
        load(
            Some(&path),
            env.map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn empty_file_gives_defaults_with_access_control_off() {
        let expected = Config {
            auth: strata_types::access::AuthConfig::disabled(),
            ..Config::default()
        };
        assert_eq!(load_str("", &[]).unwrap(), expected);
    }

    #[test]
    fn enforced_auth_without_keys_refuses_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.yaml");
        std::fs::write(&path, "auth:\n  enforce: true\n").unwrap();
        let err = load(Some(&path), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("auth.keys"), "{err}");
        assert!(err.contains("enforce: false"), "{err}");
        let err = load(None, Vec::new()).unwrap_err().to_string();
        assert!(err.contains("auth.enforce is true"), "{err}");
    }

    #[test]
    fn access_sections_use_upstream_names() {
        let c = load_str(
            "auth:\n  enforce: false\n  keys:\n    relay: {key_files: [/k.pem], max_permissions: [object.read]}\n\
             rate_limits:\n  throughput: {global_rps: 10, burst: 5, usecase_pct: 50, rules: [{usecase: a, scopes: [[org, '1']], rps: 2}]}\n\
             \x20 bandwidth: {global_bps: 1000, report_only: true}\n\
             killswitches: [{usecase: a, scopes: {org: '1'}, service: 'relay-*'}]\n\
             usecases:\n  a: {expiration: {manual: {allowed: false}, ttl: {allowed: true, max: 1d}}}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.auth.keys["relay"].max_permissions,
            vec![strata_types::access::Permission::Read]
        );
        assert_eq!(c.rate_limits.throughput.rules[0].scopes[0].1, "1");
        assert!(c.rate_limits.bandwidth.report_only);
        assert_eq!(c.killswitches[0].service.as_deref(), Some("relay-*"));
        assert!(!c.usecases["a"].expiration.manual.allowed);
        assert_eq!(Config::from_yaml_str(&c.to_yaml()).unwrap(), c);
        assert!(load_str(
            "auth:\n  keys:\n    k: {key_files: [], max_permission: []}\n",
            &[]
        )
        .is_err());
        assert!(load_str(
            "usecases:\n  a: {expiration: {ttl: {allowed: true, maximum: 1d}}}\n",
            &[]
        )
        .is_err());
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = load_str("service:\n  max_concurency: 3\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("strata.yaml"), "{msg}");
        assert!(msg.contains("max_concurency"), "{msg}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        assert!(load_str("htp: {}\n", &[]).is_err());
    }

    #[test]
    fn env_overrides_nest_and_parse_scalars() {
        let c = load_str(
            "service:\n  max_concurrency: 3\n",
            &[
                ("STRATA__SERVICE__MAX_CONCURRENCY", "64"),
                ("STRATA__SERVICE__QUEUE_TIMEOUT", "250ms"),
                ("STRATA__STORAGE__TYPE", "memory"),
                ("OTHER__X", "1"),
            ],
        );
        // storage switched to memory keeps the filesystem-less shape
        let c = c.unwrap();
        assert_eq!(c.service.max_concurrency, 64);
        assert_eq!(c.service.queue_timeout, Duration::from_millis(250));
        assert_eq!(c.storage, StorageConfig::Memory {});
    }

    #[test]
    fn env_override_of_one_key_keeps_other_defaults() {
        let c = load_str("", &[("STRATA__STORAGE__PATH", "/srv/objects")]).unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::Filesystem {
                path: PathBuf::from("/srv/objects")
            }
        );
        let c = load_str("storage:\n  type: memory\n", &[]).unwrap();
        assert_eq!(c.storage, StorageConfig::Memory {});
    }

    #[test]
    fn unknown_env_key_is_an_error() {
        let err = load_str("", &[("STRATA__SERVICE__NOPE", "1")]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn humantime_durations() {
        let c = load_str("faults:\n  delay_key_prefix: slow/\n  delay: 1m 30s\n", &[]).unwrap();
        assert_eq!(c.faults.delay, Duration::from_secs(90));
    }

    #[test]
    fn round_trips_through_yaml() {
        let mut c = Config {
            storage: StorageConfig::Memory {},
            auth: strata_types::access::AuthConfig::disabled(),
            ..Config::default()
        };
        c.faults.panic_key_prefix = Some("boom/".into());
        assert_eq!(Config::from_yaml_str(&c.to_yaml()).unwrap(), c);
    }

    #[test]
    fn shared_backends_parse_strictly() {
        let c = load_str(
            "storage:\n  type: tiered\n  high_volume: {type: bigtable, endpoint: \"127.0.0.1:1\", project_id: p, instance_name: i, table_name: t, create_table: true}\n  long_term: {type: s3compatible, endpoint: \"http://127.0.0.1:2\", bucket: b}\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.storage.kind(), "tiered");
        assert_eq!(Config::from_yaml_str(&c.to_yaml()).unwrap(), c);
        let err = load_str(
            "storage: {type: s3compatible, endpoint: \"http://x\", bucket: b, secret: s}\n",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("secret"), "{err}");
        let err = load_str(
            "storage:\n  type: tiered\n  high_volume: {type: memory}\n  long_term: {type: memory}\n",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("long_term"), "{err}");
    }

    #[test]
    fn bulk_percent_range_checked() {
        assert!(load_str("service:\n  bulk_percent: 0\n", &[]).is_err());
    }

    #[test]
    fn upload_max_age_parses_is_positive_and_renders_only_when_set() {
        let c = load_str("", &[("STRATA__SERVICE__UPLOAD_MAX_AGE", "2h")]).unwrap();
        assert_eq!(c.service.upload_max_age, Duration::from_secs(7200));
        assert!(
            c.to_yaml().contains("upload_max_age: 2h"),
            "{}",
            c.to_yaml()
        );
        assert_eq!(Config::from_yaml_str(&c.to_yaml()).unwrap(), c);
        assert!(!Config::default().to_yaml().contains("upload_max_age"));
        assert!(load_str("service:\n  upload_max_age: 0s\n", &[]).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever the file says, loading answers Ok or a typed error, never a panic.
            #[test]
            fn arbitrary_files_never_panic(yaml in "\\PC{0,200}") {
                let _ = load_str(&yaml, &[]);
            }

            /// Whatever an override says, likewise.
            #[test]
            fn arbitrary_overrides_never_panic(key in "[A-Z_]{1,30}", raw in "\\PC{0,30}") {
                let name = format!("{ENV_PREFIX}{key}");
                let _ = load_str("", &[(name.as_str(), raw.as_str())]);
            }

            /// A rendered config loads back equal (what the operator writes, the server reads).
            #[test]
            fn rendered_service_section_round_trips(
                max in 1usize..10_000,
                depth in 0usize..1_000,
                timeout_ms in 1u64..100_000,
                bulk in 1u8..=100,
            ) {
                let mut config = Config::default();
                config.service.max_concurrency = max;
                config.service.queue_depth = depth;
                config.service.queue_timeout = Duration::from_millis(timeout_ms);
                config.service.bulk_percent = bulk;
                config.auth.enforce = false;
                let yaml = serde_yaml::to_string(&config).unwrap();
                let loaded = load_str(&yaml, &[]).unwrap();
                prop_assert_eq!(loaded, config);
            }
        }
    }
}
