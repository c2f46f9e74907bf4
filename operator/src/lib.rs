//! Strata operator: reconciles `StorageService` resources (`strata.dev/v1alpha1`) into
//! running storage servers.
//!
//! Layout follows DESIGN §1: [`api`] holds the CRD types (shared with the dashboard),
//! [`render`] turns a spec into desired child objects with pure functions, and
//! `controller` does the (small) Kubernetes I/O.

pub mod api;
pub mod render;
