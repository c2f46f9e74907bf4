//! Strata operator: reconciles `StorageService` resources (`strata.dev/v1alpha1`) into
//! running storage servers.
//!
//! Layout follows DESIGN §1: [`api`] re-exports the CRD types from `strata-types` (shared
//! with the dashboard),
//! [`render`] turns a spec into desired child objects with pure functions,
//! [`status`] describes what was observed, and [`controller`] does the (small)
//! Kubernetes I/O. [`rbac`] lists the permissions that I/O needs.

pub mod api;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod render;
pub mod server;
pub mod status;
