//! Access control in the `StorageService` spec: `auth` (keys by Secret reference only),
//! `killswitches`, `rateLimits` and `usecases`.
//!
//! Killswitches and use-case policy reuse the server's types from [`crate::access`]
//! unchanged (their keys are single words, so camelCase and the server's snake_case
//! agree); rate limits have camelCase twins here that convert into the server's types.
//! Key material never appears in the spec: each key id names a Secret whose files the
//! operator mounts read-only, and the rendered server config only holds their paths.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::access::{
    BandwidthConfig, Permission, RateLimitsConfig, ThroughputConfig, ThroughputRule,
};

/// What to write when `auth` is missing, shown by the API server (CEL) and the operator.
pub const AUTH_REQUIRED: &str = "spec.auth is required: write `auth: {enforce: false}` to run without access control (anyone who can reach the service may read, overwrite and delete every object), or list verification keys under auth.keys (kid: {secretName: <Secret with the Ed25519 public key PEM>, maxPermissions: [object.read, ...]})";

/// Why `enforce: true` without keys is refused (the server would refuse to start).
pub const ENFORCED_WITHOUT_KEYS: &str = "auth.enforce is true but auth.keys is empty, so every request would be refused; add a key (kid: {secretName: <Secret with the Ed25519 public key PEM>, maxPermissions: [...]}) or write `auth: {enforce: false}` to run without access control";

/// File name used when a key lists no `keyFiles`.
pub const DEFAULT_KEY_FILE: &str = "public.pem";

/// `spec.auth`: whether failures are enforced and which keys verify tokens.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("(has(self.enforce) && !self.enforce) || (has(self.keys) && size(self.keys) > 0)").message(ENFORCED_WITHOUT_KEYS)
)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Reject requests whose credentials fail (default true, as upstream). `false`
    /// turns access control off; with keys it still verifies, logs and counts.
    #[serde(default = "default_enforce")]
    pub enforce: bool,
    /// Verification keys by key id (the JWT `kid` / pre-signed `os_kid`). Key ids are
    /// letters, digits, `.`, `_` and `-`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, AuthKeySpec>,
}

fn default_enforce() -> bool {
    true
}

impl AuthSpec {
    /// Access control off, as a spec must say explicitly when it has no keys.
    pub fn disabled() -> Self {
        Self {
            enforce: false,
            keys: BTreeMap::new(),
        }
    }
}

/// One key id: the Secret holding its public key versions and the most it may grant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthKeySpec {
    /// Secret (same namespace) holding the Ed25519 public keys as SPKI PEM files.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// File names (Secret keys) of the key versions, tried in this order; default
    /// `[public.pem]`. List the newest first when rotating.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[-._a-zA-Z0-9]+$")))]
    pub key_files: Vec<String>,
    /// Upper bound on what tokens signed with this key grant; empty grants nothing.
    #[serde(default)]
    pub max_permissions: Vec<Permission>,
}

impl AuthKeySpec {
    /// The file names to mount, with the default applied.
    pub fn files(&self) -> Vec<String> {
        if self.key_files.is_empty() {
            vec![DEFAULT_KEY_FILE.to_owned()]
        } else {
            self.key_files.clone()
        }
    }
}

/// `spec.rateLimits`: throughput and bandwidth buckets (server `rate_limits`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsSpec {
    /// Request-rate token buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<ThroughputSpec>,
    /// Byte-rate GCRA buckets, charged while payloads stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
}

/// `rateLimits.throughput` (server `rate_limits.throughput`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputSpec {
    /// Requests per second over everything; unset means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub global_rps: Option<u32>,
    /// Extra tokens: each bucket holds its rate plus this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Per-usecase bucket, as a percentage of `globalRps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub usecase_pct: Option<u8>,
    /// Per-full-scope-list bucket, as a percentage of `globalRps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub scope_pct: Option<u8>,
    /// Rules with one shared bucket each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ThroughputRuleSpec>,
}

/// One throughput rule; applies when all its conditions match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputRuleSpec {
    /// Only this usecase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usecase: Option<String>,
    /// Only requests carrying all these `[name, value]` scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 2, max = 2)))]
    pub scopes: Vec<Vec<String>>,
    /// Requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<u32>,
    /// Percentage of `globalRps`; the limit is the smaller of the two when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub pct: Option<u8>,
}

/// `rateLimits.bandwidth` (server `rate_limits.bandwidth`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthSpec {
    /// Bytes per second over everything; unset means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub global_bps: Option<u64>,
    /// Per-usecase bucket, as a percentage of `globalBps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub usecase_pct: Option<u8>,
    /// Per-full-scope-list bucket, as a percentage of `globalBps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub scope_pct: Option<u8>,
    /// Debt (milliseconds of the rate) a bucket may build up; server default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_ms: Option<u64>,
    /// Count would-be rejections without rejecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_only: Option<bool>,
}

impl RateLimitsSpec {
    /// The server's `rate_limits` section; unset fields keep the server's defaults.
    pub fn to_config(&self) -> RateLimitsConfig {
        let mut out = RateLimitsConfig::default();
        if let Some(t) = &self.throughput {
            out.throughput = ThroughputConfig {
                global_rps: t.global_rps,
                burst: t.burst.unwrap_or(out.throughput.burst),
                usecase_pct: t.usecase_pct,
                scope_pct: t.scope_pct,
                rules: t
                    .rules
                    .iter()
                    .map(|r| ThroughputRule {
                        usecase: r.usecase.clone(),
                        scopes: r
                            .scopes
                            .iter()
                            .filter_map(|pair| match pair.as_slice() {
                                [name, value] => Some((name.clone(), value.clone())),
                                _ => None,
                            })
                            .collect(),
                        rps: r.rps,
                        pct: r.pct,
                    })
                    .collect(),
            };
        }
        if let Some(b) = &self.bandwidth {
            let d = BandwidthConfig::default();
            out.bandwidth = BandwidthConfig {
                global_bps: b.global_bps,
                usecase_pct: b.usecase_pct,
                scope_pct: b.scope_pct,
                burst_ms: b.burst_ms.unwrap_or(d.burst_ms),
                report_only: b.report_only.unwrap_or(d.report_only),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_convert_to_the_server_names() {
        let spec: RateLimitsSpec = serde_json::from_value(serde_json::json!({
            "throughput": {"globalRps": 100, "usecasePct": 50,
                "rules": [{"usecase": "attachments", "scopes": [["org", "1"]], "rps": 5}]},
            "bandwidth": {"globalBps": 1000000, "reportOnly": true}
        }))
        .unwrap();
        let yaml = serde_yaml::to_string(&spec.to_config()).unwrap();
        let back: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back["throughput"]["global_rps"], 100);
        assert_eq!(back["throughput"]["usecase_pct"], 50);
        assert_eq!(back["throughput"]["burst"], 0);
        assert_eq!(back["throughput"]["rules"][0]["scopes"][0][0], "org");
        assert_eq!(back["throughput"]["rules"][0]["scopes"][0][1], "1");
        assert_eq!(back["bandwidth"]["global_bps"], 1000000);
        assert_eq!(back["bandwidth"]["report_only"], true);
        assert_eq!(back["bandwidth"]["burst_ms"], 1000);
    }

    #[test]
    fn key_files_default_to_public_pem() {
        let key: AuthKeySpec =
            serde_json::from_value(serde_json::json!({"secretName": "relay"})).unwrap();
        assert_eq!(key.files(), [DEFAULT_KEY_FILE]);
        assert!(key.max_permissions.is_empty());
    }

    #[test]
    fn enforce_defaults_to_true() {
        let auth: AuthSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(auth.enforce);
    }
}
