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
    fn new(field: &str, message: impl Into<String>) -> Self {
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
    if spec.storage.backend == StorageBackend::Memory && spec.storage.filesystem.is_some() {
        errors.push(ValidationError::new(
            "storage.filesystem",
            "only valid with storage.type filesystem; remove it or switch the type",
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoscalingSpec, LimitsSpec, PodDisruptionBudgetSpec};

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
        let mut spec = StorageServiceSpec::minimal();
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
