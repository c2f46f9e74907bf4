//! Strata contracts: the types the storage server, the operator and the dashboard agree
//! on, and nothing else (no I/O, no HTTP stack, no Kubernetes client).
//!
//! - [`config`]: the server's configuration schema (what the operator renders and the
//!   server loads), with defaults and the cross-field rules.
//! - [`access`]: the access-control sections (`auth`, `rate_limits`, `killswitches`,
//!   `usecases`).
//! - [`metrics`]: metric names and label values (DESIGN §2.6).
//! - `crd` (feature `crd`): the `StorageService` custom resource and the labels that
//!   find its pods.

pub mod access;
pub mod config;
#[cfg(feature = "crd")]
pub mod crd;
pub mod metrics;
