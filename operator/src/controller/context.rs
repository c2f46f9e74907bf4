//! What every reconcile shares: the client, the Event recorder, discovered capabilities,
//! the caches of owned children, and the bookkeeping behind the operator's own metrics (failures per service for
//! backoff, managed children by kind, published readiness gauges).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use super::cache::ChildCache;
use crate::metrics::Metrics;
use crate::render::{Capabilities, MANAGER};

/// Shared state of every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events about StorageServices.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Owned children as the watches last delivered them; empty (every kind unsynced,
    /// so reads go to the API) until `run` or a test registers stores.
    pub children: ChildCache,
    pub(super) caps: RwLock<Capabilities>,
    pub(super) failures: Mutex<HashMap<String, u32>>,
    pub(super) managed: Mutex<HashMap<String, Vec<String>>>,
    /// Services with a published readiness gauge, so deleted ones are removed.
    pub(super) ready_published: Mutex<HashSet<(String, String)>>,
}

impl Context {
    /// A context whose Events are reported as `instance` of the `strata-operator` controller.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        caps: Capabilities,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            children: ChildCache::default(),
            caps: RwLock::new(caps),
            failures: Mutex::default(),
            managed: Mutex::default(),
            ready_published: Mutex::default(),
        }
    }

    /// What the cluster offers (monitoring API or not).
    pub fn capabilities(&self) -> Capabilities {
        *self.caps.read().expect("capabilities lock")
    }

    /// Replaces the capabilities (after re-discovery).
    pub fn set_capabilities(&self, caps: Capabilities) {
        *self.caps.write().expect("capabilities lock") = caps;
    }

    pub(super) fn record_managed(&self, key: &str, kinds: Vec<String>) {
        let mut managed = self.managed.lock().expect("managed lock");
        managed.insert(key.to_owned(), kinds);
        self.publish_managed(&managed);
    }

    /// Publishes whether one StorageService is Ready.
    pub(super) fn record_ready(&self, ns: &str, name: &str, ready: bool) {
        self.metrics
            .storage_service_ready
            .with_label_values(&[ns, name])
            .set(i64::from(ready));
        self.ready_published
            .lock()
            .expect("ready lock")
            .insert((ns.to_owned(), name.to_owned()));
    }

    /// Forgets services that no longer exist (keeps `objects_managed` honest).
    pub fn retain_managed(&self, live: &[String]) {
        self.ready_published
            .lock()
            .expect("ready lock")
            .retain(|(ns, name)| {
                let keep = live.contains(&format!("{ns}/{name}"));
                if !keep {
                    let _ = self
                        .metrics
                        .storage_service_ready
                        .remove_label_values(&[ns, name]);
                }
                keep
            });
        let mut managed = self.managed.lock().expect("managed lock");
        managed.retain(|k, _| live.contains(k));
        self.publish_managed(&managed);
        self.metrics.storage_services.set(live.len() as i64);
    }

    fn publish_managed(&self, managed: &HashMap<String, Vec<String>>) {
        let mut by_kind: HashMap<&str, i64> = HashMap::new();
        for kinds in managed.values() {
            for k in kinds {
                *by_kind.entry(k.as_str()).or_default() += 1;
            }
        }
        self.metrics.objects_managed.reset();
        for (kind, n) in by_kind {
            self.metrics
                .objects_managed
                .with_label_values(&[kind])
                .set(n);
        }
    }
}
