//! Pure rendering: a `StorageService` in, the desired child objects out.
//!
//! Nothing here does I/O, so every rule about what the cluster should contain is
//! unit-, golden- and property-tested without an API server; the controller only
//! compares and applies what these functions return.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject};
use kube::Resource;
use serde::Serialize;

use crate::api::{validate, StorageService, ValidationError};

pub mod auth;
pub mod config;
pub mod configmap;
pub mod deployment;
pub mod hpa;
pub mod network_policy;
pub mod offline;
pub mod pdb;
pub mod pod;
pub mod prometheus_rule;
pub mod service;
pub mod service_monitor;
pub mod statefulset;

/// Annotation on the pod template carrying the config hash (changes roll pods).
pub const CONFIG_HASH_ANNOTATION: &str = "strata.dev/config-hash";
pub use strata_types::crd::labels::{selector_labels, APP_NAME};
/// `app.kubernetes.io/managed-by` value, also the server-side-apply field manager.
pub const MANAGER: &str = "strata-operator";

/// Why a spec cannot be rendered; shown to users as a `Degraded` condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// The spec breaks one or more cross-field rules.
    #[error("invalid spec: {}", join(.0))]
    Invalid(Vec<ValidationError>),
    /// The server would reject the configuration built from the spec.
    #[error("the server would reject this configuration: {0}")]
    ServerConfig(String),
    /// The object has no name, namespace or uid (not yet stored by the API server).
    #[error("StorageService is missing metadata.{0}")]
    MissingMetadata(&'static str),
}

fn join(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<ValidationError> for RenderError {
    fn from(e: ValidationError) -> Self {
        RenderError::Invalid(vec![e])
    }
}

/// What the cluster offers beyond core Kubernetes; discovered by the controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `monitoring.coreos.com/v1` (ServiceMonitor, PrometheusRule) is served.
    pub monitoring: bool,
}

/// The server workload: a Deployment, or a StatefulSet when data needs a PVC per pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Stateless pods (memory, or filesystem on `emptyDir`).
    Deployment(Box<Deployment>),
    /// Pods with a PersistentVolumeClaim each.
    StatefulSet(Box<StatefulSet>),
}

/// Every desired child of one StorageService.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Server YAML.
    pub config_map: ConfigMap,
    /// Pods.
    pub workload: Workload,
    /// ClusterIP Service in front of the pods.
    pub service: Service,
    /// Disruption budget, unless disabled.
    pub pdb: Option<PodDisruptionBudget>,
    /// Autoscaler, when `autoscaling` is set.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// NetworkPolicy, when `networkPolicy.enabled`.
    pub network_policy: Option<NetworkPolicy>,
    /// ServiceMonitor, when requested and the API exists.
    pub service_monitor: Option<DynamicObject>,
    /// PrometheusRule, when requested and the API exists.
    pub prometheus_rule: Option<DynamicObject>,
    /// Digest of the server YAML (also on the pod template).
    pub config_hash: String,
}

/// One desired object in the uniform shape the controller applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// Which API it belongs to.
    pub resource: ApiResource,
    /// Object name (namespace is the owner's).
    pub name: String,
    /// The full object as JSON, `apiVersion` and `kind` included (SSA needs them).
    pub object: serde_json::Value,
}

/// Every child kind the operator may create, so that children no longer desired
/// (HPA switched off, Deployment replaced by a StatefulSet) can be found and removed.
pub fn managed_resources(caps: Capabilities) -> Vec<ApiResource> {
    let mut kinds = vec![
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
    ];
    if caps.monitoring {
        kinds.push(service_monitor::api_resource());
        kinds.push(prometheus_rule::api_resource());
    }
    kinds
}

impl Rendered {
    /// The children in apply order (config before the pods that mount it).
    pub fn children(&self) -> Vec<Child> {
        let mut out = vec![typed_child(&self.config_map)];
        out.push(match &self.workload {
            Workload::Deployment(d) => typed_child(d.as_ref()),
            Workload::StatefulSet(s) => typed_child(s.as_ref()),
        });
        out.push(typed_child(&self.service));
        if let Some(p) = &self.pdb {
            out.push(typed_child(p));
        }
        if let Some(h) = &self.hpa {
            out.push(typed_child(h));
        }
        if let Some(n) = &self.network_policy {
            out.push(typed_child(n));
        }
        if let Some(sm) = &self.service_monitor {
            out.push(dynamic_child(sm, service_monitor::api_resource()));
        }
        if let Some(pr) = &self.prometheus_rule {
            out.push(dynamic_child(pr, prometheus_rule::api_resource()));
        }
        out
    }

    /// Metadata of every child, for label/owner checks.
    pub fn metas(&self) -> Vec<&ObjectMeta> {
        let mut out = vec![&self.config_map.metadata];
        out.push(match &self.workload {
            Workload::Deployment(d) => &d.metadata,
            Workload::StatefulSet(s) => &s.metadata,
        });
        out.push(&self.service.metadata);
        out.extend(self.pdb.iter().map(|p| &p.metadata));
        out.extend(self.hpa.iter().map(|h| &h.metadata));
        out.extend(self.network_policy.iter().map(|n| &n.metadata));
        out.extend(self.service_monitor.iter().map(|s| &s.metadata));
        out.extend(self.prometheus_rule.iter().map(|s| &s.metadata));
        out
    }
}

fn typed_child<K>(obj: &K) -> Child
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let mut object = serde_json::to_value(obj).expect("k8s objects serialize");
    object["apiVersion"] = K::api_version(&()).into();
    object["kind"] = K::kind(&()).into();
    Child {
        resource: ApiResource::erase::<K>(&()),
        name: obj.meta().name.clone().unwrap_or_default(),
        object,
    }
}

fn dynamic_child(obj: &DynamicObject, resource: ApiResource) -> Child {
    let object = serde_json::to_value(obj).expect("dynamic objects serialize");
    Child {
        name: obj.metadata.name.clone().unwrap_or_default(),
        resource,
        object,
    }
}

/// Identity and shared metadata of one StorageService's children.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The owner.
    pub owner: &'a StorageService,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Controller owner reference placed on every child.
    pub owner_ref: OwnerReference,
}

impl<'a> Context<'a> {
    fn new(owner: &'a StorageService) -> Result<Self, RenderError> {
        let name = owner
            .metadata
            .name
            .clone()
            .ok_or(RenderError::MissingMetadata("name"))?;
        let namespace = owner
            .metadata
            .namespace
            .clone()
            .ok_or(RenderError::MissingMetadata("namespace"))?;
        let owner_ref = owner
            .controller_owner_ref(&())
            .ok_or(RenderError::MissingMetadata("uid"))?;
        Ok(Self {
            owner,
            name,
            namespace,
            owner_ref,
        })
    }

    /// Labels that select this service's pods (stable for the object's lifetime).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        selector_labels(&self.name)
    }

    /// The recommended `app.kubernetes.io/*` labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/component".into(), "storage".into());
        labels.insert("app.kubernetes.io/part-of".into(), "strata".into());
        labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
        if let Some(version) = image_version_label(&self.owner.spec.image) {
            labels.insert("app.kubernetes.io/version".into(), version);
        }
        labels
    }

    /// Metadata for a child called `name`: namespace, labels, owner reference.
    pub fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The label selector string for the scale subresource and `kubectl -l`.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The image tag as a label value, when it is one (≤ 63 chars of `[A-Za-z0-9._-]`,
/// alphanumeric at both ends); digests and odd tags get no version label.
fn image_version_label(image: &str) -> Option<String> {
    let without_digest = image.split('@').next()?;
    let last = without_digest.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    let ok = !tag.is_empty()
        && tag.len() <= 63
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then(|| tag.to_owned())
}

/// Name of the ConfigMap holding the server YAML.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-config")
}

/// In-cluster URL of the objectstore API of StorageService `name` in `namespace`.
pub fn endpoint(name: &str, namespace: &str) -> String {
    format!("http://{name}.{namespace}.svc:{}", config::HTTP_PORT)
}

/// Renders every desired child of `owner`. Fails (without partial output) when the
/// spec is invalid, so the controller never applies half a service.
pub fn render(owner: &StorageService, caps: Capabilities) -> Result<Rendered, RenderError> {
    validate(&owner.spec).map_err(RenderError::Invalid)?;
    let ctx = Context::new(owner)?;
    let server_config = config::server_config(&owner.spec)?;
    let yaml = server_config.to_yaml();
    let config_hash = config::config_hash(&yaml);
    let config_map = configmap::render(&ctx, yaml);
    let template = pod::render(&ctx, &config_hash)?;
    let persistence = owner
        .spec
        .storage
        .filesystem
        .as_ref()
        .and_then(|f| f.persistence.as_ref())
        .filter(|_| owner.spec.storage.backend == crate::api::StorageBackend::Filesystem);
    let workload = match persistence {
        Some(p) => Workload::StatefulSet(Box::new(statefulset::render(&ctx, template, p))),
        None => Workload::Deployment(Box::new(deployment::render(&ctx, template))),
    };
    let monitoring = owner.spec.monitoring.as_ref().filter(|_| caps.monitoring);
    Ok(Rendered {
        config_map,
        workload,
        service: service::render(&ctx),
        pdb: pdb::render(&ctx),
        hpa: hpa::render(&ctx, &server_config),
        network_policy: owner
            .spec
            .network_policy
            .as_ref()
            .and_then(|n| network_policy::render(&ctx, n)),
        service_monitor: monitoring
            .and_then(|m| m.service_monitor.as_ref())
            .filter(|s| s.enabled)
            .map(|s| service_monitor::render(&ctx, s)),
        prometheus_rule: monitoring
            .and_then(|m| m.prometheus_rule.as_ref())
            .filter(|p| p.enabled)
            .map(|p| prometheus_rule::render(&ctx, p)),
        config_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_label_from_tag() {
        assert_eq!(image_version_label("a/b:1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(image_version_label("reg:5000/a/b"), None);
        assert_eq!(image_version_label("a/b@sha256:abc"), None);
        assert_eq!(image_version_label("a:-x"), None);
    }

    #[test]
    fn selector_string_is_sorted() {
        assert_eq!(
            selector_string("s1"),
            "app.kubernetes.io/instance=s1,app.kubernetes.io/name=strata-server"
        );
    }
}
