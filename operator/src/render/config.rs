//! The server configuration, built from the server crate's own typed config so that
//! whatever the operator writes is exactly what `strata-server` parses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_types::config::{
    Config, FaultsConfig, HttpConfig, LogFormat, LoggingConfig, ServiceConfig, StorageConfig,
};

use super::RenderError;
use crate::api::validate::parse_duration;
use crate::api::{LogFormatSpec, StorageBackend, StorageServiceSpec};

pub use strata_types::crd::labels::HTTP_PORT;
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/strata";
/// Key of the server YAML inside the ConfigMap.
pub const CONFIG_KEY: &str = "strata.yaml";
/// The drain file `strata-server down` creates; `/tmp` is an `emptyDir`.
pub const DRAIN_FILE: &str = "/tmp/strata.down";
/// Mount point of the data volume (PVC or `emptyDir`).
pub const DATA_DIR: &str = "/var/lib/strata";
/// Filesystem backend root below the data volume (keeps `lost+found` out of the way).
pub const DATA_PATH: &str = "/var/lib/strata/data";
/// Default pause between `strata-server down` and SIGTERM.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);

/// Builds the server configuration for `spec`; fails when the combination is one the
/// server would reject, naming the offending spec field.
// Assigning sections over `Config::default()` (instead of a struct literal) is what
// keeps this compiling when the server grows a section.
#[allow(clippy::field_reassign_with_default)]
pub fn server_config(spec: &StorageServiceSpec) -> Result<Config, RenderError> {
    let mut http = HttpConfig {
        addr: SocketAddr::from(([0, 0, 0, 0], HTTP_PORT)),
        drain_file: PathBuf::from(DRAIN_FILE),
        ..HttpConfig::default()
    };
    let mut service = ServiceConfig::default();
    if let Some(limits) = &spec.limits {
        if let Some(v) = limits.max_requests {
            http.max_requests = v as usize;
        }
        if let Some(v) = limits.max_concurrency {
            service.max_concurrency = v as usize;
        }
        if let Some(v) = limits.queue_depth {
            service.queue_depth = v as usize;
        }
        if let Some(v) = &limits.queue_timeout {
            service.queue_timeout = parse_duration("limits.queueTimeout", v)?;
        }
        if let Some(v) = limits.bulk_percent {
            service.bulk_percent = v;
        }
        if let Some(v) = &limits.upload_max_age {
            service.upload_max_age = positive_duration("limits.uploadMaxAge", v)?;
        }
        for (field, value, target) in [
            (
                "limits.headerReadTimeout",
                &limits.header_read_timeout,
                &mut http.header_read_timeout,
            ),
            (
                "limits.bodyIdleTimeout",
                &limits.body_idle_timeout,
                &mut http.body_idle_timeout,
            ),
            (
                "limits.requestTimeout",
                &limits.request_timeout,
                &mut http.request_timeout,
            ),
        ] {
            if let Some(v) = value {
                *target = positive_duration(field, v)?;
            }
        }
        if let Some(v) = limits.max_header_bytes {
            http.max_header_bytes = v as usize;
        }
    }
    if let Some(v) = spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.shutdown_timeout.as_ref())
    {
        http.shutdown_timeout = parse_duration("lifecycle.shutdownTimeout", v)?;
    }
    let storage = storage_config(spec)?;
    let mut faults = FaultsConfig::default();
    if let Some(f) = &spec.faults {
        faults.panic_key_prefix = f.panic_key_prefix.clone();
        faults.delay_key_prefix = f.delay_key_prefix.clone();
        if let Some(d) = &f.delay {
            faults.delay = parse_duration("faults.delay", d)?;
        }
    }
    let mut logging = LoggingConfig {
        format: LogFormat::Json,
        ..LoggingConfig::default()
    };
    if let Some(l) = &spec.logging {
        if let Some(level) = &l.level {
            logging.level = level.clone();
        }
        if let Some(format) = l.format {
            logging.format = match format {
                LogFormatSpec::Text => LogFormat::Text,
                LogFormatSpec::Json => LogFormat::Json,
            };
        }
    }
    // Field by field over the defaults, so sections the server adds later keep their
    // defaults until the CRD grows a field for them.
    let mut config = Config::default();
    config.http = http;
    config.service = service;
    config.storage = storage;
    config.faults = faults;
    config.logging = logging;
    config.auth = super::auth::server_auth(spec);
    config.killswitches = spec.killswitches.clone();
    config.rate_limits = spec
        .rate_limits
        .as_ref()
        .map(|r| r.to_config())
        .unwrap_or_default();
    config.usecases = spec.usecases.clone();
    config
        .validate()
        .map_err(|e| RenderError::ServerConfig(e.to_string()))?;
    Ok(config)
}

/// A duration the server needs above zero (0 would time out or discard everything).
fn positive_duration(field: &str, text: &str) -> Result<Duration, RenderError> {
    match parse_duration(field, text)? {
        d if d.is_zero() => Err(crate::api::ValidationError {
            field: field.to_owned(),
            message: format!("`{text}` must be longer than zero"),
        }
        .into()),
        d => Ok(d),
    }
}

/// The server's `storage` section. Credentials are never part of it: the pod gets
/// them from Secrets (see `pod`), the server from the standard environment.
fn storage_config(spec: &StorageServiceSpec) -> Result<StorageConfig, RenderError> {
    let storage = &spec.storage;
    let missing = |field: &str, kind: &str| {
        RenderError::from(crate::api::ValidationError {
            field: field.to_owned(),
            message: format!("storage.type {kind} needs it"),
        })
    };
    let bigtable = || -> Result<StorageConfig, RenderError> {
        let bt = storage
            .bigtable
            .as_ref()
            .ok_or_else(|| missing("storage.bigtable", storage.backend.as_str()))?;
        Ok(StorageConfig::Bigtable {
            endpoint: bt.endpoint.clone(),
            project_id: bt.project_id.clone(),
            instance_name: bt.instance_name.clone(),
            table_name: bt.table_name.clone(),
            connections: bt.connections.map(|c| c as usize),
            create_table: bt.create_table,
        })
    };
    let s3 = || -> Result<StorageConfig, RenderError> {
        let s3 = storage
            .s3compatible
            .as_ref()
            .ok_or_else(|| missing("storage.s3compatible", storage.backend.as_str()))?;
        Ok(StorageConfig::S3compatible {
            endpoint: s3.endpoint.clone(),
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            path_style: s3.path_style,
        })
    };
    Ok(match storage.backend {
        StorageBackend::Filesystem => StorageConfig::Filesystem {
            path: PathBuf::from(DATA_PATH),
        },
        StorageBackend::Memory => StorageConfig::Memory {},
        StorageBackend::Bigtable => bigtable()?,
        StorageBackend::S3compatible => s3()?,
        StorageBackend::Tiered => StorageConfig::Tiered {
            high_volume: Box::new(bigtable()?),
            long_term: Box::new(s3()?),
        },
    })
}

/// Short, stable digest of the rendered YAML: the pod annotation that rolls pods
/// whenever (and only when) the configuration text changes.
pub fn config_hash(yaml: &str) -> String {
    let digest = Sha256::digest(yaml.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The pause between readiness failing and SIGTERM.
pub fn drain_delay(spec: &StorageServiceSpec) -> Result<Duration, RenderError> {
    match spec.lifecycle.as_ref().and_then(|l| l.drain_delay.as_ref()) {
        Some(v) => Ok(parse_duration("lifecycle.drainDelay", v)?),
        None => Ok(DEFAULT_DRAIN_DELAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LimitsSpec;

    fn with_limits(limits: LimitsSpec) -> Result<Config, RenderError> {
        let mut spec = StorageServiceSpec::minimal();
        spec.limits = Some(limits);
        server_config(&spec)
    }

    #[test]
    fn upload_age_and_slow_client_limits_reach_the_server_config() {
        let config = with_limits(LimitsSpec {
            upload_max_age: Some("6h".into()),
            header_read_timeout: Some("30s".into()),
            body_idle_timeout: Some("1m".into()),
            request_timeout: Some("30m".into()),
            max_header_bytes: Some(131_072),
            ..LimitsSpec::default()
        })
        .unwrap();
        assert_eq!(config.service.upload_max_age, Duration::from_secs(6 * 3600));
        assert_eq!(config.http.header_read_timeout, Duration::from_secs(30));
        assert_eq!(config.http.body_idle_timeout, Duration::from_secs(60));
        assert_eq!(config.http.request_timeout, Duration::from_secs(1800));
        assert_eq!(config.http.max_header_bytes, 131_072);
        let defaults = with_limits(LimitsSpec::default()).unwrap();
        assert_eq!(
            defaults.http.header_read_timeout,
            HttpConfig::default().header_read_timeout
        );
        assert_eq!(
            defaults.service.upload_max_age,
            ServiceConfig::default().upload_max_age
        );
    }

    #[test]
    fn zero_durations_are_refused_naming_the_field() {
        let zero = |limits: LimitsSpec| with_limits(limits).unwrap_err().to_string();
        let age = zero(LimitsSpec {
            upload_max_age: Some("0s".into()),
            ..LimitsSpec::default()
        });
        assert!(age.contains("limits.uploadMaxAge"), "{age}");
        let idle = zero(LimitsSpec {
            body_idle_timeout: Some("0ms".into()),
            ..LimitsSpec::default()
        });
        assert!(idle.contains("limits.bodyIdleTimeout"), "{idle}");
        let bad = zero(LimitsSpec {
            request_timeout: Some("soon".into()),
            ..LimitsSpec::default()
        });
        assert!(bad.contains("limits.requestTimeout"), "{bad}");
    }
}
