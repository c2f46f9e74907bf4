//! Server configuration schema: typed sections, their defaults, strict YAML
//! (de)serialization of one document and the cross-field rules that need no I/O.
//!
//! Loading a file and applying `STRATA__SECTION__KEY` environment overrides is the
//! server's job (`strata_server::config`). The operator renders these same types, so
//! what it writes always parses in the server.

use std::net::SocketAddr;
use std::path::PathBuf;
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
    pub auth: crate::access::AuthConfig,
    /// Throughput and bandwidth limits (api §8).
    pub rate_limits: crate::access::RateLimitsConfig,
    /// Requests matching any of these get 403 (api §8).
    pub killswitches: Vec<crate::access::KillswitchConfig>,
    /// Per-usecase policy; usecases not listed are unrestricted (api §8).
    pub usecases: std::collections::BTreeMap<String, crate::access::UsecaseConfig>,
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
    /// A connection whose request head (line and headers) is not complete this long after
    /// it started is closed; idle keep-alive connections close after it too.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request body that delivers no bytes for this long fails with 408, releasing
    /// whatever the request holds (a service permit, an upload).
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// Overall deadline for reading a request body, counted from its head: past it the
    /// request fails with 408 even while bytes still trickle in.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest request head (request line plus headers) in bytes; larger ones get 431.
    /// At least [`MIN_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
}

/// Smallest allowed `http.max_header_bytes` (HTTP/1 parsers need this much buffer).
pub const MIN_MAX_HEADER_BYTES: usize = 8192;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8888)),
            max_requests: 10_000,
            drain_file: PathBuf::from("/tmp/strata.down"),
            shutdown_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(600),
            max_header_bytes: 65_536,
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
    /// Multipart uploads and resumable sessions untouched for this long are removed.
    #[serde(
        with = "humantime_serde",
        skip_serializing_if = "is_default_upload_max_age"
    )]
    pub upload_max_age: Duration,
    /// Where admitted operations run: a task each (`spawn`) or a fixed worker pool fed
    /// by bounded per-priority queues (`pool`).
    #[serde(skip_serializing_if = "is_default_executor")]
    pub executor: ExecutorKind,
    /// Workers of the `pool` executor (at least 1).
    #[serde(skip_serializing_if = "is_default_workers")]
    pub workers: usize,
    /// Background chores (expiry sweeps, upload cleanup) that may wait at once; more are
    /// dropped and counted.
    #[serde(skip_serializing_if = "is_default_background_queue")]
    pub background_queue: usize,
}

/// `service.executor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A fresh task per operation (the default: faster on small GETs, BENCHMARKS.md).
    #[default]
    Spawn,
    /// A fixed pool of `service.workers` workers; interactive before bulk before
    /// background work.
    Pool,
}

/// Default of `service.workers`.
pub const DEFAULT_WORKERS: usize = 64;
/// Default of `service.background_queue`.
pub const DEFAULT_BACKGROUND_QUEUE: usize = 1024;

// The executor keys are left out of rendered configs while they have their defaults, so
// configs written before they existed render unchanged.
fn is_default_executor(kind: &ExecutorKind) -> bool {
    *kind == ExecutorKind::default()
}

fn is_default_workers(workers: &usize) -> bool {
    *workers == DEFAULT_WORKERS
}

fn is_default_background_queue(n: &usize) -> bool {
    *n == DEFAULT_BACKGROUND_QUEUE
}

/// Default of `service.upload_max_age`: one day.
pub const DEFAULT_UPLOAD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

// Left out of rendered configs while it has its default, so configs written before the
// key existed render unchanged.
fn is_default_upload_max_age(age: &Duration) -> bool {
    *age == DEFAULT_UPLOAD_MAX_AGE
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 500,
            queue_depth: 0,
            queue_timeout: Duration::from_secs(1),
            bulk_percent: 60,
            upload_max_age: DEFAULT_UPLOAD_MAX_AGE,
            executor: ExecutorKind::default(),
            workers: DEFAULT_WORKERS,
            background_queue: DEFAULT_BACKGROUND_QUEUE,
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
    /// Google Cloud Bigtable or its emulator, shared by every pod (the high-volume tier).
    Bigtable {
        /// `host:port` of an emulator; unset uses `BIGTABLE_EMULATOR_HOST`, else Google
        /// with application-default credentials.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Google Cloud project.
        project_id: String,
        /// Bigtable instance.
        instance_name: String,
        /// Table holding one row per object.
        table_name: String,
        /// gRPC channels to open (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connections: Option<usize>,
        /// Create the table and its column families at start (emulator and local use).
        #[serde(default)]
        create_table: bool,
    },
    /// Any S3-compatible object store, shared by every pod (the long-term tier).
    /// Credentials come only from the standard AWS environment variables.
    S3compatible {
        /// Base URL, e.g. `https://s3.us-east-1.amazonaws.com` or `http://minio:9000`.
        endpoint: String,
        /// Bucket holding the objects; it must exist.
        bucket: String,
        /// Signing region (default `us-east-1`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Address buckets as `endpoint/bucket` instead of `bucket.endpoint` (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_style: Option<bool>,
    },
    /// Objects up to 1 MiB in `high_volume`; larger ones in `long_term` behind a
    /// redirect tombstone in `high_volume`.
    Tiered {
        /// Small objects and tombstones: `bigtable` (or `memory` for tests).
        high_volume: Box<StorageConfig>,
        /// Large objects: `s3compatible` or `filesystem`.
        long_term: Box<StorageConfig>,
    },
}

impl StorageConfig {
    /// The `type` tag of this section.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Filesystem { .. } => "filesystem",
            StorageConfig::Memory {} => "memory",
            StorageConfig::Bigtable { .. } => "bigtable",
            StorageConfig::S3compatible { .. } => "s3compatible",
            StorageConfig::Tiered { .. } => "tiered",
        }
    }
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
        self.http.validate()?;
        let s = &self.service;
        if !(1..=100).contains(&s.bulk_percent) {
            return Err(ConfigError::Semantic(format!(
                "service.bulk_percent must be within 1..=100, got {}",
                s.bulk_percent
            )));
        }
        if self.auth.enforce && self.auth.keys.is_empty() {
            return Err(ConfigError::Semantic(
                crate::access::ENFORCED_WITHOUT_KEYS.to_owned(),
            ));
        }
        if s.upload_max_age.is_zero() {
            return Err(ConfigError::Semantic(
                "service.upload_max_age must be positive: 0 would discard every upload at once"
                    .to_owned(),
            ));
        }
        if s.executor == ExecutorKind::Pool && s.workers == 0 {
            return Err(ConfigError::Semantic(
                "service.workers must be at least 1 with service.executor: pool".to_owned(),
            ));
        }
        if self.faults.delay_key_prefix.is_some() && self.faults.delay.is_zero() {
            return Err(ConfigError::Semantic(
                "faults.delay_key_prefix needs a non-zero faults.delay".to_owned(),
            ));
        }
        if let StorageConfig::Tiered {
            high_volume,
            long_term,
        } = &self.storage
        {
            if !matches!(high_volume.kind(), "bigtable" | "memory") {
                return Err(ConfigError::Semantic(format!(
                    "storage.high_volume must be bigtable or memory, got {}",
                    high_volume.kind()
                )));
            }
            if !matches!(long_term.kind(), "s3compatible" | "filesystem") {
                return Err(ConfigError::Semantic(format!(
                    "storage.long_term must be s3compatible or filesystem, got {}",
                    long_term.kind()
                )));
            }
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
        Ok(())
    }
}

impl HttpConfig {
    /// Timeouts must be positive (0 would fail every request) and the header limit at
    /// least [`MIN_MAX_HEADER_BYTES`]; messages name the key.
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Semantic(format!(
                    "http.{key} must be positive: 0 would time out every request"
                )));
            }
        }
        if self.max_header_bytes < MIN_MAX_HEADER_BYTES {
            return Err(ConfigError::Semantic(format!(
                "http.max_header_bytes must be at least {MIN_MAX_HEADER_BYTES}, got {}",
                self.max_header_bytes
            )));
        }
        Ok(())
    }
}

/// Deserializes strictly (naming the offending key, with `origin` as the file name in
/// messages) and checks cross-field rules.
pub fn from_value(value: serde_yaml::Value, origin: &str) -> Result<Config, ConfigError> {
    let config: Config =
        serde_path_to_error::deserialize(value).map_err(|err| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: err.path().to_string(),
            message: err.inner().to_string(),
        })?;
    config.validate()?;
    Ok(config)
}

/// Parses YAML text into a document tree; `origin` names the source in errors.
pub fn parse_yaml(text: &str, origin: &str) -> Result<serde_yaml::Value, ConfigError> {
    serde_yaml::from_str(text).map_err(|err| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `yaml` (a mapping, possibly empty) with access control off.
    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str(&format!("auth: {{enforce: false}}\n{yaml}"))
    }

    #[test]
    fn http_bounds_have_documented_defaults_and_always_render() {
        let http = parse("").unwrap().http;
        assert_eq!(http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(http.body_idle_timeout, Duration::from_secs(30));
        assert_eq!(http.request_timeout, Duration::from_secs(600));
        assert_eq!(http.max_header_bytes, 65_536);
        let yaml = Config::default().to_yaml();
        for line in [
            "header_read_timeout: 10s",
            "body_idle_timeout: 30s",
            "request_timeout: 10m",
            "max_header_bytes: 65536",
        ] {
            assert!(yaml.contains(line), "{line} missing in\n{yaml}");
        }
    }

    #[test]
    fn http_bounds_parse_humantime_and_round_trip() {
        let config = parse(
            "http:\n  header_read_timeout: 1s\n  body_idle_timeout: 1500ms\n  request_timeout: 2m\n  max_header_bytes: 8192\n",
        )
        .unwrap();
        assert_eq!(config.http.header_read_timeout, Duration::from_secs(1));
        assert_eq!(config.http.body_idle_timeout, Duration::from_millis(1500));
        assert_eq!(config.http.request_timeout, Duration::from_secs(120));
        assert_eq!(config.http.max_header_bytes, 8192);
        assert_eq!(Config::from_yaml_str(&config.to_yaml()).unwrap(), config);
    }

    #[test]
    fn small_or_zero_header_limit_is_refused_naming_the_key() {
        for value in ["0", "8191"] {
            let err = parse(&format!("http:\n  max_header_bytes: {value}\n")).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("http.max_header_bytes"), "{message}");
            assert!(message.contains("8192"), "{message}");
        }
    }

    #[test]
    fn zero_timeouts_are_refused_naming_the_key() {
        for key in [
            "header_read_timeout",
            "body_idle_timeout",
            "request_timeout",
        ] {
            let err = parse(&format!("http:\n  {key}: 0s\n")).unwrap_err();
            assert!(err.to_string().contains(&format!("http.{key}")), "{err}");
        }
    }

    #[test]
    fn unknown_http_key_is_an_error() {
        let err = parse("http:\n  header_timeout: 1s\n").unwrap_err();
        assert!(err.to_string().contains("header_timeout"), "{err}");
    }
}
