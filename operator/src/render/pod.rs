//! The server pod template shared by the Deployment and the StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities as LinuxCapabilities, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle,
    LifecycleHandler, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::{self, CONFIG_DIR, CONFIG_KEY, DATA_DIR, HTTP_PORT};
use super::service::PORT_NAME;
use super::{config_map_name, Context, RenderError, CONFIG_HASH_ANNOTATION};
use crate::api::StorageBackend;

/// Name of the server container.
pub const CONTAINER: &str = "server";
/// Name of the data volume (and of the StatefulSet claim template).
pub const DATA_VOLUME: &str = "data";
/// Volume holding the Google service-account key (Bigtable `credentialsSecret`).
pub const GOOGLE_CREDENTIALS_VOLUME: &str = "google-credentials";
/// Where that volume is mounted (read-only).
pub const GOOGLE_CREDENTIALS_DIR: &str = "/var/run/secrets/strata/google";
/// File name of the key inside that directory (`GOOGLE_APPLICATION_CREDENTIALS`).
pub const GOOGLE_CREDENTIALS_FILE: &str = "credentials.json";
/// Unprivileged uid/gid the server runs as (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;
/// Extra seconds of termination grace beyond drain delay + shutdown timeout.
const GRACE_SLACK_SECS: u64 = 5;

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn humantime_secs(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The pod template: hardened container, probes, drain hook, volumes and scheduling.
pub fn render(ctx: &Context<'_>, config_hash: &str) -> Result<PodTemplateSpec, RenderError> {
    let spec = &ctx.owner.spec;
    let drain = config::drain_delay(spec)?;
    let shutdown = config::server_config(spec)?.http.shutdown_timeout;
    let grace =
        drain.as_secs_f64().ceil() as u64 + shutdown.as_secs_f64().ceil() as u64 + GRACE_SLACK_SECS;

    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(&ctx.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if spec.storage.backend == StorageBackend::Filesystem {
        mounts.push(VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        });
        let persistent = spec
            .storage
            .filesystem
            .as_ref()
            .is_some_and(|f| f.persistence.is_some());
        if !persistent {
            volumes.push(Volume {
                name: DATA_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
        }
    }

    let mut env = Vec::new();
    if let Some(secret) = spec
        .storage
        .bigtable
        .as_ref()
        .and_then(|b| b.credentials_secret.as_ref())
    {
        mounts.push(VolumeMount {
            name: GOOGLE_CREDENTIALS_VOLUME.into(),
            mount_path: GOOGLE_CREDENTIALS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: GOOGLE_CREDENTIALS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: GOOGLE_CREDENTIALS_FILE.into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        env.push(EnvVar {
            name: "GOOGLE_APPLICATION_CREDENTIALS".into(),
            value: Some(format!(
                "{GOOGLE_CREDENTIALS_DIR}/{GOOGLE_CREDENTIALS_FILE}"
            )),
            ..EnvVar::default()
        });
    }
    if let Some(secret) = spec
        .storage
        .s3compatible
        .as_ref()
        .and_then(|s| s.credentials_secret.as_ref())
    {
        for (var, key) in [
            ("AWS_ACCESS_KEY_ID", &secret.access_key_id_key),
            ("AWS_SECRET_ACCESS_KEY", &secret.secret_access_key_key),
        ] {
            env.push(EnvVar {
                name: var.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: key.clone(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
        }
    }

    for (volume, mount) in super::auth::volumes(spec) {
        volumes.push(volume);
        mounts.push(mount);
    }

    let container = Container {
        env: (!env.is_empty()).then_some(env),
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec!["strata-server".into()]),
        args: Some(vec![
            "run".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: i32::from(HTTP_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // A restart replays the filesystem backend's object log before the server listens;
        // liveness only starts once `/health` first answers, so a long replay (up to an
        // hour) is never mistaken for a hung server.
        startup_probe: Some(http_probe("/health", 5, 720)),
        liveness_probe: Some(http_probe("/health", 10, 3)),
        readiness_probe: Some(http_probe("/ready", 5, 2)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    // Same config as `run`, so `down` creates the drain file `run` watches.
                    command: Some(vec![
                        "strata-server".into(),
                        "down".into(),
                        "--config".into(),
                        format!("{CONFIG_DIR}/{CONFIG_KEY}"),
                        "--wait".into(),
                        humantime_secs(drain),
                    ]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(LinuxCapabilities {
                drop: Some(vec!["ALL".into()]),
                ..LinuxCapabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    let topology = spec
        .topology_spread_constraints
        .iter()
        .cloned()
        .map(|mut c| {
            if c.label_selector.is_none() {
                c.label_selector = Some(LabelSelector {
                    match_labels: Some(ctx.selector_labels()),
                    ..LabelSelector::default()
                });
            }
            c
        })
        .collect::<Vec<_>>();

    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(ctx.labels()),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_owned(),
                config_hash.to_owned(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(grace as i64),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            image_pull_secrets: (!spec.image_pull_secrets.is_empty())
                .then(|| spec.image_pull_secrets.clone()),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            affinity: spec.affinity.clone(),
            topology_spread_constraints: (!topology.is_empty()).then_some(topology),
            ..PodSpec::default()
        }),
    })
}
