//! In-cluster source: StorageService custom resources, their pods and recent Events, read
//! through the Kubernetes API (read-only verbs: list and watch).
//!
//! StorageServices and pods are *watched*: one [`watcher()`] per kind (list once, then a
//! long-running `watch=true` request) feeds a [`reflector`] store, so a new pod, a pod turning
//! ready or a status change of a StorageService is in memory as soon as the API server reports
//! it — no re-list per pass. Watches restart on their own with the default backoff after API
//! errors (`WatchStreamExt::default_backoff`); while one is failing, discovery reports the error
//! and the dashboard keeps showing the last topology.
//!
//! Memory stays bounded: pods are label-selected (`app.kubernetes.io/name=strata-server`),
//! each store admits at most [`LIST_LIMIT`] objects, and objects are slimmed to the fields the
//! dashboard shows before they are stored ([`slim_pod`], [`slim_service`]).
//!
//! Events are different: "recent Events" is a list by nature (they churn constantly and the
//! dashboard shows only the newest few per service), so they are re-listed — one bounded list
//! call — at most every `--discovery-interval` ([`KubeSource::discover`]), while
//! [`KubeSource::snapshot`] rebuilds the picture from the stores and the last Events list
//! without calling the API. Turning API objects into a [`Topology`] is the pure
//! [`build_topology`], run on the stores' snapshots.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Event, Pod, PodSpec};
use kube::api::ListParams;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use strata_types::crd::labels::{selector_labels, APP_NAME, HTTP_PORT};
use strata_types::crd::StorageService;
use tokio::sync::Notify;

use super::{
    clip, Condition, EventInfo, PodInfo, ServiceInfo, Topology, MAX_EVENTS_PER_SERVICE,
    MAX_PODS_PER_SERVICE,
};

/// Most objects held per kind: Events requested per list call, StorageServices and pods
/// admitted into each watch store (a bound on memory for huge clusters).
pub const LIST_LIMIT: u32 = 2000;

/// Longest a discovery waits for the initial list of a watch before reporting it as not
/// listed yet (only ever waited at startup or after a watch restart).
pub const SYNC_WAIT: Duration = Duration::from_secs(10);

/// How long a watch error counts as current once the watch has synced. A watch that keeps
/// failing reports a fresh error at least every backoff period (at most about 30 s), while
/// one that resumed cleanly may stay silent until an object changes; so an error this old
/// is taken as recovered.
pub const ERROR_TTL: Duration = Duration::from_secs(90);

/// Objects per page of a watch's initial list.
const PAGE_SIZE: u32 = 500;

/// Why discovery through the Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    /// The StorageService watch is failing (RBAC, API down, CRD not installed); it keeps
    /// retrying with backoff.
    #[error("watching StorageServices failed: {0}")]
    WatchServices(#[source] Arc<watcher::Error>),
    /// The pod watch is failing; it keeps retrying with backoff.
    #[error("watching pods failed: {0}")]
    WatchPods(#[source] Arc<watcher::Error>),
    /// The initial list of a watch has not completed within [`SYNC_WAIT`].
    #[error("{kind} not listed yet (initial list still running after {waited:?})")]
    NotSynced {
        /// `StorageServices` or `pods`.
        kind: &'static str,
        /// How long this discovery waited.
        waited: Duration,
    },
}

/// Health of one watch, as its task last saw it.
#[derive(Debug, Clone, Default)]
struct WatchHealth {
    /// The initial list completed at least once (the store is usable).
    synced: bool,
    /// The last thing the watch reported was this error, and when (cleared by the next
    /// object; ignored after [`ERROR_TTL`] once synced).
    error: Option<(Arc<watcher::Error>, Instant)>,
}

/// One running watch: its store, its health and the task feeding both (aborted on drop).
struct Watched<K: 'static + Resource + Clone>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    health: tokio::sync::watch::Receiver<WatchHealth>,
    task: tokio::task::JoinHandle<()>,
}

impl<K: 'static + Resource + Clone> Drop for Watched<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K: 'static + Resource + Clone> Watched<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The store's objects once synced and healthy; otherwise the error, after waiting at
    /// most [`SYNC_WAIT`] for the initial list. Before the first sync any error is current;
    /// after it, only errors younger than [`ERROR_TTL`].
    async fn snapshot(
        &self,
        kind: &'static str,
        failed: fn(Arc<watcher::Error>) -> KubeSourceError,
    ) -> Result<Vec<Arc<K>>, KubeSourceError> {
        let mut health = self.health.clone();
        let waited = tokio::time::timeout(
            SYNC_WAIT,
            health.wait_for(|h| h.synced || h.error.is_some()),
        )
        .await;
        let current = self.health.borrow().clone();
        if let Some((err, at)) = current.error {
            if !current.synced || at.elapsed() < ERROR_TTL {
                return Err(failed(err));
            }
        }
        if waited.is_err() || !current.synced {
            return Err(KubeSourceError::NotSynced {
                kind,
                waited: SYNC_WAIT,
            });
        }
        Ok(self.store.state())
    }
}

/// Starts a watch of `api` into a fresh store, restarting with backoff on errors. At most
/// [`LIST_LIMIT`] objects are admitted; each is passed through `slim` first. `changed` is
/// notified whenever the store or the watch's health changes.
fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    slim: fn(&mut K),
    changed: Arc<Notify>,
) -> Watched<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let (health_tx, health) = tokio::sync::watch::channel(WatchHealth::default());
    let reader = store.clone();
    let cap = LIST_LIMIT as usize;
    let mut listed = 0usize;
    let stream = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .filter(move |event| futures::future::ready(admit(event, &reader, &mut listed, cap)))
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let notify = match item {
                Ok(watcher::Event::Init) => false,
                Ok(watcher::Event::InitApply(_)) => health_tx.send_if_modified(|h| {
                    let had = h.error.is_some();
                    h.error = None;
                    had
                }),
                Ok(watcher::Event::InitDone) => {
                    health_tx.send_modify(|h| {
                        h.synced = true;
                        h.error = None;
                    });
                    true
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    health_tx.send_if_modified(|h| h.error.take().is_some());
                    true
                }
                // The resource version expired: the watcher re-lists right away, which is
                // routine and not worth showing as a failure.
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    tracing::debug!(?status, "watch expired; re-listing");
                    false
                }
                Err(err) => {
                    tracing::warn!(%err, "watch failed; retrying with backoff");
                    let err = (Arc::new(err), Instant::now());
                    health_tx.send_modify(|h| h.error = Some(err));
                    true
                }
            };
            if notify {
                changed.notify_one();
            }
        }
    });
    Watched {
        store,
        health,
        task,
    }
}

/// Whether a watch event may reach the store: at most `cap` objects per initial list, and no
/// new object once the store holds `cap` (updates and deletions always pass).
fn admit<K>(
    event: &Result<watcher::Event<K>, watcher::Error>,
    store: &Store<K>,
    listed: &mut usize,
    cap: usize,
) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    match event {
        Ok(watcher::Event::Init) => {
            *listed = 0;
            true
        }
        Ok(watcher::Event::InitApply(_)) => {
            *listed += 1;
            if *listed == cap + 1 {
                tracing::warn!(
                    cap,
                    "more objects than the dashboard holds; ignoring the rest"
                );
            }
            *listed <= cap
        }
        Ok(watcher::Event::Apply(obj)) => {
            store.len() < cap || store.get(&ObjectRef::from_obj(obj)).is_some()
        }
        _ => true,
    }
}

/// Drops what the dashboard never shows from a StorageService (managed fields, annotations).
pub fn slim_service(svc: &mut StorageService) {
    svc.metadata.managed_fields = None;
    svc.metadata.annotations = None;
}

/// Keeps only what [`build_topology`] reads from a pod: identity and labels, container ports,
/// phase, IP, conditions (without messages) and restart counts.
pub fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    ports: c.ports,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
    if let Some(status) = pod.status.as_mut() {
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
        status.message = None;
        status.reason = None;
        for c in status.conditions.iter_mut().flatten() {
            c.message = None;
            c.reason = None;
        }
        if let Some(cs) = status.container_statuses.take() {
            status.container_statuses = Some(
                cs.into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        ready: c.ready,
                        restart_count: c.restart_count,
                        ..Default::default()
                    })
                    .collect(),
            );
        }
    }
}

fn slim_event(event: &mut Event) {
    event.metadata.managed_fields = None;
    event.metadata.annotations = None;
}

/// The two watches, started on first use.
struct Watches {
    services: Watched<StorageService>,
    pods: Watched<Pod>,
}

struct Inner {
    client: kube::Client,
    namespace: Option<String>,
    watches: OnceLock<Watches>,
    /// Notified when a store or a watch's health changed.
    changed: Arc<Notify>,
    /// The last Events list (empty when it failed).
    events: Mutex<Vec<Event>>,
}

/// Watches StorageServices and their pods, and lists Events, in one namespace or all.
///
/// Cheap to clone; clones share the watches, which start on the first [`discover`](Self::discover),
/// [`snapshot`](Self::snapshot) or [`changed`](Self::changed) (inside a Tokio runtime) and
/// stop when the last clone is dropped.
#[derive(Clone)]
pub struct KubeSource {
    inner: Arc<Inner>,
}

impl KubeSource {
    /// A source over `namespace`, or every namespace when `None`.
    pub fn new(client: kube::Client, namespace: Option<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                namespace,
                watches: OnceLock::new(),
                changed: Arc::new(Notify::new()),
                events: Mutex::new(Vec::new()),
            }),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &self.inner.namespace {
            Some(ns) => Api::namespaced(self.inner.client.clone(), ns),
            None => Api::all(self.inner.client.clone()),
        }
    }

    fn watches(&self) -> &Watches {
        self.inner.watches.get_or_init(|| Watches {
            services: spawn_watch(
                self.api::<StorageService>(),
                watcher::Config::default().page_size(PAGE_SIZE),
                slim_service,
                self.inner.changed.clone(),
            ),
            pods: spawn_watch(
                self.api::<Pod>(),
                watcher::Config::default()
                    .labels(&format!("app.kubernetes.io/name={APP_NAME}"))
                    .page_size(PAGE_SIZE),
                slim_pod,
                self.inner.changed.clone(),
            ),
        })
    }

    /// One full discovery pass: re-lists Events (one bounded list call), then builds the
    /// topology from the watch stores. Events are best effort: when they cannot be listed
    /// (e.g. RBAC) the services still show, without events.
    pub async fn discover(&self) -> Result<Topology, KubeSourceError> {
        let watches = self.watches();
        let events = match self
            .api::<Event>()
            .list(&ListParams::default().limit(LIST_LIMIT))
            .await
        {
            Ok(list) => {
                let mut items = list.items;
                items.iter_mut().for_each(slim_event);
                items
            }
            Err(err) => {
                tracing::warn!(%err, "listing events failed; showing services without events");
                Vec::new()
            }
        };
        *self.inner.events.lock().unwrap_or_else(|e| e.into_inner()) = events;
        self.build(watches).await
    }

    /// The topology from the watch stores and the last Events list, without calling the
    /// API (beyond the running watches). Waits at most [`SYNC_WAIT`] for the initial lists.
    pub async fn snapshot(&self) -> Result<Topology, KubeSourceError> {
        let watches = self.watches();
        self.build(watches).await
    }

    /// Resolves when a watch reported a change (an object added, modified or deleted, a
    /// completed re-list, a failure). Notifications arriving meanwhile coalesce into one.
    pub async fn changed(&self) {
        self.watches();
        self.inner.changed.notified().await;
    }

    async fn build(&self, watches: &Watches) -> Result<Topology, KubeSourceError> {
        let services = watches
            .services
            .snapshot("StorageServices", KubeSourceError::WatchServices)
            .await?;
        let pods = watches
            .pods
            .snapshot("pods", KubeSourceError::WatchPods)
            .await?;
        let events = self.inner.events.lock().unwrap_or_else(|e| e.into_inner());
        Ok(build_topology(&services, &pods, &events))
    }
}

fn unix(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

/// Parses an equality-based label selector (`a=b,c=d`, as in `status.selector`).
fn parse_selector(selector: &str) -> BTreeMap<String, String> {
    selector
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((
                k.trim().to_owned(),
                v.trim_start_matches('=').trim().to_owned(),
            ))
        })
        .collect()
}

fn matches(labels: Option<&BTreeMap<String, String>>, selector: &BTreeMap<String, String>) -> bool {
    let Some(labels) = labels else {
        return selector.is_empty();
    };
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.as_ref();
    let port =
        pod.spec
            .as_ref()
            .and_then(|s| {
                s.containers.iter().find_map(|c| {
                    c.ports.as_ref()?.iter().find_map(|p| {
                        (p.name.as_deref() == Some("http")).then_some(p.container_port)
                    })
                })
            })
            .unwrap_or(i32::from(HTTP_PORT));
    let ip = status
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty());
    let metrics_url = ip.map(|ip| {
        if ip.contains(':') {
            format!("http://[{ip}]:{port}/metrics")
        } else {
            format!("http://{ip}:{port}/metrics")
        }
    });
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True");
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count.max(0) as u32).sum());
    let terminating = pod.metadata.deletion_timestamp.is_some();
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        metrics_url,
        phase: status.and_then(|s| s.phase.clone()).map(|p| {
            if terminating {
                format!("{p} (terminating)")
            } else {
                p
            }
        }),
        ready,
        restarts,
    }
}

/// Joins services, pods and events into a [`Topology`] (pure). Takes owned objects or the
/// `Arc`s of a store snapshot alike.
///
/// Pods belong to a service when they match its `status.selector` (or, before the operator
/// wrote one, the operator's standard selector labels). Events belong to it when they are
/// about the StorageService itself or one of its pods.
pub fn build_topology<S, P>(services: &[S], pods: &[P], events: &[Event]) -> Topology
where
    S: Borrow<StorageService>,
    P: Borrow<Pod>,
{
    let mut out: Vec<ServiceInfo> = services
        .iter()
        .map(|svc| {
            let svc: &StorageService = Borrow::<StorageService>::borrow(svc);
            let name = svc.metadata.name.clone().unwrap_or_default();
            let namespace = svc.metadata.namespace.clone().unwrap_or_default();
            let status = svc.status.as_ref();
            let selector = status
                .and_then(|s| s.selector.as_deref())
                .map(parse_selector)
                .unwrap_or_else(|| selector_labels(&name));
            let mut svc_pods: Vec<PodInfo> = pods
                .iter()
                .map(Borrow::<Pod>::borrow)
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
                .filter(|p| matches(p.metadata.labels.as_ref(), &selector))
                .map(pod_info)
                .collect();
            svc_pods.sort_by(|a, b| a.name.cmp(&b.name));
            svc_pods.truncate(MAX_PODS_PER_SERVICE);
            let conditions = status
                .map(|s| {
                    s.conditions
                        .iter()
                        .map(|c| Condition {
                            kind: clip(&c.type_),
                            status: clip(&c.status),
                            reason: clip(&c.reason),
                            message: clip(&c.message),
                            since: Some(unix(&c.last_transition_time)),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut svc_events: Vec<EventInfo> = events
                .iter()
                .filter(|e| {
                    e.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && match (
                            e.involved_object.kind.as_deref(),
                            e.involved_object.name.as_deref(),
                        ) {
                            (Some("StorageService"), Some(n)) => n == name,
                            (Some("Pod"), Some(n)) => svc_pods.iter().any(|p| p.name == n),
                            _ => false,
                        }
                })
                .map(|e| EventInfo {
                    at: e
                        .last_timestamp
                        .as_ref()
                        .map(unix)
                        .or_else(|| {
                            e.event_time
                                .as_ref()
                                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
                        })
                        .or_else(|| e.first_timestamp.as_ref().map(unix)),
                    kind: clip(e.type_.as_deref().unwrap_or("Normal")),
                    reason: clip(e.reason.as_deref().unwrap_or("")),
                    message: clip(e.message.as_deref().unwrap_or("")),
                    object: clip(&format!(
                        "{}/{}",
                        e.involved_object.kind.as_deref().unwrap_or("?"),
                        e.involved_object.name.as_deref().unwrap_or("?")
                    )),
                    count: e.count.unwrap_or(1).max(1) as u32,
                })
                .collect();
            svc_events.sort_by(|a, b| b.at.unwrap_or(0.0).total_cmp(&a.at.unwrap_or(0.0)));
            svc_events.truncate(MAX_EVENTS_PER_SERVICE);
            ServiceInfo {
                desired: Some(svc.spec.replicas.max(0) as u32),
                storage: Some(svc.spec.storage.backend.as_str().to_owned()),
                access_control_off: Some(svc.spec.access_control_off()),
                ready: status.map(|s| s.ready_replicas.max(0) as u32),
                endpoint: status.and_then(|s| s.endpoint.clone()),
                conditions,
                events: svc_events,
                pods: svc_pods,
                namespace,
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Topology { services: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parsing() {
        let s =
            parse_selector("app.kubernetes.io/instance=s1, app.kubernetes.io/name=strata-server");
        assert_eq!(s.len(), 2);
        assert_eq!(s["app.kubernetes.io/instance"], "s1");
        assert_eq!(parse_selector("a==b")["a"], "b");
    }

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "prod", "resourceVersion": "7",
                "labels": {"app.kubernetes.io/name": "strata-server", "app.kubernetes.io/instance": "s1"},
                "annotations": {"big": "x".repeat(10_000)},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"containers": [{"name": "server", "image": "x", "args": ["--a", "--b"],
                "env": [{"name": "E", "value": "v"}],
                "ports": [{"name": "http", "containerPort": 8888}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "message": "m",
                "conditions": [{"type": "Ready", "status": "True", "message": "long"}],
                "containerStatuses": [{"name": "server", "image": "x", "imageID": "sha",
                    "ready": true, "restartCount": 4,
                    "lastState": {"terminated": {"exitCode": 1, "message": "boom"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn slimming_keeps_what_is_shown() {
        let full = pod("s1-0");
        let mut slim = full.clone();
        slim_pod(&mut slim);
        assert_eq!(pod_info(&slim), pod_info(&full));
        assert_eq!(slim.metadata.labels, full.metadata.labels);
        assert!(slim.metadata.annotations.is_none() && slim.metadata.managed_fields.is_none());
        let c = &slim.spec.as_ref().unwrap().containers[0];
        assert!(c.args.is_none() && c.env.is_none() && c.image.is_none());
        let cs = &slim
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert!(cs.last_state.is_none());
        assert!(serde_json::to_vec(&slim).unwrap().len() < 1000);
    }

    #[test]
    fn admission_caps_the_store() {
        let (store, mut writer) = reflector::store::<Pod>();
        let ok = |e: watcher::Event<Pod>| Ok::<_, watcher::Error>(e);
        let mut listed = 0;
        // Initial list: the third object is over the cap of 2.
        assert!(admit(&ok(watcher::Event::Init), &store, &mut listed, 2));
        for (name, admitted) in [("a", true), ("b", true), ("c", false)] {
            let event = ok(watcher::Event::InitApply(pod(name)));
            assert_eq!(admit(&event, &store, &mut listed, 2), admitted, "{name}");
            if admitted {
                writer.apply_watcher_event(event.as_ref().unwrap());
            }
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(store.len(), 2);
        // Full store: updates and deletions pass, new objects do not.
        assert!(admit(
            &ok(watcher::Event::Apply(pod("a"))),
            &store,
            &mut listed,
            2
        ));
        assert!(!admit(
            &ok(watcher::Event::Apply(pod("d"))),
            &store,
            &mut listed,
            2
        ));
        assert!(admit(
            &ok(watcher::Event::Delete(pod("a"))),
            &store,
            &mut listed,
            2
        ));
        // A re-list starts counting afresh.
        assert!(admit(&ok(watcher::Event::Init), &store, &mut listed, 2));
        assert!(admit(
            &ok(watcher::Event::InitApply(pod("d"))),
            &store,
            &mut listed,
            2
        ));
    }

    #[test]
    fn access_control_off_comes_from_the_spec() {
        let svc = |name: &str, auth: serde_json::Value| -> StorageService {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "strata.dev/v1alpha1", "kind": "StorageService",
                "metadata": {"name": name, "namespace": "prod"},
                "spec": {"auth": auth},
            }))
            .unwrap()
        };
        let services = [
            svc("open", serde_json::json!({"enforce": false})),
            svc(
                "locked",
                serde_json::json!({"keys": {"relay": {"secretName": "relay-keys"}}}),
            ),
            svc(
                "verify-only",
                serde_json::json!({"enforce": false, "keys": {"relay": {"secretName": "k"}}}),
            ),
        ];
        let topology = build_topology(&services, &[] as &[Pod], &[]);
        let off: Vec<(&str, Option<bool>)> = topology
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.access_control_off))
            .collect();
        assert_eq!(
            off,
            [
                ("locked", Some(false)),
                ("open", Some(true)),
                ("verify-only", Some(true))
            ]
        );
    }
}
