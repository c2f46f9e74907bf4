//! The `auth` configuration section (api §6.5), with upstream's key names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Permission;

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
