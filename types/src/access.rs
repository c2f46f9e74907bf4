//! The access-control sections of the server configuration (api §6.5, §8, upstream's key
//! names): `auth`, `rate_limits`, `killswitches` and `usecases`. The server verifies and
//! enforces them; the operator renders them. Types whose keys are single words are
//! reused as-is by the `StorageService` CRD (feature `crd`); the others have camelCase
//! twins in `crd::access`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why enforcement without keys is refused, and how to fix it.
pub const ENFORCED_WITHOUT_KEYS: &str =
    "auth.enforce is true but auth.keys is empty, so every request would be refused; \
configure at least one key under auth.keys (kid: {key_files: [PEM], max_permissions: [...]}) \
or set `auth: {enforce: false}` to run without access control";

/// One permission a token can carry (upstream's names).
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// GET and HEAD, batch get/head.
    #[serde(rename = "object.read")]
    Read,
    /// PUT, POST, PATCH, batch insert, every multipart and resumable call.
    #[serde(rename = "object.write")]
    Write,
    /// DELETE, batch delete.
    #[serde(rename = "object.delete")]
    Delete,
}

impl Permission {
    /// The wire name, e.g. `object.read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "object.read",
            Permission::Write => "object.write",
            Permission::Delete => "object.delete",
        }
    }
}

/// `auth`: whether failures are enforced and which keys verify tokens and pre-signed URLs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Reject requests whose credentials fail (default true, as upstream). With `false`
    /// and keys configured, failures are only logged and counted.
    pub enforce: bool,
    /// Verification keys by key id (`kid`).
    pub keys: BTreeMap<String, KeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enforce: true,
            keys: BTreeMap::new(),
        }
    }
}

impl AuthConfig {
    /// Access control off: no keys, nothing enforced (tests, local runs).
    pub fn disabled() -> Self {
        Self {
            enforce: false,
            keys: BTreeMap::new(),
        }
    }
}

/// One key id: its versions (newest first) and the most it may grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Ed25519 public keys in SPKI PEM (`PUBLIC KEY`), one file per key version.
    pub key_files: Vec<PathBuf>,
    /// Upper bound on what tokens signed with this key grant; empty grants nothing.
    #[serde(default)]
    pub max_permissions: Vec<Permission>,
}

/// `rate_limits`: throughput and bandwidth buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Request-rate token buckets.
    pub throughput: ThroughputConfig,
    /// Byte-rate GCRA buckets.
    pub bandwidth: BandwidthConfig,
}

/// `rate_limits.throughput`: token buckets of requests per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThroughputConfig {
    /// Requests per second over everything; unset means unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_rps: Option<u32>,
    /// Extra tokens: each bucket holds its rate plus this many.
    pub burst: u32,
    /// Per-usecase bucket, as a percentage of `global_rps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usecase_pct: Option<u8>,
    /// Per-full-scope-list bucket, as a percentage of `global_rps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_pct: Option<u8>,
    /// Rules with one shared bucket each.
    pub rules: Vec<ThroughputRule>,
}

/// One throughput rule: applies when all its conditions match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThroughputRule {
    /// Only this usecase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usecase: Option<String>,
    /// Only requests carrying all these `[name, value]` scopes.
    pub scopes: Vec<(String, String)>,
    /// Requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<u32>,
    /// Percentage of `global_rps`; the limit is the smaller of the two when both are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pct: Option<u8>,
}

/// `rate_limits.bandwidth`: bytes per second, charged while payloads stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BandwidthConfig {
    /// Bytes per second over everything; unset means unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_bps: Option<u64>,
    /// Per-usecase bucket, as a percentage of `global_bps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usecase_pct: Option<u8>,
    /// Per-full-scope-list bucket, as a percentage of `global_bps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_pct: Option<u8>,
    /// Debt (in milliseconds of the rate) a bucket may build up before new requests get 429.
    pub burst_ms: u64,
    /// Count would-be rejections without rejecting.
    pub report_only: bool,
}

impl Default for BandwidthConfig {
    fn default() -> Self {
        Self {
            global_bps: None,
            usecase_pct: None,
            scope_pct: None,
            burst_ms: 1000,
            report_only: false,
        }
    }
}

/// One killswitch: blocks requests matching all its conditions (403).
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KillswitchConfig {
    /// Only this usecase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usecase: Option<String>,
    /// Only requests whose scopes include all of these.
    pub scopes: BTreeMap<String, String>,
    /// Glob over the normalized `x-downstream-service` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// `usecases.<name>`: per-usecase policy.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsecaseConfig {
    /// Which expiration policies inserts may ask for.
    pub expiration: ExpirationRules,
}

/// `usecases.<name>.expiration`.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpirationRules {
    /// Objects that never expire.
    pub manual: PolicyRule,
    /// Time to live.
    pub ttl: PolicyRule,
    /// Time to idle.
    pub tti: PolicyRule,
}

/// Whether one expiration kind is allowed, and its longest duration.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyRule {
    /// Whether inserts may use it.
    pub allowed: bool,
    /// The longest duration allowed (TTL and TTI only).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "crd",
        schemars(with = "Option<String>", regex(pattern = crate::crd::DURATION_PATTERN))
    )]
    pub max: Option<Duration>,
}

impl Default for PolicyRule {
    fn default() -> Self {
        Self {
            allowed: true,
            max: None,
        }
    }
}
