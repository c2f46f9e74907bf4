//! Semantic checks of a [`StorageServiceSpec`] that the operator repeats in Rust.
//!
//! The CRD carries the same rules as CEL, but objects stored before a rule existed (or
//! applied with validation off) must still end in a `Degraded` condition that names
//! the field, never in a crash loop or a half-applied rollout.

use std::time::Duration;

use super::{StorageBackend, StorageServiceSpec};

/// One thing wrong with a spec; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct ValidationError {
    /// Dotted path below `spec`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Parses a humantime duration as the server does, naming the field on failure.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, ValidationError> {
    humantime::parse_duration(text).map_err(|err| {
        ValidationError::new(
            field,
            format!("`{text}` is not a duration ({err}); use e.g. `250ms`, `5s` or `1m 30s`"),
        )
    })
}

/// Checks every cross-field rule; returns all problems, not just the first.
pub fn validate(spec: &StorageServiceSpec) -> Result<(), Vec<ValidationError>> {
    let mut errors = Vec::new();
    if spec.replicas < 0 {
        errors.push(ValidationError::new("replicas", "must be 0 or more"));
    }
    if spec.image.trim().is_empty() {
        errors.push(ValidationError::new("image", "must name a container image"));
    }
    validate_storage(spec, &mut errors);
    super::validate_access::check(spec, &mut errors);
    if let Some(limits) = &spec.limits {
        if limits.max_requests == Some(0) {
            errors.push(ValidationError::new(
                "limits.maxRequests",
                "must be at least 1 (0 would reject every request)",
            ));
        }
        if limits.queue_depth.unwrap_or(0) > 0 && limits.queue_timeout.is_none() {
            errors.push(ValidationError::new(
                "limits.queueTimeout",
                "limits.queueDepth > 0 needs limits.queueTimeout: say how long a queued operation may wait",
            ));
        }
        if let Some(t) = &limits.queue_timeout {
            if let Err(e) = parse_duration("limits.queueTimeout", t) {
                errors.push(e);
            }
        }
        if let Some(p) = limits.bulk_percent {
            if !(1..=100).contains(&p) {
                errors.push(ValidationError::new(
                    "limits.bulkPercent",
                    format!("must be within 1..=100, got {p}"),
                ));
            }
        }
    }
    if let Some(faults) = &spec.faults {
        for (field, value) in [
            ("faults.panicKeyPrefix", &faults.panic_key_prefix),
            ("faults.delayKeyPrefix", &faults.delay_key_prefix),
        ] {
            if value.as_deref() == Some("") {
                errors.push(ValidationError::new(
                    field,
                    "must not be empty (an empty prefix matches every key); leave it unset instead",
                ));
            }
        }
        match (&faults.delay_key_prefix, &faults.delay) {
            (Some(_), None) => errors.push(ValidationError::new(
                "faults.delay",
                "faults.delayKeyPrefix needs faults.delay (how long matching operations stall)",
            )),
            (_, Some(d)) => match parse_duration("faults.delay", d) {
                Ok(d) if d.is_zero() && faults.delay_key_prefix.is_some() => errors.push(
                    ValidationError::new("faults.delay", "must be greater than zero"),
                ),
                Ok(_) => {}
                Err(e) => errors.push(e),
            },
            (None, None) => {}
        }
    }
    if let Some(lc) = &spec.lifecycle {
        for (field, value) in [
            ("lifecycle.drainDelay", &lc.drain_delay),
            ("lifecycle.shutdownTimeout", &lc.shutdown_timeout),
        ] {
            if let Some(v) = value {
                if let Err(e) = parse_duration(field, v) {
                    errors.push(e);
                }
            }
        }
    }
    let mut floor = spec.replicas;
    if let Some(a) = &spec.autoscaling {
        floor = a.min_replicas;
        if a.min_replicas < 1 {
            errors.push(ValidationError::new(
                "autoscaling.minReplicas",
                "must be at least 1",
            ));
        }
        if a.min_replicas > a.max_replicas {
            errors.push(ValidationError::new(
                "autoscaling.maxReplicas",
                format!(
                    "must be at least autoscaling.minReplicas ({} > {})",
                    a.min_replicas, a.max_replicas
                ),
            ));
        }
        if a.target_cpu_utilization_percentage.is_none() && a.target_in_flight_percentage.is_none()
        {
            errors.push(ValidationError::new(
                "autoscaling",
                "needs at least one target: targetCPUUtilizationPercentage or targetInFlightPercentage",
            ));
        }
    }
    if let Some(pdb) = &spec.pod_disruption_budget {
        if pdb.enabled && pdb.min_available.is_some() == pdb.max_unavailable.is_some() {
            errors.push(ValidationError::new(
                "podDisruptionBudget",
                "set exactly one of minAvailable and maxUnavailable",
            ));
        }
        if let Some(min) = pdb.min_available {
            if pdb.enabled && min > floor {
                errors.push(ValidationError::new(
                    "podDisruptionBudget.minAvailable",
                    format!(
                        "{min} exceeds the replica count ({floor}): no pod could ever be evicted and node drains would hang; lower it or raise replicas"
                    ),
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What to do when a single-node backend is asked to run more than one pod.
pub const SHARED_BACKEND_HINT: &str =
    "use a shared backend (storage.type bigtable, s3compatible or tiered) to run more pods";

fn validate_storage(spec: &StorageServiceSpec, errors: &mut Vec<ValidationError>) {
    let storage = &spec.storage;
    let kind = storage.backend.as_str();
    if storage.backend != StorageBackend::Filesystem && storage.filesystem.is_some() {
        errors.push(ValidationError::new(
            "storage.filesystem",
            "only valid with storage.type filesystem; remove it or switch the type",
        ));
    }
    let wants_bigtable = matches!(
        storage.backend,
        StorageBackend::Bigtable | StorageBackend::Tiered
    );
    let wants_s3 = matches!(
        storage.backend,
        StorageBackend::S3compatible | StorageBackend::Tiered
    );
    match (&storage.bigtable, wants_bigtable) {
        (None, true) => errors.push(ValidationError::new(
            "storage.bigtable",
            format!(
                "storage.type {kind} needs storage.bigtable (projectId, instanceName, tableName)"
            ),
        )),
        (Some(_), false) => errors.push(ValidationError::new(
            "storage.bigtable",
            "only valid with storage.type bigtable or tiered; remove it or switch the type",
        )),
        (Some(bt), true) => {
            for (field, value) in [
                ("storage.bigtable.projectId", &bt.project_id),
                ("storage.bigtable.instanceName", &bt.instance_name),
                ("storage.bigtable.tableName", &bt.table_name),
            ] {
                if value.trim().is_empty() {
                    errors.push(ValidationError::new(field, "must not be empty"));
                }
            }
            if bt.connections == Some(0) {
                errors.push(ValidationError::new(
                    "storage.bigtable.connections",
                    "must be at least 1",
                ));
            }
            if let Some(c) = &bt.credentials_secret {
                secret_ref("storage.bigtable.credentialsSecret", &c.name, errors);
            }
        }
        (None, false) => {}
    }
    match (&storage.s3compatible, wants_s3) {
        (None, true) => errors.push(ValidationError::new(
            "storage.s3compatible",
            format!("storage.type {kind} needs storage.s3compatible (endpoint, bucket)"),
        )),
        (Some(_), false) => errors.push(ValidationError::new(
            "storage.s3compatible",
            "only valid with storage.type s3compatible or tiered; remove it or switch the type",
        )),
        (Some(s3), true) => {
            if !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://")) {
                errors.push(ValidationError::new(
                    "storage.s3compatible.endpoint",
                    format!("`{}` is not an http:// or https:// URL", s3.endpoint),
                ));
            }
            if s3.bucket.trim().is_empty() {
                errors.push(ValidationError::new(
                    "storage.s3compatible.bucket",
                    "must not be empty",
                ));
            }
            if let Some(c) = &s3.credentials_secret {
                secret_ref("storage.s3compatible.credentialsSecret", &c.name, errors);
            }
        }
        (None, false) => {}
    }
    if !storage.backend.is_shared() {
        if spec.replicas > 1 {
            errors.push(ValidationError::new(
                "replicas",
                format!(
                    "storage.type {kind} keeps objects inside one pod, so replicas must be 0 or 1 (got {}); {SHARED_BACKEND_HINT}",
                    spec.replicas
                ),
            ));
        }
        if spec.autoscaling.is_some() {
            errors.push(ValidationError::new(
                "autoscaling",
                format!(
                    "storage.type {kind} keeps objects inside one pod and cannot autoscale; remove autoscaling or {SHARED_BACKEND_HINT}"
                ),
            ));
        }
    }
}

fn secret_ref(field: &str, name: &str, errors: &mut Vec<ValidationError>) {
    if name.trim().is_empty() {
        errors.push(ValidationError::new(
            &format!("{field}.name"),
            "must name a Secret in the StorageService's namespace",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        AutoscalingSpec, BigtableSpec, LimitsSpec, PodDisruptionBudgetSpec, S3CompatibleSpec,
        StorageBackend,
    };

    fn bigtable() -> BigtableSpec {
        BigtableSpec {
            endpoint: None,
            project_id: "p".into(),
            instance_name: "i".into(),
            table_name: "t".into(),
            connections: None,
            create_table: false,
            credentials_secret: None,
        }
    }

    fn s3() -> S3CompatibleSpec {
        S3CompatibleSpec {
            endpoint: "http://minio:9000".into(),
            bucket: "b".into(),
            region: None,
            path_style: None,
            credentials_secret: None,
        }
    }

    /// A valid spec on the tiered (shared) backend.
    fn shared() -> StorageServiceSpec {
        let mut spec = StorageServiceSpec::minimal();
        spec.storage.backend = StorageBackend::Tiered;
        spec.storage.bigtable = Some(bigtable());
        spec.storage.s3compatible = Some(s3());
        spec
    }

    fn autoscaling() -> AutoscalingSpec {
        AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 5,
            target_cpu_utilization_percentage: Some(70),
            target_in_flight_percentage: None,
        }
    }

    #[test]
    fn single_node_backends_refuse_more_than_one_pod() {
        for backend in [StorageBackend::Filesystem, StorageBackend::Memory] {
            let mut spec = StorageServiceSpec::minimal();
            spec.storage.backend = backend;
            spec.replicas = 1;
            assert_eq!(validate(&spec), Ok(()));
            spec.replicas = 2;
            let errs = validate(&spec).unwrap_err();
            assert_eq!(errs[0].field, "replicas");
            assert!(errs[0].message.contains("use a shared backend"), "{errs:?}");
            assert!(errs[0].message.contains("bigtable, s3compatible or tiered"));
            spec.replicas = 1;
            spec.autoscaling = Some(autoscaling());
            let errs = validate(&spec).unwrap_err();
            assert_eq!(errs[0].field, "autoscaling");
            assert!(errs[0].message.contains("use a shared backend"), "{errs:?}");
        }
    }

    #[test]
    fn shared_backends_scale_out_and_autoscale() {
        let mut spec = shared();
        spec.replicas = 7;
        spec.autoscaling = Some(autoscaling());
        assert_eq!(validate(&spec), Ok(()));
        spec.storage.backend = StorageBackend::Bigtable;
        spec.storage.s3compatible = None;
        assert_eq!(validate(&spec), Ok(()));
        spec.storage.backend = StorageBackend::S3compatible;
        spec.storage.bigtable = None;
        spec.storage.s3compatible = Some(s3());
        assert_eq!(validate(&spec), Ok(()));
    }

    #[test]
    fn backend_sections_must_match_the_type() {
        let mut spec = shared();
        spec.storage.s3compatible = None;
        let errs = validate(&spec).unwrap_err();
        assert_eq!(errs[0].field, "storage.s3compatible");
        assert!(errs[0].message.contains("tiered needs"), "{errs:?}");

        let mut spec = StorageServiceSpec::minimal();
        spec.storage.bigtable = Some(bigtable());
        let errs = validate(&spec).unwrap_err();
        assert_eq!(errs[0].field, "storage.bigtable");

        let mut spec = shared();
        spec.storage.s3compatible.as_mut().unwrap().endpoint = "minio:9000".into();
        spec.storage.bigtable.as_mut().unwrap().table_name = " ".into();
        let fields: Vec<_> = validate(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "storage.bigtable.tableName",
                "storage.s3compatible.endpoint"
            ]
        );
    }

    #[test]
    fn minimal_spec_is_valid() {
        assert_eq!(validate(&StorageServiceSpec::minimal()), Ok(()));
    }

    #[test]
    fn queue_depth_needs_timeout() {
        let mut spec = StorageServiceSpec::minimal();
        spec.limits = Some(LimitsSpec {
            queue_depth: Some(10),
            ..Default::default()
        });
        let errs = validate(&spec).unwrap_err();
        assert_eq!(errs[0].field, "limits.queueTimeout");
    }

    #[test]
    fn pdb_min_available_above_replicas() {
        let mut spec = shared();
        spec.replicas = 2;
        spec.pod_disruption_budget = Some(PodDisruptionBudgetSpec {
            enabled: true,
            min_available: Some(3),
            max_unavailable: None,
        });
        let errs = validate(&spec).unwrap_err();
        assert!(errs[0].message.contains("exceeds"), "{errs:?}");
        // autoscaling floor is what counts when autoscaling is on
        spec.autoscaling = Some(AutoscalingSpec {
            min_replicas: 3,
            max_replicas: 5,
            target_cpu_utilization_percentage: Some(70),
            target_in_flight_percentage: None,
        });
        assert_eq!(validate(&spec), Ok(()));
    }

    #[test]
    fn bad_duration_is_named() {
        let mut spec = StorageServiceSpec::minimal();
        spec.limits = Some(LimitsSpec {
            queue_depth: Some(1),
            queue_timeout: Some("soon".into()),
            ..Default::default()
        });
        let errs = validate(&spec).unwrap_err();
        assert!(errs[0].to_string().contains("spec.limits.queueTimeout"));
    }
}
