//! Reflector caches of the children the operator owns, so a reconcile reads what the
//! watches already delivered instead of GETting every child on every pass.
//!
//! `run` fills one store per owned kind from the same watch that triggers reconciles
//! (the reflector writes an event into the store before the controller sees it), so a
//! reconcile triggered by a child change always finds that change in the cache. Until
//! a kind's first list has completed its store is not consulted: callers fall back to
//! an API read, which is also what happens for a kind with no store at all (e.g. the
//! monitoring API appearing after start).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::FutureExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};

/// What the cache knows about one child.
#[derive(Debug, Clone)]
pub enum Cached {
    /// The kind has no store or its first list has not completed: ask the API.
    Unsynced,
    /// The store is synced and holds no such object.
    Absent,
    /// The object as last delivered by the watch.
    Present(Arc<DynamicObject>),
}

/// One reflector store per owned kind, keyed by `apiVersion` and kind.
#[derive(Default)]
pub struct ChildCache {
    stores: RwLock<HashMap<(String, String), KindStore>>,
}

/// A kind's store and the type information its object keys are built from.
struct KindStore {
    resource: ApiResource,
    store: Store<DynamicObject>,
}

fn kind_key(ar: &ApiResource) -> (String, String) {
    (ar.api_version.clone(), ar.kind.clone())
}

impl ChildCache {
    /// Creates (or replaces) the store of kind `ar` and returns the writer that fills it;
    /// `run` hands the writer to a `reflector`, tests feed it watcher events directly.
    pub fn register(&self, ar: &ApiResource) -> Writer<DynamicObject> {
        let writer = Writer::new(ar.clone());
        self.stores.write().expect("child cache lock").insert(
            kind_key(ar),
            KindStore {
                resource: ar.clone(),
                store: writer.as_reader(),
            },
        );
        writer
    }

    /// True until a store is registered: every read then goes to the API.
    pub fn is_empty(&self) -> bool {
        self.stores.read().expect("child cache lock").is_empty()
    }

    /// The child `ns/name` of kind `ar`, if that kind's store has synced.
    pub fn get(&self, ar: &ApiResource, ns: &str, name: &str) -> Cached {
        let stores = self.stores.read().expect("child cache lock");
        let Some(KindStore { resource, store }) = stores.get(&kind_key(ar)) else {
            return Cached::Unsynced;
        };
        // Ready once the first list is complete; a dropped writer never becomes ready.
        if !matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))) {
            return Cached::Unsynced;
        }
        let key = ObjectRef::new_with(name, resource.clone()).within(ns);
        match store.get(&key) {
            Some(obj) => Cached::Present(obj),
            None => Cached::Absent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher::Event;

    fn config_map(ns: &str, name: &str) -> DynamicObject {
        let ar = ApiResource::erase::<ConfigMap>(&());
        DynamicObject::new(name, &ar).within(ns)
    }

    #[test]
    fn unsynced_until_the_first_list_completes() {
        let cache = ChildCache::default();
        let ar = ApiResource::erase::<ConfigMap>(&());
        assert!(cache.is_empty());
        assert!(matches!(cache.get(&ar, "ns", "a"), Cached::Unsynced));
        let mut writer = cache.register(&ar);
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(config_map("ns", "a")));
        assert!(matches!(cache.get(&ar, "ns", "a"), Cached::Unsynced));
        writer.apply_watcher_event(&Event::InitDone);
        match cache.get(&ar, "ns", "a") {
            Cached::Present(obj) => assert_eq!(obj.metadata.name.as_deref(), Some("a")),
            other => panic!("expected the object, got {other:?}"),
        }
        assert!(matches!(cache.get(&ar, "other", "a"), Cached::Absent));
        writer.apply_watcher_event(&Event::Delete(config_map("ns", "a")));
        assert!(matches!(cache.get(&ar, "ns", "a"), Cached::Absent));
    }

    #[test]
    fn a_writer_dropped_before_sync_leaves_the_kind_unsynced() {
        let cache = ChildCache::default();
        let ar = ApiResource::erase::<ConfigMap>(&());
        drop(cache.register(&ar));
        assert!(matches!(cache.get(&ar, "ns", "a"), Cached::Unsynced));
    }
}
