//! In-cluster source: StorageService custom resources, their pods and recent Events, read
//! through the Kubernetes API (read-only verbs: list).
//!
//! Each discovery pass lists the resources afresh (three list calls, whatever the number of
//! services) rather than holding watches: the dashboard refreshes on the scrape interval
//! anyway, a list is self-healing after API hiccups, and memory holds only the current
//! picture. Turning API objects into a [`Topology`] is the pure [`build_topology`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::Api;
use strata_operator::api::StorageService;
use strata_operator::render::{config::HTTP_PORT, selector_labels, APP_NAME};

use super::{
    clip, Condition, EventInfo, PodInfo, ServiceInfo, Topology, MAX_EVENTS_PER_SERVICE,
    MAX_PODS_PER_SERVICE,
};

/// Most objects requested per list call (a bound on memory for huge clusters).
pub const LIST_LIMIT: u32 = 2000;

/// Why discovery through the Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    /// Listing StorageServices failed (RBAC, API down, CRD not installed).
    #[error("listing StorageServices failed: {0}")]
    ListServices(#[source] kube::Error),
    /// Listing pods failed.
    #[error("listing pods failed: {0}")]
    ListPods(#[source] kube::Error),
}

/// Lists StorageServices, their pods and Events in one namespace or all.
#[derive(Clone)]
pub struct KubeSource {
    client: kube::Client,
    namespace: Option<String>,
}

impl KubeSource {
    /// A source over `namespace`, or every namespace when `None`.
    pub fn new(client: kube::Client, namespace: Option<String>) -> Self {
        Self { client, namespace }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// One discovery pass. Events are best effort: when they cannot be listed (e.g. RBAC)
    /// the services still show, without events.
    pub async fn discover(&self) -> Result<Topology, KubeSourceError> {
        let services = self
            .api::<StorageService>()
            .list(&ListParams::default().limit(LIST_LIMIT))
            .await
            .map_err(KubeSourceError::ListServices)?
            .items;
        let pods = self
            .api::<Pod>()
            .list(
                &ListParams::default()
                    .labels(&format!("app.kubernetes.io/name={APP_NAME}"))
                    .limit(LIST_LIMIT),
            )
            .await
            .map_err(KubeSourceError::ListPods)?
            .items;
        let events = match self
            .api::<Event>()
            .list(&ListParams::default().limit(LIST_LIMIT))
            .await
        {
            Ok(list) => list.items,
            Err(err) => {
                tracing::warn!(%err, "listing events failed; showing services without events");
                Vec::new()
            }
        };
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

/// Joins services, pods and events into a [`Topology`] (pure).
///
/// Pods belong to a service when they match its `status.selector` (or, before the operator
/// wrote one, the operator's standard selector labels). Events belong to it when they are
/// about the StorageService itself or one of its pods.
pub fn build_topology(services: &[StorageService], pods: &[Pod], events: &[Event]) -> Topology {
    let mut out: Vec<ServiceInfo> = services
        .iter()
        .map(|svc| {
            let name = svc.metadata.name.clone().unwrap_or_default();
            let namespace = svc.metadata.namespace.clone().unwrap_or_default();
            let status = svc.status.as_ref();
            let selector = status
                .and_then(|s| s.selector.as_deref())
                .map(parse_selector)
                .unwrap_or_else(|| selector_labels(&name));
            let mut svc_pods: Vec<PodInfo> = pods
                .iter()
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
}
