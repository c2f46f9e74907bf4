//! Server configuration: typed sections, YAML loading and `STRATA__SECTION__KEY`
//! environment overrides.
//!
//! This is the only module that touches `serde_yaml`, so the YAML library can be
//! swapped without touching anything else. The operator renders these same types,
//! so what it writes always parses here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "STRATA__";

/// The whole server configuration. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener and web-tier admission.
    pub http: HttpConfig,
    /// Service-tier admission (storage operation concurrency).
    pub service: ServiceConfig,
    /// Where objects are stored.
    pub storage: StorageConfig,
    /// Fault injection for tests, demos and alert drills; off by default.
    pub faults: FaultsConfig,
    /// Log verbosity and format.
    pub logging: LoggingConfig,
    /// Access control: token and pre-signed URL verification (api §6.5).
    pub auth: crate::auth::AuthConfig,
    /// Throughput and bandwidth limits (api §8).
    pub rate_limits: crate::limits::RateLimitsConfig,
    /// Requests matching any of these get 403 (api §8).
    pub killswitches: Vec<crate::limits::KillswitchConfig>,
    /// Per-usecase policy; usecases not listed are unrestricted (api §8).
    pub usecases: BTreeMap<String, crate::limits::UsecaseConfig>,
}

/// HTTP listener settings and the web-tier in-flight limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address; port 0 picks a free port (printed at start).
    pub addr: SocketAddr,
    /// Requests in flight beyond which new requests get 503 (internal routes exempt).
    pub max_requests: usize,
    /// While this file exists `/ready` answers 503 (`strata-server down` creates it).
    pub drain_file: PathBuf,
    /// How long shutdown waits for in-flight requests and spawned tasks.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8888)),
            max_requests: 10_000,
            drain_file: PathBuf::from("/tmp/strata.down"),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Service-tier admission: the semaphore over backend operations and its wait queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Storage operations running at once; 0 rejects everything.
    pub max_concurrency: usize,
    /// Operations that may wait for a permit; 0 rejects at once when none is free.
    pub queue_depth: usize,
    /// How long a queued operation waits before it is rejected.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Share of `max_concurrency` (percent, 1..=100) that batch operations may use.
    pub bulk_percent: u8,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 500,
            queue_depth: 0,
            queue_timeout: Duration::from_secs(1),
            bulk_percent: 60,
        }
    }
}

/// Storage backend selection, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// Objects as files under `path` (the embedded default).
    Filesystem {
        /// Root directory; created when missing.
        path: PathBuf,
    },
    /// Objects in process memory; lost at exit (tests, demos).
    Memory {},
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Filesystem {
            path: PathBuf::from("data"),
        }
    }
}

/// Fault injection: operations on keys with these prefixes panic or stall in the backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// Any operation on a key starting with this prefix panics inside the backend.
    pub panic_key_prefix: Option<String>,
    /// Any operation on a key starting with this prefix sleeps `delay` holding its permit.
    pub delay_key_prefix: Option<String>,
    /// How long delayed operations sleep.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `tracing` filter directive, e.g. `info` or `strata_server=debug`.
    pub level: String,
    /// Human-readable text or one JSON object per line.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Why a configuration could not be loaded; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is not well-formed.
    #[error("config file {origin} is not valid YAML: {message}")]
    Syntax {
        /// File name, or `environment`.
        origin: String,
        /// Parser message.
        message: String,
    },
    /// A key is unknown or a value has the wrong type.
    #[error("invalid configuration in {origin} at `{key}`: {message}")]
    Invalid {
        /// File name (or `defaults`), plus environment overrides when present.
        origin: String,
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The values parse but contradict each other.
    #[error("invalid configuration: {0}")]
    Semantic(String),
}

impl Config {
    /// Loads `file` (or defaults when `None`) and applies `STRATA__…` overrides from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
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

    /// Parses a YAML document (as the operator renders it) with the same strictness as `load`.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        from_value(parse_yaml(text, "document")?, "document")
    }

    /// Renders the configuration as YAML (for `strata-server config` and the operator).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("configuration always serializes")
    }

    /// Checks cross-field rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.service;
        if !(1..=100).contains(&s.bulk_percent) {
            return Err(ConfigError::Semantic(format!(
                "service.bulk_percent must be within 1..=100, got {}",
                s.bulk_percent
            )));
        }
        if self.faults.delay_key_prefix.is_some() && self.faults.delay.is_zero() {
            return Err(ConfigError::Semantic(
                "faults.delay_key_prefix needs a non-zero faults.delay".to_owned(),
            ));
        }
        for prefix in [&self.faults.panic_key_prefix, &self.faults.delay_key_prefix]
            .into_iter()
            .flatten()
        {
            if prefix.is_empty() {
                return Err(ConfigError::Semantic(
                    "fault key prefixes must not be empty (leave them unset instead)".to_owned(),
                ));
            }
        }
        if self.auth.enforce && self.auth.keys.is_empty() {
            return Err(ConfigError::Semantic(
                crate::auth::KeyError::EnforcedWithoutKeys.to_string(),
            ));
        }
        Ok(())
    }
}

/// Deserializes strictly (naming the offending key) and checks cross-field rules.
fn from_value(value: serde_yaml::Value, origin: &str) -> Result<Config, ConfigError> {
    let config: Config =
        serde_path_to_error::deserialize(value).map_err(|err| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: err.path().to_string(),
            message: err.inner().to_string(),
        })?;
    config.validate()?;
    Ok(config)
}

fn parse_yaml(text: &str, origin: &str) -> Result<serde_yaml::Value, ConfigError> {
    serde_yaml::from_str(text).map_err(|err| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: err.to_string(),
    })
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

    fn load_str(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.yaml");
        std::fs::write(&path, yaml).unwrap();
        // Access control is off in these tests unless a test turns it on.
        let env = [("STRATA__AUTH__ENFORCE", "false")].iter().chain(env);
        Config::load(
            Some(&path),
            env.map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn empty_file_gives_defaults_with_access_control_off() {
        let expected = Config {
            auth: crate::auth::AuthConfig::disabled(),
            ..Config::default()
        };
        assert_eq!(load_str("", &[]).unwrap(), expected);
    }

    #[test]
    fn enforced_auth_without_keys_refuses_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.yaml");
        std::fs::write(&path, "auth:\n  enforce: true\n").unwrap();
        let err = Config::load(Some(&path), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.keys"), "{err}");
        assert!(err.contains("enforce: false"), "{err}");
        let err = Config::load(None, Vec::new()).unwrap_err().to_string();
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
            vec![crate::auth::Permission::Read]
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
            auth: crate::auth::AuthConfig::disabled(),
            ..Config::default()
        };
        c.faults.panic_key_prefix = Some("boom/".into());
        assert_eq!(Config::from_yaml_str(&c.to_yaml()).unwrap(), c);
    }

    #[test]
    fn bulk_percent_range_checked() {
        assert!(load_str("service:\n  bulk_percent: 0\n", &[]).is_err());
    }
}
