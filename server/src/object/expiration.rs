//! Expiration policies (manual, TTL, TTI), their header grammar and deadline arithmetic.

use std::time::Duration;

/// How an object expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ExpirationPolicy {
    /// Never expires.
    #[default]
    Manual,
    /// Expires `duration` after creation.
    TimeToLive(Duration),
    /// Expires `duration` after the last access.
    TimeToIdle(Duration),
}
