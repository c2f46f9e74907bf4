//! The `StorageService` custom resource, defined in the contracts crate
//! ([`strata_types::crd`]) and re-exported here under its historical path.

pub use strata_types::crd::*;
