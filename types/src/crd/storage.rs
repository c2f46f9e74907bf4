//! Where a `StorageService` keeps its objects (`spec.storage`): single-node backends
//! (filesystem, memory: one pod) or shared ones (bigtable, s3compatible, tiered: any
//! number of pods), with credentials only by Secret reference.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Storage backend selection and its per-backend settings.
///
/// `filesystem` and `memory` keep objects inside one pod, so a service using them runs
/// exactly one replica; `bigtable`, `s3compatible` and `tiered` are shared by every pod
/// and scale out (and may autoscale). Credentials are never part of the spec: they
/// come from Secrets named in `credentialsSecret`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.type != 'bigtable' || has(self.bigtable)").message("storage.type bigtable needs storage.bigtable (projectId, instanceName, tableName)"),
    validation = Rule::new("self.type != 's3compatible' || has(self.s3compatible)").message("storage.type s3compatible needs storage.s3compatible (endpoint, bucket)"),
    validation = Rule::new("self.type != 'tiered' || (has(self.bigtable) && has(self.s3compatible))").message("storage.type tiered needs storage.bigtable (small objects) and storage.s3compatible (large objects)"),
    validation = Rule::new("!has(self.bigtable) || self.type == 'bigtable' || self.type == 'tiered'").message("storage.bigtable is only valid with storage.type bigtable or tiered"),
    validation = Rule::new("!has(self.s3compatible) || self.type == 's3compatible' || self.type == 'tiered'").message("storage.s3compatible is only valid with storage.type s3compatible or tiered")
)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Backend kind: `filesystem` (the default; one pod), `memory` (lost on restart;
    /// one pod), `bigtable`, `s3compatible` or `tiered` (small objects in Bigtable,
    /// large ones in S3), which every pod shares and which scale out.
    #[serde(rename = "type", default)]
    pub backend: StorageBackend,
    /// Filesystem backend settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemSpec>,
    /// Bigtable settings (type `bigtable`, or the small-object tier of `tiered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bigtable: Option<BigtableSpec>,
    /// S3-compatible settings (type `s3compatible`, or the large-object tier of `tiered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3compatible: Option<S3CompatibleSpec>,
}

/// Which storage backend the servers use.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Objects as files on a volume (one pod).
    #[default]
    Filesystem,
    /// Objects in process memory (tests, demos; one pod).
    Memory,
    /// Google Cloud Bigtable, shared by every pod.
    Bigtable,
    /// An S3-compatible object store, shared by every pod.
    S3compatible,
    /// Objects up to 1 MiB in Bigtable, larger ones in S3; shared by every pod.
    Tiered,
}

impl StorageBackend {
    /// The `type` value as written in the spec (and shown by the dashboard).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageBackend::Filesystem => "filesystem",
            StorageBackend::Memory => "memory",
            StorageBackend::Bigtable => "bigtable",
            StorageBackend::S3compatible => "s3compatible",
            StorageBackend::Tiered => "tiered",
        }
    }

    /// Whether every pod sees the same objects, so the service may run many replicas.
    pub fn is_shared(self) -> bool {
        matches!(
            self,
            StorageBackend::Bigtable | StorageBackend::S3compatible | StorageBackend::Tiered
        )
    }
}

/// Google Cloud Bigtable (or its emulator).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BigtableSpec {
    /// `host:port` of a Bigtable emulator; Google's endpoint when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub endpoint: Option<String>,
    /// Google Cloud project.
    #[schemars(length(min = 1))]
    pub project_id: String,
    /// Bigtable instance.
    #[schemars(length(min = 1))]
    pub instance_name: String,
    /// Table holding one row per object.
    #[schemars(length(min = 1))]
    pub table_name: String,
    /// gRPC channels each pod opens (server default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub connections: Option<u32>,
    /// Create the table and its column families at start (emulator and local use).
    #[serde(default)]
    pub create_table: bool,
    /// Secret holding a Google service-account key file, mounted read-only and named
    /// by `GOOGLE_APPLICATION_CREDENTIALS`. Unset: the pod's own identity (e.g.
    /// Workload Identity) or, with `endpoint`, the emulator (no credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<GoogleCredentialsSecret>,
}

/// A Secret key holding a Google service-account JSON key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCredentialsSecret {
    /// Secret name (same namespace as the StorageService).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret; default `credentials.json`.
    #[serde(default = "default_google_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_google_key() -> String {
    "credentials.json".to_owned()
}

/// An S3-compatible object store (AWS S3, MinIO, Ceph RGW, ...).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CompatibleSpec {
    /// Base URL, e.g. `https://s3.us-east-1.amazonaws.com` or `http://minio:9000`.
    #[schemars(regex(pattern = r"^https?://.+"))]
    pub endpoint: String,
    /// Bucket holding the objects; it must exist.
    #[schemars(length(min = 1))]
    pub bucket: String,
    /// Signing region (server default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket`); server default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Secret holding the access key pair, passed to the server as
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (`secretKeyRef`). Unset: the pod's
    /// own identity (e.g. IRSA web identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<AwsCredentialsSecret>,
}

/// Keys of a Secret holding an AWS-style access key pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsCredentialsSecret {
    /// Secret name (same namespace as the StorageService).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key holding the access key id; default `AWS_ACCESS_KEY_ID`.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1))]
    pub access_key_id_key: String,
    /// Key holding the secret access key; default `AWS_SECRET_ACCESS_KEY`.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1))]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".to_owned()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".to_owned()
}

/// Filesystem backend settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemSpec {
    /// A PersistentVolumeClaim per pod (the workload becomes a StatefulSet). Without
    /// it data lives in an `emptyDir` and is lost when a pod is rescheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceSpec>,
}

/// Per-pod persistent volume for the filesystem backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    /// Requested volume size, e.g. `10Gi`.
    pub size: Quantity,
    /// StorageClass of the claims; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}
