//! Object metadata: what travels in `content-type`, `content-encoding`, `x-sn-*` and
//! `x-snme-*` headers, and what the backends store beside the payload.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::ExpirationPolicy;

/// How the stored payload is encoded (recorded only; the server never transcodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    /// `content-encoding: zstd`.
    Zstd,
    /// `content-encoding: gzip`.
    Gzip,
}

/// Everything known about an object except its payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// Media type; `application/octet-stream` when the client sent none.
    pub content_type: String,
    /// Stored encoding, if any.
    pub compression: Option<Compression>,
    /// Expiry policy.
    pub expiration: ExpirationPolicy,
    /// Set by the server at insert (whole seconds, rounded up).
    pub time_created: Option<SystemTime>,
    /// Deadline for TTL/TTI objects.
    pub time_expires: Option<SystemTime>,
    /// `x-sn-origin`, decoded.
    pub origin: Option<String>,
    /// `x-sn-filename`, decoded.
    pub filename: Option<String>,
    /// `x-snme-<name>` entries; names lowercased, values decoded.
    pub custom: BTreeMap<String, String>,
    /// Stored payload size in bytes, when known.
    pub size: Option<u64>,
}

impl Default for Metadata {
    fn default() -> Self {
        Self {
            content_type: "application/octet-stream".to_owned(),
            compression: None,
            expiration: ExpirationPolicy::Manual,
            time_created: None,
            time_expires: None,
            origin: None,
            filename: None,
            custom: BTreeMap::new(),
            size: None,
        }
    }
}
