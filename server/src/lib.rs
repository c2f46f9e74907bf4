//! Strata storage server: the objectstore v1 HTTP API over spawned, panic-isolated,
//! two-tier-limited storage operations.

pub mod config;
pub mod metrics;
pub mod object;
