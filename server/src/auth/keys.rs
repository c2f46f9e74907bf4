//! The key directory: every configured key version, parsed once at start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, VerifyingKey};

use super::PermissionSet;
use strata_types::access::AuthConfig;

/// Why the configured keys cannot be used; the message names the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("auth.keys.{kid}: cannot read key file {path}: {source}")]
    Read {
        /// The key id.
        kid: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file is not an Ed25519 SPKI PEM public key.
    #[error(
        "auth.keys.{kid}: {path} is not an Ed25519 public key in SPKI PEM form \
         (`-----BEGIN PUBLIC KEY-----`; make one with `openssl pkey -in KEY.pem -pubout`): {message}"
    )]
    Parse {
        /// The key id.
        kid: String,
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key id without any key file.
    #[error("auth.keys.{kid}: key_files must list at least one public key file")]
    NoFiles {
        /// The key id.
        kid: String,
    },
    /// Enforcement is on but no key could ever verify a request.
    #[error("{}", strata_types::access::ENFORCED_WITHOUT_KEYS)]
    EnforcedWithoutKeys,
}

/// One key id's versions and permission ceiling.
#[derive(Debug, Clone)]
pub struct Key {
    /// Versions in configured order; verification tries them in turn.
    pub versions: Vec<VerifyingKey>,
    /// The most this key grants.
    pub max_permissions: PermissionSet,
}

impl Key {
    /// Whether `signature` over `message` verifies (strict Ed25519) under any version.
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        self.versions
            .iter()
            .any(|key| key.verify_strict(message, signature).is_ok())
    }
}

/// Every configured key by id. Immutable after start.
#[derive(Debug, Clone, Default)]
pub struct KeyDirectory {
    keys: BTreeMap<String, Key>,
}

impl KeyDirectory {
    /// Reads and parses every key file of `config`; fails naming the key at fault.
    pub fn load(config: &AuthConfig) -> Result<Self, KeyError> {
        if config.enforce && config.keys.is_empty() {
            return Err(KeyError::EnforcedWithoutKeys);
        }
        let mut keys = BTreeMap::new();
        for (kid, key) in &config.keys {
            if key.key_files.is_empty() {
                return Err(KeyError::NoFiles { kid: kid.clone() });
            }
            let mut versions = Vec::with_capacity(key.key_files.len());
            for path in &key.key_files {
                let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    kid: kid.clone(),
                    path: path.clone(),
                    source,
                })?;
                let parsed =
                    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError::Parse {
                        kid: kid.clone(),
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                versions.push(parsed);
            }
            keys.insert(
                kid.clone(),
                Key {
                    versions,
                    max_permissions: PermissionSet::from_iter(key.max_permissions.iter().copied()),
                },
            );
        }
        Ok(Self { keys })
    }

    /// Builds a directory from already parsed keys (tests, fuzzing).
    pub fn from_keys(keys: impl IntoIterator<Item = (String, Key)>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// The key with id `kid`.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
