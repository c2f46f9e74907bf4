//! The controller exactly as `strata-operator run` wires it (`controller::run_until`:
//! one reflector-backed watch per owned kind, fed to the controller through
//! `owns_stream_with`) against the fake API answering LIST and WATCH.

mod common;

use std::sync::Arc;

use common::{lifecycle, object_path, FakeApi, WAIT};
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::ApiResource;
use strata_operator::api::{StorageService, StorageServiceSpec};
use strata_operator::controller::{self, Cached, Context};
use strata_operator::metrics::Metrics;
use strata_operator::render::{self, Capabilities};

/// Reconciles finished so far, whatever their outcome.
fn reconciliations(ctx: &Context) -> u64 {
    ["ok", "error", "invalid"]
        .iter()
        .map(|r| ctx.metrics.reconciliations.with_label_values(&[r]).get())
        .sum()
}

/// Server-side applies (not status patches) of `path` in the log.
fn applies_of(fake: &FakeApi, path: &str) -> Vec<common::Seen> {
    fake.writes()
        .into_iter()
        .filter(|w| w.method == Method::PATCH && w.path == path)
        .collect()
}

#[tokio::test]
async fn run_applies_listed_services_and_heals_children_from_watch_events() {
    let (client, fake) = FakeApi::start();
    let obj = common::service("live");
    fake.put_service(&obj);
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Metrics::new()),
        Capabilities::default(),
        Some("test".into()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_until(ctx.clone(), async move {
        let _ = stopped.await;
    }));

    // (a) The service from the initial LIST gets its children and a status.
    let config_map = object_path("v1", "default", "configmaps", "live-config");
    let deployment = object_path("apps/v1", "default", "deployments", "live");
    let service = object_path("v1", "default", "services", "live");
    let pdb = object_path("policy/v1", "default", "poddisruptionbudgets", "live");
    let children = [&config_map, &deployment, &service, &pdb];
    fake.eventually("the children and the status of the listed service", |f| {
        children.iter().all(|p| f.get(p).is_some()) && f.service(&obj).status.is_some()
    })
    .await;
    for path in children {
        let applies = applies_of(&fake, path);
        assert!(!applies.is_empty(), "{path} was not applied");
        for w in applies {
            assert!(w.content_type.contains("apply-patch"), "{w:?}");
            assert!(w.query.contains("fieldManager=strata-operator"), "{w:?}");
            assert_eq!(w.body["metadata"]["ownerReferences"][0]["uid"], "uid-live");
        }
    }
    let status_path = format!("{}/status", common::service_path(&obj));
    assert!(
        !applies_of(&fake, &status_path).is_empty(),
        "no status patch"
    );
    let stored = fake.service(&obj);
    assert_eq!(stored.status.as_ref().unwrap().observed_generation, Some(1));

    // Every kind is watched through the operator's label selector, and the caches
    // the reconciles read have synced with what was applied.
    let mut expected: Vec<String> = render::managed_resources(Capabilities::default())
        .iter()
        .map(|ar| {
            let prefix = if ar.group.is_empty() {
                "/api/v1".to_owned()
            } else {
                format!("/apis/{}", ar.api_version)
            };
            format!("{prefix}/{}", ar.plural)
        })
        .collect();
    expected.push("/apis/strata.dev/v1alpha1/storageservices".into());
    fake.eventually("a watch on every owned kind and on StorageServices", |f| {
        let watched = f.watched();
        expected.iter().all(|e| watched.contains(e))
    })
    .await;
    for r in fake.log().iter().filter(|r| r.query.contains("watch=true")) {
        if !r.path.ends_with("/storageservices") {
            assert!(
                r.query
                    .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dstrata-operator"),
                "{r:?}"
            );
        }
    }
    let deployment_ar = ApiResource::erase::<Deployment>(&());
    let service_ar = ApiResource::erase::<Service>(&());
    fake.eventually("the child caches to hold the applied children", |_| {
        matches!(
            ctx.children.get(&deployment_ar, "default", "live"),
            Cached::Present(_)
        ) && matches!(
            ctx.children.get(&service_ar, "default", "live"),
            Cached::Present(_)
        )
    })
    .await;

    // (b) Someone deletes the Service: its DELETED event (owner reference to the
    // StorageService) reaches the controller through the Service watch, which both
    // empties the cache entry and triggers a reconcile that applies it again. The
    // next periodic requeue is RESYNC_PROGRESSING (30 s) away, longer than WAIT.
    assert!(controller::RESYNC_PROGRESSING > WAIT);
    let before = reconciliations(&ctx);
    fake.clear_log();
    let deleted = fake.delete(&service);
    assert_eq!(
        deleted["metadata"]["ownerReferences"][0]["uid"], "uid-live",
        "the child names its owner"
    );
    fake.eventually("the deleted Service to be applied again", |f| {
        f.get(&service).is_some()
    })
    .await;
    let reapplied = applies_of(&fake, &service);
    assert_eq!(reapplied.len(), 1, "{reapplied:?}");
    assert!(reapplied[0].content_type.contains("apply-patch"));
    assert!(reconciliations(&ctx) > before);

    // (b) Someone scales the Deployment by hand: the MODIFIED event triggers a
    // reconcile that finds the drift in the cache and applies the desired replicas.
    let desired = fake.get(&deployment).unwrap()["spec"]["replicas"].clone();
    assert_eq!(desired, 1);
    let mut drifted = fake.get(&deployment).unwrap();
    drifted["spec"]["replicas"] = serde_json::json!(7);
    fake.clear_log();
    fake.update(&deployment, drifted);
    fake.eventually("the drifted Deployment to be corrected", |f| {
        f.get(&deployment).unwrap()["spec"]["replicas"] == desired
    })
    .await;
    assert_eq!(applies_of(&fake, &deployment).len(), 1);

    // Everything the live controller did stayed inside the operator's RBAC rules, and
    // its watches used `list` and `watch` on every kind it watches.
    assert_eq!(fake.forbidden(), Vec::<String>::new());
    let used = fake.used();
    let mut watched: Vec<(String, String)> = render::managed_resources(Capabilities::default())
        .into_iter()
        .map(|ar| (ar.group, ar.plural))
        .collect();
    watched.push(("strata.dev".into(), "storageservices".into()));
    for (group, plural) in watched {
        for verb in ["list", "watch"] {
            assert!(
                used.contains(&(group.clone(), plural.clone(), verb.to_owned())),
                "{group}/{plural}: {verb} not used"
            );
        }
    }

    // Shutdown ends the controller.
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("the controller stops after shutdown")
        .unwrap();
}

/// Replaces the stored spec as `kubectl apply` would (generation bumped), so the
/// StorageService watch delivers the change.
fn update_spec(fake: &FakeApi, obj: &StorageService, change: impl FnOnce(&mut StorageServiceSpec)) {
    let mut stored = fake.service(obj);
    change(&mut stored.spec);
    stored.metadata.generation = Some(stored.metadata.generation.unwrap_or(1) + 1);
    fake.update(
        &common::service_path(obj),
        serde_json::to_value(&stored).unwrap(),
    );
}

/// The RBAC property of `controller::lifecycle_uses_exactly_the_granted_verbs` on the
/// path production takes: the same life, driven only by watch events through the live
/// controller, its reflector caches and its watches. Every request must be granted,
/// and every grant used, `list` and `watch` included; only the `get`s of children may
/// go unused, as they serve reads before a kind's cache has synced.
#[tokio::test]
async fn live_lifecycle_uses_exactly_the_granted_verbs() {
    let (client, fake) = FakeApi::start();
    let obj = lifecycle::everything_on();
    let (secret_path, secret) = lifecycle::secret();
    fake.put(&secret_path, secret);
    fake.put_service(&obj);
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Metrics::new()),
        Capabilities { monitoring: true },
        Some("test".into()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run_until(ctx.clone(), async move {
        let _ = stopped.await;
    }));

    fake.eventually("every optional child", |f| {
        lifecycle::OPTIONAL_CHILDREN
            .iter()
            .all(|p| f.get(p).is_some())
    })
    .await;
    update_spec(&fake, &obj, lifecycle::to_statefulset);
    fake.eventually("the StatefulSet to replace the Deployment", |f| {
        f.get(lifecycle::DEPLOYMENT).is_none() && f.get(lifecycle::STATEFULSET).is_some()
    })
    .await;
    update_spec(&fake, &obj, lifecycle::everything_off);
    fake.eventually("everything optional gone, a Deployment again", |f| {
        f.get(lifecycle::STATEFULSET).is_none()
            && f.get(lifecycle::DEPLOYMENT).is_some()
            && f.get(lifecycle::NETWORK_POLICY).is_none()
    })
    .await;
    update_spec(&fake, &obj, lifecycle::invalid);
    fake.eventually("an Event about the invalid spec", |f| {
        f.writes().iter().any(|w| {
            w.method == Method::POST
                && w.path.ends_with("/events")
                && w.body["reason"] == "InvalidSpec"
        })
    })
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("the controller stops after shutdown")
        .unwrap();

    assert_eq!(fake.forbidden(), Vec::<String>::new());
    let unused = lifecycle::unused_grants(&fake.used(), true);
    let fallback = lifecycle::fallback_reads();
    let beyond_fallback: Vec<&String> = unused.difference(&fallback).collect();
    assert!(
        beyond_fallback.is_empty(),
        "granted but never used by the live controller: {beyond_fallback:?}"
    );
}
