//! The `StorageService` custom resource (`strata.dev/v1alpha1`): the contract between
//! platform teams, the operator and the dashboard (DESIGN §3).
//!
//! Every spec field maps onto something the storage server or Kubernetes honours
//! today, so that nobody configures a no-op. `auth` is required: a service without
//! keys must say `auth: {enforce: false}`, so access control is never off by accident.
//!
//! Cross-field rules live twice: as CEL (`x-kubernetes-validations`) so the API server
//! rejects bad objects up front, and in [`validate`] so objects admitted before a
//! rule existed still get a clear `Degraded` condition instead of a broken rollout.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub mod access;
pub mod labels;
mod storage;
pub mod validate;
pub mod validate_access;

pub use storage::*;

pub use crate::access::{KillswitchConfig, Permission, UsecaseConfig};
pub use access::{AuthKeySpec, AuthSpec, RateLimitsSpec};

pub use validate::{validate, ValidationError};

/// API group of every Strata custom resource.
pub const GROUP: &str = "strata.dev";
/// The only served version so far.
pub const VERSION: &str = "v1alpha1";

/// Image used when the spec names none; tracks the operator release so that an
/// operator upgrade rolls servers built from the same source tree.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/strata-dev/strata-server:",
    env!("CARGO_PKG_VERSION")
);

/// Desired state of one Strata storage service (a set of identical server pods
/// behind one Service).
// Each `printcolumn(...)` repeats `type_ = ...` by design; clippy reads that as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "StorageService",
    plural = "storageservices",
    singular = "storageservice",
    shortname = "strata",
    category = "strata",
    namespaced,
    status = "StorageServiceStatus",
    derive = "PartialEq",
    doc = "A Strata object storage service: storage server pods, their configuration, Service, disruption budget, autoscaling and monitoring.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every desired server pod is ready"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "string",
        json_path = ".status.replicasSummary",
        description = "Ready / desired server pods"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "In-cluster URL of the objectstore API"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.podDisruptionBudget) || !has(self.podDisruptionBudget.minAvailable) || (has(self.autoscaling) ? self.autoscaling.minReplicas : self.replicas) >= self.podDisruptionBudget.minAvailable").message("podDisruptionBudget.minAvailable must not exceed replicas (or autoscaling.minReplicas): otherwise no pod could ever be evicted and node drains hang"),
    validation = Rule::new("has(self.auth)").message(access::AUTH_REQUIRED),
    validation = Rule::new("self.storage.type == 'filesystem' || !has(self.storage.filesystem)").message("storage.filesystem is only valid with storage.type filesystem"),
    validation = Rule::new("!(self.storage.type == 'filesystem' || self.storage.type == 'memory') || self.replicas <= 1").message("storage.type filesystem and memory keep objects inside one pod, so replicas must be 0 or 1; to run more pods use a shared backend: storage.type bigtable, s3compatible or tiered"),
    validation = Rule::new("!(self.storage.type == 'filesystem' || self.storage.type == 'memory') || !has(self.autoscaling)").message("storage.type filesystem and memory keep objects inside one pod and cannot autoscale; remove autoscaling or use a shared backend: storage.type bigtable, s3compatible or tiered")
)]
#[serde(rename_all = "camelCase")]
pub struct StorageServiceSpec {
    /// Number of server pods. Written by the HorizontalPodAutoscaler (through the scale
    /// subresource) when `autoscaling` is set.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Server container image. Defaults to the release matching this operator.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,

    /// When the kubelet pulls the image; Kubernetes' default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Secrets holding registry credentials for private images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Where objects are stored.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Two-tier admission control (web tier and service tier, DESIGN §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,

    /// Fault injection for alert drills and demos. Never set this on production data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsSpec>,

    /// Server log verbosity and format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,

    /// Shutdown behaviour: drain delay and in-flight grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleSpec>,

    /// CPU/memory requests and limits of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the server pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the server pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Node and pod (anti-)affinity of the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How server pods spread over zones/nodes. Empty `labelSelector`s are filled in
    /// with this service's pod selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PodDisruptionBudget for the server pods; one with `maxUnavailable: 1` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,

    /// HorizontalPodAutoscaler settings; when set the HPA owns `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Prometheus Operator objects (created only when monitoring.coreos.com is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,

    /// Access control (required): `{enforce: false}` to run without it, or keys by
    /// Secret reference. Optional in the Rust type only so that objects stored before
    /// the field existed get a `Degraded` condition saying what to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Requests matching any of these get 403 (server `killswitches`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killswitches: Vec<KillswitchConfig>,

    /// Throughput and bandwidth limits (server `rate_limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsSpec>,

    /// Per-usecase expiration policy (server `usecases`); usecases not listed are
    /// unrestricted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usecases: BTreeMap<String, UsecaseConfig>,

    /// A NetworkPolicy admitting only the listed clients and scrapers to the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,

    /// Stops the operator from changing any child object (status is still reported).
    /// Use it to hand-edit children during an incident.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    1
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

/// Image pull policy (mirrors the Kubernetes enum so typos are rejected at admission).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull only when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The string Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Admission limits; unset fields keep the server's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("!has(self.queueDepth) || self.queueDepth == 0 || has(self.queueTimeout)").message("limits.queueDepth > 0 needs limits.queueTimeout: say how long a queued operation may wait")
)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// HTTP requests in flight per pod before new ones get 503 (web tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_requests: Option<u32>,
    /// Storage operations running at once per pod (service tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Operations that may wait for a permit; 0 rejects at once when none is free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u32>,
    /// How long a queued operation waits before 429, e.g. `250ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub queue_timeout: Option<String>,
    /// Share of `maxConcurrency` (percent) that batch operations may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub bulk_percent: Option<u8>,
    /// How long an unfinished multipart upload or resumable session may sit untouched
    /// before it is collected, e.g. `24h` (the default: one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub upload_max_age: Option<String>,
    /// How long a client may take to send a request head; idle keep-alive connections
    /// close after it too, e.g. `10s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub header_read_timeout: Option<String>,
    /// How long a request body may deliver no bytes before the request fails with 408,
    /// e.g. `30s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub body_idle_timeout: Option<String>,
    /// Overall deadline for reading a request body, e.g. `10m` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub request_timeout: Option<String>,
    /// Largest request head in bytes (larger ones get 431); at least 8192, default 65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8192))]
    pub max_header_bytes: Option<u32>,
}

/// Humantime durations as the server parses them (`1s`, `250ms`, `1m 30s`).
pub const DURATION_PATTERN: &str = r"^([0-9]+ ?(ns|us|ms|s|m|h|d) ?)+$";

/// Fault injection (DESIGN §2.4) for alert drills.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("!has(self.delayKeyPrefix) || has(self.delay)").message("faults.delayKeyPrefix needs faults.delay (how long matching operations stall)")
)]
#[serde(rename_all = "camelCase")]
pub struct FaultsSpec {
    /// Operations on keys with this prefix panic inside the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub panic_key_prefix: Option<String>,
    /// Operations on keys with this prefix sleep `delay` while holding their permit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub delay_key_prefix: Option<String>,
    /// How long delayed operations sleep, e.g. `2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub delay: Option<String>,
}

/// Server logging.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// `tracing` filter directive, e.g. `info` or `strata_server=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// `json` (default in clusters, for log pipelines) or `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormatSpec>,
}

/// Server log line format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatSpec {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Pod shutdown: how long a pod keeps serving after it is marked not ready, and how
/// long it then waits for in-flight work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleSpec {
    /// Time between `strata-server down` (readiness fails) and SIGTERM, so load
    /// balancers stop sending traffic first. Default `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub drain_delay: Option<String>,
    /// How long the server waits for in-flight requests after SIGTERM. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub shutdown_timeout: Option<String>,
}

/// PodDisruptionBudget settings: set exactly one of the two.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.minAvailable) != has(self.maxUnavailable) || (!self.enabled)").message("set exactly one of podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable")
)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Set to false to create no PodDisruptionBudget at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods that must stay available during voluntary disruptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_available: Option<i32>,
    /// Pods that may be unavailable during voluntary disruptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_unavailable: Option<i32>,
}

fn default_true() -> bool {
    true
}

/// HorizontalPodAutoscaler targeting this StorageService's scale subresource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"),
    validation = Rule::new("has(self.targetCPUUtilizationPercentage) || has(self.targetInFlightPercentage)").message("autoscaling needs at least one target: targetCPUUtilizationPercentage or targetInFlightPercentage")
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Lower bound of replicas.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Upper bound of replicas.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU utilisation (percent of requests) to aim for; needs CPU requests.
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Average in-flight requests as a percentage of `limits.maxRequests` to aim for.
    /// Rendered as a Pods metric on the `/keda` gauge `objectstore_requests_in_flight`,
    /// so it needs a custom-metrics adapter (e.g. prometheus-adapter) serving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_in_flight_percentage: Option<i32>,
}

/// Prometheus Operator integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// ServiceMonitor scraping `/metrics` of every server pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,
    /// PrometheusRule with Strata's alerts (panics, rejections, saturation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_rule: Option<PrometheusRuleSpec>,
}

/// ServiceMonitor settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Extra labels, typically what the Prometheus' `serviceMonitorSelector` matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval, e.g. `15s`; Prometheus' default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: Option<String>,
}

/// PrometheusRule settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    /// Create the PrometheusRule.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Extra labels, typically what the Prometheus' `ruleSelector` matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// NetworkPolicy settings: with it enabled, only the selected pods reach the servers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("!self.enabled || (has(self.clients) && size(self.clients) > 0)").message("networkPolicy.clients is empty, so no client could reach the service; list the client namespaces/pods or set networkPolicy.enabled to false")
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy (needs a CNI that enforces them).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may call the objectstore API (HTTP port). Each entry selects namespaces,
    /// pods, or pods within namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<PeerSpec>,
    /// Who may scrape `/metrics` (Prometheus, the Strata dashboard). The server serves
    /// metrics on the HTTP port, so scrapers can reach the API too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrapers: Vec<PeerSpec>,
}

/// Pods selected by namespace and/or pod labels (a NetworkPolicy peer without
/// `ipBlock`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.namespaceSelector) || has(self.podSelector)").message("a networkPolicy peer needs namespaceSelector, podSelector or both")
)]
#[serde(rename_all = "camelCase")]
pub struct PeerSpec {
    /// Namespaces by label (`{}` selects every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods by label; within `namespaceSelector` when both are set, else in the
    /// StorageService's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// Observed state, written by the operator only when it changed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageServiceStatus {
    /// The `metadata.generation` this status describes; older means "not looked at yet".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, each with a reason and an actionable message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Server pods that exist (scale subresource `statusReplicasPath`).
    #[serde(default)]
    pub replicas: i32,
    /// Server pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_summary: Option<String>,
    /// Label selector of the server pods (scale subresource, used by the HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// In-cluster URL of the objectstore API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Hash of the rendered server configuration currently rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

impl StorageServiceStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

impl StorageServiceSpec {
    /// The smallest valid spec, `{auth: {enforce: false}}`, with every default filled in.
    pub fn minimal() -> Self {
        serde_json::from_value(serde_json::json!({"auth": {"enforce": false}}))
            .expect("all other spec fields have defaults")
    }

    /// Whether access control is off (`auth.enforce` false or `auth` missing).
    pub fn access_control_off(&self) -> bool {
        !self.auth.as_ref().is_some_and(|a| a.enforce)
    }
}

/// The CustomResourceDefinition as deterministic YAML: `strata-operator crd` prints
/// it, and the chart and kustomize copies are compared to it byte for byte.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    // k8s-openapi keeps maps in BTreeMaps and structs in declaration order, so the
    // serialization is stable across runs and machines.
    let body = serde_yaml::to_string(&StorageService::crd()).expect("CRD serializes");
    format!("# Generated by `strata-operator crd` from types/src/crd; do not edit.\n---\n{body}")
}
