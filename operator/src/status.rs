//! Pure status computation: what the controller observed in, `StorageServiceStatus` out.
//!
//! Kept apart from the I/O so every condition (and its wording, which on-call
//! engineers act on) is unit-tested, and so "status unchanged" is a plain equality.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{StorageService, StorageServiceStatus};
use crate::render::{endpoint, selector_string};

/// Condition type: every desired pod is up to date and ready.
pub const READY: &str = "Ready";
/// Condition type: a rollout or scale is under way.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something needs a human.
pub const DEGRADED: &str = "Degraded";

/// The workload as last read from the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservedWorkload {
    /// Not found (not created yet, or deleted).
    Missing,
    /// A Deployment.
    Deployment(Box<Deployment>),
    /// A StatefulSet.
    StatefulSet(Box<StatefulSet>),
}

/// Everything status is derived from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Why the spec could not be rendered, if it could not.
    pub invalid: Option<String>,
    /// Why applying children failed, if it did.
    pub apply_error: Option<String>,
    /// The workload.
    pub workload: ObservedWorkload,
    /// Server pods (read only when not everything is ready, for diagnosis).
    pub pods: Vec<Pod>,
    /// Data claims (StatefulSet only, read only when not ready).
    pub claims: Vec<PersistentVolumeClaim>,
    /// Hash of the config the children were rendered with.
    pub config_hash: Option<String>,
    /// Why a Secret the pods need is unusable (missing, or lacking a key file); nothing
    /// was applied so that pods do not crash-loop on a missing mount.
    pub secret_missing: Option<String>,
}

/// Appended to the `Ready` message of services whose spec says `auth.enforce: false`.
pub const ACCESS_CONTROL_OFF: &str = "access control is off (spec.auth.enforce is false): anyone who can reach the service can read, overwrite and delete every object";

struct Counts {
    desired: i32,
    current: i32,
    updated: i32,
    ready: i32,
    observed_current: bool,
    stuck: bool,
}

fn counts(obj: &StorageService, w: &ObservedWorkload) -> Option<Counts> {
    let desired = obj.spec.replicas;
    match w {
        ObservedWorkload::Missing => None,
        ObservedWorkload::Deployment(d) => {
            let s = d.status.clone().unwrap_or_default();
            let gen = d.metadata.generation.unwrap_or(0);
            let stuck = s.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            });
            Some(Counts {
                desired,
                current: s.replicas.unwrap_or(0),
                updated: s.updated_replicas.unwrap_or(0),
                ready: s.ready_replicas.unwrap_or(0),
                observed_current: s.observed_generation.unwrap_or(0) >= gen,
                stuck,
            })
        }
        ObservedWorkload::StatefulSet(st) => {
            let s = st.status.clone().unwrap_or_default();
            let gen = st.metadata.generation.unwrap_or(0);
            Some(Counts {
                desired,
                current: s.replicas,
                updated: s.updated_replicas.unwrap_or(0),
                ready: s.ready_replicas.unwrap_or(0),
                observed_current: s.observed_generation.unwrap_or(0) >= gen,
                stuck: false,
            })
        }
    }
}

/// Human-actionable problems found on the pods and claims, most specific first.
fn diagnose(obj: &StorageService, observed: &Observed) -> Option<(String, String)> {
    let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
    for claim in &observed.claims {
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Pending") {
            let name = claim.metadata.name.as_deref().unwrap_or("?");
            let class = claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
                .unwrap_or("the cluster default");
            return Some((
                "VolumePending".into(),
                format!(
                    "PersistentVolumeClaim {ns}/{name} is Pending: check that StorageClass {class} exists and can provision (kubectl describe pvc -n {ns} {name})"
                ),
            ));
        }
    }
    for pod in &observed.pods {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("?");
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for cs in statuses {
            let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = waiting.reason.as_deref().unwrap_or_default();
            match reason {
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" => {
                    let secrets = obj
                        .spec
                        .image_pull_secrets
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>();
                    let hint = if secrets.is_empty() {
                        "if the registry is private, add spec.imagePullSecrets".to_owned()
                    } else {
                        format!(
                            "check that Secret(s) {} exist in namespace {ns} and hold valid registry credentials",
                            secrets.join(", ")
                        )
                    };
                    return Some((
                        "ImagePullFailed".into(),
                        format!(
                            "pod {pod_name} cannot pull image {}: {reason}; check spec.image; {hint}",
                            obj.spec.image
                        ),
                    ));
                }
                "CrashLoopBackOff" => {
                    return Some((
                        "CrashLoop".into(),
                        format!(
                            "pod {pod_name} keeps crashing: read its logs (kubectl logs -n {ns} {pod_name} --previous)"
                        ),
                    ));
                }
                "CreateContainerConfigError" => {
                    return Some((
                        "ContainerConfigError".into(),
                        format!(
                            "pod {pod_name} cannot start: {} (a referenced Secret or ConfigMap is missing?)",
                            waiting.message.as_deref().unwrap_or(reason)
                        ),
                    ));
                }
                _ => {}
            }
        }
        let unschedulable = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        if let Some(c) = unschedulable {
            return Some((
                "Unschedulable".into(),
                format!(
                    "pod {pod_name} cannot be scheduled: {}; check resources, nodeSelector, tolerations and affinity",
                    c.message.as_deref().unwrap_or("no message")
                ),
            ));
        }
    }
    None
}

fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// Computes the status. `now` stamps conditions whose status flipped; unchanged
/// conditions keep their old transition time so an unchanged world is an equal status.
pub fn compute(obj: &StorageService, observed: &Observed, now: Time) -> StorageServiceStatus {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    let old = obj.status.clone().unwrap_or_default();
    let c = counts(obj, &observed.workload);
    let (replicas, ready) = c.as_ref().map_or((0, 0), |c| (c.current, c.ready));
    let desired = obj.spec.replicas;

    let mut conditions = Vec::new();
    if let Some(msg) = &observed.invalid {
        conditions.push(cond(
            READY,
            false,
            "InvalidSpec",
            format!("not rolled out: {msg}"),
            generation,
        ));
        conditions.push(cond(
            PROGRESSING,
            false,
            "InvalidSpec",
            "waiting for the spec to be fixed".into(),
            generation,
        ));
        conditions.push(cond(
            DEGRADED,
            true,
            "InvalidSpec",
            format!("{msg}; fix the StorageService spec"),
            generation,
        ));
    } else {
        let all_ready = c.as_ref().is_some_and(|c| {
            c.observed_current
                && c.updated >= c.desired
                && c.ready >= c.desired
                && c.current == c.desired
        });
        let ready_cond = match &c {
            None => cond(
                READY,
                false,
                "WorkloadMissing",
                "server workload not created yet".into(),
                generation,
            ),
            Some(_) if all_ready && desired == 0 => cond(
                READY,
                true,
                "ScaledToZero",
                "replicas is 0: nothing serves requests".into(),
                generation,
            ),
            Some(c) if all_ready => cond(
                READY,
                true,
                "AllReplicasReady",
                format!(
                    "{} of {} server pods ready at {}",
                    c.ready,
                    c.desired,
                    endpoint(&name, &ns)
                ),
                generation,
            ),
            Some(c) => cond(
                READY,
                false,
                "ReplicasNotReady",
                format!("{} of {} server pods ready", c.ready, c.desired),
                generation,
            ),
        };
        let mut ready_cond = ready_cond;
        if obj.spec.access_control_off() {
            ready_cond.message = format!("{}; {ACCESS_CONTROL_OFF}", ready_cond.message);
        }
        conditions.push(ready_cond);
        let progressing = if obj.spec.paused {
            cond(
                PROGRESSING,
                false,
                "Paused",
                "spec.paused is true: the operator changes no child object; set it to false to resume".into(),
                generation,
            )
        } else {
            match &c {
                Some(c) if all_ready => cond(
                    PROGRESSING,
                    false,
                    "RolloutComplete",
                    format!("{} pods up to date", c.updated),
                    generation,
                ),
                Some(c) => cond(
                    PROGRESSING,
                    true,
                    "RollingOut",
                    format!(
                        "{} of {} pods updated, {} ready",
                        c.updated.min(c.desired),
                        c.desired,
                        c.ready
                    ),
                    generation,
                ),
                None => cond(
                    PROGRESSING,
                    true,
                    "Creating",
                    "creating the server workload".into(),
                    generation,
                ),
            }
        };
        conditions.push(progressing);
        let degraded = if let Some(msg) = &observed.secret_missing {
            cond(
                DEGRADED,
                true,
                "SecretMissing",
                format!("{msg}; no change was rolled out until it exists"),
                generation,
            )
        } else if let Some(err) = &observed.apply_error {
            cond(
                DEGRADED,
                true,
                "ApplyFailed",
                format!("applying children failed (retrying with backoff): {err}"),
                generation,
            )
        } else if let Some((reason, msg)) = (!all_ready).then(|| diagnose(obj, observed)).flatten()
        {
            cond(DEGRADED, true, &reason, msg, generation)
        } else if c.as_ref().is_some_and(|c| c.stuck) {
            cond(
                DEGRADED,
                true,
                "RolloutStuck",
                format!(
                    "the rollout exceeded its progress deadline; inspect the pods (kubectl get pods -n {ns} -l {})",
                    selector_string(&name)
                ),
                generation,
            )
        } else {
            cond(
                DEGRADED,
                false,
                "AsExpected",
                "no problems detected".into(),
                generation,
            )
        };
        conditions.push(degraded);
    }
    for c in &mut conditions {
        c.last_transition_time = match old.condition(&c.type_) {
            Some(prev) if prev.status == c.status => prev.last_transition_time.clone(),
            _ => now.clone(),
        };
    }

    StorageServiceStatus {
        observed_generation: generation,
        conditions,
        replicas,
        ready_replicas: ready,
        replicas_summary: Some(format!("{ready}/{desired}")),
        selector: Some(selector_string(&name)),
        endpoint: Some(endpoint(&name, &ns)),
        config_hash: observed.config_hash.clone().or(old.config_hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
    use k8s_openapi::api::core::v1::LocalObjectReference;
    use serde_json::json;

    fn obj() -> StorageService {
        let mut o = StorageService::new("s", crate::api::StorageServiceSpec::minimal());
        o.metadata.namespace = Some("ns".into());
        o.metadata.generation = Some(3);
        o
    }

    fn observed(workload: ObservedWorkload) -> Observed {
        Observed {
            invalid: None,
            apply_error: None,
            workload,
            pods: vec![],
            claims: vec![],
            config_hash: None,
            secret_missing: None,
        }
    }

    fn deployment(ready: i32, stuck: bool) -> ObservedWorkload {
        let mut d = Deployment::default();
        d.metadata.generation = Some(1);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(1),
            updated_replicas: Some(1),
            ready_replicas: Some(ready),
            conditions: stuck.then(|| {
                vec![DeploymentCondition {
                    type_: "Progressing".into(),
                    status: "False".into(),
                    reason: Some("ProgressDeadlineExceeded".into()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        ObservedWorkload::Deployment(Box::new(d))
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap())
    }

    fn get<'a>(s: &'a StorageServiceStatus, t: &str) -> &'a Condition {
        s.condition(t).unwrap()
    }

    #[test]
    fn ready_when_all_pods_ready() {
        let s = compute(&obj(), &observed(deployment(1, false)), now());
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, PROGRESSING).reason, "RolloutComplete");
        assert_eq!(get(&s, DEGRADED).status, "False");
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.replicas_summary.as_deref(), Some("1/1"));
    }

    #[test]
    fn image_pull_failure_names_the_secret() {
        let mut o = obj();
        o.spec.image_pull_secrets = vec![LocalObjectReference {
            name: "regcred".into(),
        }];
        let mut obs = observed(deployment(0, false));
        obs.pods = vec![serde_json::from_value(json!({
            "metadata": {"name": "s-abc"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff"}}
            }]}
        }))
        .unwrap()];
        let s = compute(&o, &obs, now());
        let d = get(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "ImagePullFailed")
        );
        assert!(
            d.message.contains("regcred") && d.message.contains("s-abc"),
            "{}",
            d.message
        );
    }

    #[test]
    fn crash_loop_points_at_logs() {
        let mut obs = observed(deployment(0, false));
        obs.pods = vec![serde_json::from_value(json!({
            "metadata": {"name": "s-1"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}
            }]}
        }))
        .unwrap()];
        let d = compute(&obj(), &obs, now()).conditions[2].clone();
        assert_eq!(d.reason, "CrashLoop");
        assert!(d.message.contains("kubectl logs -n ns s-1 --previous"));
    }

    #[test]
    fn stuck_rollout_is_degraded() {
        let s = compute(&obj(), &observed(deployment(0, true)), now());
        assert_eq!(get(&s, DEGRADED).reason, "RolloutStuck");
        assert_eq!(get(&s, READY).status, "False");
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let mut o = obj();
        let first = compute(&o, &observed(deployment(1, false)), now());
        o.status = Some(first.clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(9_999).unwrap());
        let second = compute(&o, &observed(deployment(1, false)), later.clone());
        assert_eq!(
            first, second,
            "nothing changed, so the status must be equal"
        );
        let third = compute(&o, &observed(deployment(0, false)), later.clone());
        assert_eq!(get(&third, READY).last_transition_time, later);
    }

    #[test]
    fn ready_message_says_when_access_control_is_off() {
        let s = compute(&obj(), &observed(deployment(1, false)), now());
        assert!(get(&s, READY).message.contains(ACCESS_CONTROL_OFF), "{s:?}");
        let mut o = obj();
        o.spec.auth =
            Some(serde_json::from_value(json!({"keys": {"k": {"secretName": "k"}}})).unwrap());
        let s = compute(&o, &observed(deployment(1, false)), now());
        assert_eq!(get(&s, READY).status, "True");
        assert!(!get(&s, READY).message.contains("access control"), "{s:?}");
    }

    #[test]
    fn missing_secret_is_degraded_and_named() {
        let mut obs = observed(deployment(1, false));
        obs.secret_missing = Some("Secret ns/relay-keys (auth.keys.relay) does not exist".into());
        let s = compute(&obj(), &obs, now());
        let d = get(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "SecretMissing")
        );
        assert!(d.message.contains("ns/relay-keys"), "{d:?}");
        // the pods that run keep serving
        assert_eq!(get(&s, READY).status, "True");
    }
}
