//! Controller behaviour against a fake API server (tower-test mock): what is written,
//! how, and — just as important — when nothing is.

mod common;

use std::sync::Arc;

use common::{lifecycle, object_path, FakeApi};
use http::Method;
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::json;
use strata_operator::api::{
    AutoscalingSpec, LimitsSpec, PodDisruptionBudgetSpec, StorageService, StorageServiceSpec,
};
use strata_operator::controller::{reconcile, Context};
use strata_operator::metrics::Metrics;
use strata_operator::render::{self, Capabilities, CONFIG_HASH_ANNOTATION, MANAGER};

/// A mocked API server and a controller context talking to it whose child caches are
/// synced: [`reconcile_stored`] refreshes them from the fake before every reconcile, as
/// the watches of `controller::run` would have.
fn start(caps: Capabilities) -> (FakeApi, Arc<Context>) {
    let (fake, ctx) = start_unsynced(caps);
    sync_cache(&fake, &ctx);
    (fake, ctx)
}

/// Like [`start`], but no child cache ever syncs (the watches have not listed yet), so
/// every child is read with a GET.
fn start_unsynced(caps: Capabilities) -> (FakeApi, Arc<Context>) {
    let (client, fake) = FakeApi::start();
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Metrics::new()),
        caps,
        Some("test".into()),
    ));
    (fake, ctx)
}

/// Plural resource names of every kind the operator owns (and caches).
fn child_plurals() -> Vec<String> {
    render::managed_resources(Capabilities { monitoring: true })
        .into_iter()
        .map(|ar| ar.plural)
        .collect()
}

/// Fills the context's child caches with what the fake stores, as a fresh list by the
/// operator's watches would: every managed kind, only objects labelled as managed.
fn sync_cache(fake: &FakeApi, ctx: &Context) {
    let objects = fake.state.lock().unwrap().objects.clone();
    for ar in render::managed_resources(Capabilities { monitoring: true }) {
        let mut writer = ctx.children.register(&ar);
        writer.apply_watcher_event(&Event::Init);
        let prefix = if ar.group.is_empty() {
            "/api/v1/namespaces/".to_owned()
        } else {
            format!("/apis/{}/namespaces/", ar.api_version)
        };
        for (path, value) in &objects {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            if parts.len() != 3 || parts[1] != ar.plural {
                continue;
            }
            if value["metadata"]["labels"]["app.kubernetes.io/managed-by"] != MANAGER {
                continue;
            }
            let mut obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
            obj.metadata.namespace = Some(parts[0].to_owned());
            writer.apply_watcher_event(&Event::InitApply(obj));
        }
        writer.apply_watcher_event(&Event::InitDone);
    }
}

fn deployment_path(name: &str) -> String {
    object_path("apps/v1", "default", "deployments", name)
}

/// Reconciles the service as the fake currently stores it (status included), and
/// checks that every request was allowed by `strata_operator::rbac`. With synced caches
/// it first refreshes them and then checks that no child was read from the API.
async fn reconcile_stored(fake: &FakeApi, obj: &StorageService, ctx: &Arc<Context>) {
    let cached = !ctx.children.is_empty();
    if cached {
        sync_cache(fake, ctx);
    }
    let before = fake.log().len();
    let current = fake.service(obj);
    reconcile(Arc::new(current), ctx.clone()).await.unwrap();
    assert_eq!(
        fake.forbidden(),
        Vec::<String>::new(),
        "requests outside the RBAC rules"
    );
    if cached {
        let child_reads: Vec<String> = fake.log()[before..]
            .iter()
            .filter(|r| is_child_get(r))
            .map(|r| r.path.clone())
            .collect();
        assert!(
            child_reads.is_empty(),
            "children read from the API despite synced caches: {child_reads:?}"
        );
    }
}

/// Is this request a GET of one named child of a kind the operator owns?
fn is_child_get(r: &common::Seen) -> bool {
    let parts: Vec<&str> = r.path.split('/').collect();
    r.method == Method::GET
        && parts.len() >= 2
        && child_plurals().iter().any(|p| p == parts[parts.len() - 2])
}

/// GETs of children the operator owns since the log was last cleared.
fn child_gets(fake: &FakeApi) -> Vec<String> {
    fake.log()
        .iter()
        .filter(|r| is_child_get(r))
        .map(|r| r.path.clone())
        .collect()
}

/// Marks the Deployment as fully rolled out, as the deployment controller would.
fn deployment_becomes_ready(fake: &FakeApi, name: &str, replicas: i64) {
    let path = deployment_path(name);
    let mut d = fake.get(&path).expect("deployment exists");
    let generation = d["metadata"]["generation"].clone();
    d["status"] = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    });
    fake.put(&path, d);
}

/// The message of `obj`'s `type_` condition.
fn condition_message(obj: &StorageService, type_: &str) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .unwrap_or_else(|| panic!("no {type_} condition"))
        .message
        .clone()
}

fn condition(obj: &StorageService, type_: &str) -> (String, String) {
    let c = obj
        .status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn create_applies_children_with_ssa_and_reports_ready() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("web");
    fake.put_service(&obj);

    reconcile_stored(&fake, &obj, &ctx).await;

    let applies: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|w| w.method == Method::PATCH && !w.path.ends_with("/status"))
        .collect();
    let paths: Vec<&str> = applies.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/default/configmaps/web-config",
            "/apis/apps/v1/namespaces/default/deployments/web",
            "/api/v1/namespaces/default/services/web",
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web",
        ]
    );
    for w in &applies {
        assert!(
            w.query.contains("fieldManager=strata-operator"),
            "{}",
            w.query
        );
        assert!(w.query.contains("force=true"), "{}", w.query);
        assert_eq!(w.body["metadata"]["ownerReferences"][0]["uid"], "uid-web");
        assert!(w.body["apiVersion"].is_string() && w.body["kind"].is_string());
    }
    let stored = fake.service(&obj);
    assert_eq!(condition(&stored, "Ready").0, "False");
    let ready_gauge = ctx
        .metrics
        .storage_service_ready
        .with_label_values(&["default", "web"]);
    assert_eq!(ready_gauge.get(), 0);
    assert_eq!(
        condition(&stored, "Progressing"),
        ("True".into(), "RollingOut".into())
    );
    let status = stored.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://web.default.svc:8888")
    );
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=web,app.kubernetes.io/name=strata-server")
    );

    deployment_becomes_ready(&fake, "web", 1);
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    assert_eq!(
        condition(&stored, "Ready"),
        ("True".into(), "AllReplicasReady".into())
    );
    assert_eq!(
        condition(&stored, "Degraded"),
        ("False".into(), "AsExpected".into())
    );
    assert_eq!(stored.status.as_ref().unwrap().ready_replicas, 1);
    assert_eq!(ready_gauge.get(), 1);
    assert!(ctx
        .metrics
        .render()
        .contains("strata_operator_storage_service_ready{name=\"web\",namespace=\"default\"} 1"));
    assert_eq!(
        stored.status.as_ref().unwrap().replicas_summary.as_deref(),
        Some("1/1")
    );
    let writes = fake.writes();
    assert!(
        writes
            .iter()
            .all(|w| w.path.ends_with("/status") || w.path.contains("/events")),
        "only status (and a Ready event) may change: {writes:?}"
    );
}

#[tokio::test]
async fn unchanged_resource_makes_zero_writes() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("quiet");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    deployment_becomes_ready(&fake, "quiet", 1);
    reconcile_stored(&fake, &obj, &ctx).await;

    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    reconcile_stored(&fake, &obj, &ctx).await;
    // Children come from the caches, the service is Ready (no pod listing) and the
    // status is unchanged: a steady-state reconcile costs no API call at all.
    let log = fake.log();
    let paths: Vec<_> = log.iter().map(|r| (&r.method, &r.path)).collect();
    assert!(log.is_empty(), "steady state called the API: {paths:?}");
}

/// Before the watches have listed, children are read with a GET each, and an unchanged
/// service still writes nothing.
#[tokio::test]
async fn unsynced_caches_fall_back_to_reads_and_still_write_nothing() {
    let (fake, ctx) = start_unsynced(Capabilities::default());
    let obj = common::service("cold");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    deployment_becomes_ready(&fake, "cold", 1);
    reconcile_stored(&fake, &obj, &ctx).await;

    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    assert_eq!(
        child_gets(&fake),
        [
            "/api/v1/namespaces/default/configmaps/cold-config",
            "/apis/apps/v1/namespaces/default/deployments/cold",
            "/api/v1/namespaces/default/services/cold",
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets/cold",
            "/apis/apps/v1/namespaces/default/statefulsets/cold",
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/cold",
            "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/cold",
        ]
    );
    let writes = fake.writes();
    assert!(writes.is_empty(), "steady state wrote: {writes:?}");

    // Once the caches sync, the same reconcile reads nothing from the API.
    sync_cache(&fake, &ctx);
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    assert!(child_gets(&fake).is_empty(), "{:?}", child_gets(&fake));
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

/// A cache can lag the cluster: a child it still holds but the API has already
/// deleted is pruned without error (the 404 means the work is done).
#[tokio::test]
async fn pruning_a_child_the_cache_still_holds_tolerates_not_found() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("lag");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    let pdb = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/lag";
    sync_cache(&fake, &ctx);
    fake.remove(pdb).expect("pdb applied");
    update_spec(&fake, &obj, |s| {
        s.pod_disruption_budget = Some(PodDisruptionBudgetSpec {
            enabled: false,
            min_available: None,
            max_unavailable: None,
        });
    });
    fake.clear_log();
    // No sync here: the cache still holds the PodDisruptionBudget.
    reconcile(Arc::new(fake.service(&obj)), ctx.clone())
        .await
        .unwrap();
    assert!(fake
        .writes()
        .iter()
        .any(|w| w.method == Method::DELETE && w.path == pdb));
    assert!(child_gets(&fake).is_empty(), "{:?}", child_gets(&fake));
}

#[tokio::test]
async fn spec_change_rolls_a_new_config_hash() {
    let (fake, ctx) = start(Capabilities::default());
    let mut obj = common::service("conf");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    let hash = |fake: &FakeApi| {
        fake.get(&deployment_path("conf")).unwrap()["spec"]["template"]["metadata"]["annotations"]
            [CONFIG_HASH_ANNOTATION]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = hash(&fake);

    obj.spec.limits = Some(LimitsSpec {
        max_concurrency: Some(32),
        ..Default::default()
    });
    obj.metadata.generation = Some(2);
    let mut stored = fake.service(&obj);
    stored.spec = obj.spec.clone();
    stored.metadata.generation = Some(2);
    fake.put_service(&stored);
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;

    let after = hash(&fake);
    assert_ne!(
        before, after,
        "config change must change the pod annotation"
    );
    let cm = fake
        .get("/api/v1/namespaces/default/configmaps/conf-config")
        .unwrap();
    assert!(cm["data"]["strata.yaml"]
        .as_str()
        .unwrap()
        .contains("max_concurrency: 32"));
    let applied: Vec<String> = fake
        .writes()
        .iter()
        .filter(|w| !w.path.ends_with("/status"))
        .map(|w| w.path.clone())
        .collect();
    assert_eq!(
        applied,
        [
            "/api/v1/namespaces/default/configmaps/conf-config",
            "/apis/apps/v1/namespaces/default/deployments/conf",
        ],
        "only the changed children are applied"
    );
    assert_eq!(
        fake.service(&obj).status.unwrap().observed_generation,
        Some(2)
    );
}

#[tokio::test]
async fn deleted_child_is_reapplied() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("heal");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    deployment_becomes_ready(&fake, "heal", 1);
    reconcile_stored(&fake, &obj, &ctx).await;

    let svc_path = "/api/v1/namespaces/default/services/heal";
    fake.remove(svc_path).unwrap();
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, Method::PATCH);
    assert_eq!(writes[0].path, svc_path);
    assert!(fake.get(svc_path).is_some());
}

#[tokio::test]
async fn drifted_child_is_corrected() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("drift");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    let path = deployment_path("drift");
    let mut d = fake.get(&path).unwrap();
    d["spec"]["replicas"] = json!(7);
    fake.put(&path, d);
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    assert_eq!(fake.get(&path).unwrap()["spec"]["replicas"], 1);
    assert!(fake.writes().iter().any(|w| w.path == path));
}

#[tokio::test]
async fn invalid_spec_sets_degraded_and_emits_event() {
    let (fake, ctx) = start(Capabilities::default());
    let mut obj = common::service("broken");
    obj.spec.limits = Some(LimitsSpec {
        queue_depth: Some(10),
        ..Default::default()
    });
    fake.put_service(&obj);

    reconcile_stored(&fake, &obj, &ctx).await;

    let stored = fake.service(&obj);
    assert_eq!(
        condition(&stored, "Degraded"),
        ("True".into(), "InvalidSpec".into())
    );
    assert_eq!(
        condition(&stored, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );
    assert_eq!(
        ctx.metrics
            .storage_service_ready
            .with_label_values(&["default", "broken"])
            .get(),
        0
    );
    let message = condition_message(&stored, "Degraded");
    assert!(message.contains("limits.queueTimeout"), "{message}");
    let writes = fake.writes();
    assert!(
        writes
            .iter()
            .all(|w| w.path.ends_with("/status") || w.path.contains("/events")),
        "no child may be applied for an invalid spec: {writes:?}"
    );
    let events: Vec<_> = writes
        .iter()
        .filter(|w| w.method == Method::POST && w.path.contains("events.k8s.io"))
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body["type"], "Warning");
    assert_eq!(events[0].body["reason"], "InvalidSpec");

    // Reconciling again neither rewrites the status nor repeats the event.
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    assert_eq!(fake.writes().len(), 0, "{:?}", fake.writes());
}

/// An object stored before the single-node rule existed (or with validation off) that
/// asks a filesystem service for more pods or an autoscaler: `Degraded` with a message
/// that says what to do, and the running Deployment keeps its one replica.
#[tokio::test]
async fn single_node_backend_is_not_scaled_up() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("solo");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    let before = fake
        .get(&deployment_path("solo"))
        .expect("deployment applied");
    assert_eq!(before["spec"]["replicas"], 1);

    for change in [
        (|s: &mut StorageServiceSpec| s.replicas = 3) as fn(&mut StorageServiceSpec),
        |s: &mut StorageServiceSpec| {
            s.replicas = 1;
            s.autoscaling = Some(AutoscalingSpec {
                min_replicas: 1,
                max_replicas: 5,
                target_cpu_utilization_percentage: Some(60),
                target_in_flight_percentage: None,
            });
        },
    ] {
        update_spec(&fake, &obj, change);
        fake.clear_log();
        reconcile_stored(&fake, &obj, &ctx).await;
        let stored = fake.service(&obj);
        assert_eq!(
            condition(&stored, "Degraded"),
            ("True".into(), "InvalidSpec".into())
        );
        let message = condition_message(&stored, "Degraded");
        assert!(message.contains("use a shared backend"), "{message}");
        assert!(
            message.contains("bigtable, s3compatible or tiered"),
            "{message}"
        );
        let writes = fake.writes();
        assert!(
            writes
                .iter()
                .all(|w| w.path.ends_with("/status") || w.path.contains("/events")),
            "nothing may be scaled: {writes:?}"
        );
        assert_eq!(
            fake.get(&deployment_path("solo")).unwrap()["spec"]["replicas"],
            1
        );
        assert!(fake
            .get("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/solo")
            .is_none());
    }

    // The same request on a shared backend scales out.
    update_spec(&fake, &obj, |s| {
        s.storage = common::shared_storage();
        s.autoscaling = None;
        s.replicas = 3;
    });
    reconcile_stored(&fake, &obj, &ctx).await;
    assert_eq!(
        fake.get(&deployment_path("solo")).unwrap()["spec"]["replicas"],
        3
    );
    let stored = fake.service(&obj);
    assert_ne!(condition(&stored, "Degraded").0, "True");
}

#[tokio::test]
async fn paused_service_changes_no_child() {
    let (fake, ctx) = start(Capabilities::default());
    let mut obj = common::service("hold");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;

    obj.spec.paused = true;
    let mut stored = fake.service(&obj);
    stored.spec.paused = true;
    fake.put_service(&stored);
    fake.remove("/api/v1/namespaces/default/services/hold");
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    let child_writes: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|w| !w.path.ends_with("/status") && !w.path.contains("/events"))
        .collect();
    assert!(child_writes.is_empty(), "{child_writes:?}");
    assert_eq!(
        condition(&fake.service(&obj), "Progressing"),
        ("False".into(), "Paused".into())
    );
}

#[tokio::test]
async fn children_no_longer_desired_are_deleted() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("prune");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    let pdb = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/prune";
    assert!(fake.get(pdb).is_some());

    let mut stored = fake.service(&obj);
    stored.spec.pod_disruption_budget = Some(strata_operator::api::PodDisruptionBudgetSpec {
        enabled: false,
        min_available: None,
        max_unavailable: None,
    });
    fake.put_service(&stored);
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    assert!(fake.get(pdb).is_none());
    assert!(fake
        .writes()
        .iter()
        .any(|w| w.method == Method::DELETE && w.path == pdb));
}

#[tokio::test]
async fn monitoring_children_only_with_the_api() {
    let (fake, ctx) = start(Capabilities { monitoring: true });
    let obj = common::example("monitoring");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    assert!(fake
        .get("/apis/monitoring.coreos.com/v1/namespaces/storage/servicemonitors/observed")
        .is_some());
    assert!(fake
        .get("/apis/monitoring.coreos.com/v1/namespaces/storage/prometheusrules/observed")
        .is_some());

    let (fake, ctx) = start(Capabilities { monitoring: false });
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    assert!(fake
        .log()
        .iter()
        .all(|r| !r.path.contains("monitoring.coreos.com")));
}

#[tokio::test]
async fn pending_volume_is_reported() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::example("filesystem-persistent");
    fake.put_service(&obj);
    fake.put(
        "/api/v1/namespaces/storage/persistentvolumeclaims/data-objects-0",
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-objects-0", "namespace": "storage"},
            "spec": {"storageClassName": "fast-ssd"},
            "status": {"phase": "Pending"}
        }),
    );
    reconcile_stored(&fake, &obj, &ctx).await;
    assert!(fake
        .get("/apis/apps/v1/namespaces/storage/statefulsets/objects")
        .is_some());
    let stored = fake.service(&obj);
    assert_eq!(
        condition(&stored, "Degraded"),
        ("True".into(), "VolumePending".into())
    );
    let msg = condition_message(&stored, "Degraded");
    assert!(
        msg.contains("fast-ssd") && msg.contains("data-objects-0"),
        "{msg}"
    );
}

#[tokio::test]
async fn rejected_apply_is_degraded_and_retried() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::example("filesystem-persistent");
    fake.put_service(&obj);
    let sts = "/apis/apps/v1/namespaces/storage/statefulsets/objects";
    fake.reject(sts);
    let err = reconcile(Arc::new(fake.service(&obj)), ctx.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("apply StatefulSet objects failed"),
        "{err}"
    );
    let stored = fake.service(&obj);
    assert_eq!(
        condition(&stored, "Degraded"),
        ("True".into(), "ApplyFailed".into())
    );
    let message = condition_message(&stored, "Degraded");
    assert!(message.contains("volumeClaimTemplates"), "{message}");
    let first = strata_operator::controller::error_policy(Arc::new(obj.clone()), &err, ctx.clone());
    let second = strata_operator::controller::error_policy(Arc::new(obj), &err, ctx.clone());
    assert_eq!(
        first,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
    );
    assert_eq!(
        second,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(10))
    );
}

#[tokio::test]
async fn failed_status_write_is_an_error() {
    let (_fake, ctx) = start(Capabilities::default());
    let obj = common::service("status-path");
    // No StorageService stored: the status patch 404s, so the reconcile must fail
    // (and be retried by error_policy) rather than pretend success.
    let err = reconcile(Arc::new(obj.clone()), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Kubernetes API"), "{err}");
    let action = strata_operator::controller::error_policy(Arc::new(obj), &err, ctx.clone());
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
    );
}

/// Replaces the stored spec (as `kubectl apply` would) and bumps the generation.
fn update_spec(fake: &FakeApi, obj: &StorageService, change: impl FnOnce(&mut StorageServiceSpec)) {
    let mut stored = fake.service(obj);
    change(&mut stored.spec);
    stored.metadata.generation = Some(stored.metadata.generation.unwrap_or(1) + 1);
    fake.put_service(&stored);
}

/// A service's whole life — every optional child switched on, the workload swapped for
/// a StatefulSet and back, everything switched off again — must stay inside the RBAC
/// rules (the fake enforces that) and must use every verb those rules grant, except
/// the ones only the watch machinery and the Event recorder's series updates use
/// (`tests/run.rs` checks the watches' `list` and `watch` on the live controller).
///
/// It runs twice: with synced caches, the path production takes once the watches have
/// listed, where the only grants left unused must be the `get`s of children (the
/// fallback reads); and with unsynced caches, where those reads happen too, so that
/// between the two every grant is used.
#[tokio::test]
async fn lifecycle_uses_exactly_the_granted_verbs() {
    let (fake, ctx) = start(Capabilities { monitoring: true });
    lifecycle(&fake, &ctx).await;
    assert_eq!(
        lifecycle::unused_grants(&fake.used(), false),
        lifecycle::fallback_reads(),
        "with synced caches, exactly the fallback reads of children stay unused"
    );

    // Before the watches have listed, children are read with `get`: every grant is used.
    let (fake, ctx) = start_unsynced(Capabilities { monitoring: true });
    lifecycle(&fake, &ctx).await;
    let unused = lifecycle::unused_grants(&fake.used(), false);
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
}

/// Drives one service through its whole life (see [`common::lifecycle`]); every
/// reconcile is checked against the RBAC rules and, with synced caches, for child
/// reads from the API.
async fn lifecycle(fake: &FakeApi, ctx: &Arc<Context>) {
    let obj = lifecycle::everything_on();
    let (secret_path, secret) = lifecycle::secret();
    fake.put(&secret_path, secret);
    fake.put_service(&obj);
    reconcile_stored(fake, &obj, ctx).await;
    for path in lifecycle::OPTIONAL_CHILDREN {
        assert!(fake.get(path).is_some(), "{path}");
    }

    update_spec(fake, &obj, lifecycle::to_statefulset);
    reconcile_stored(fake, &obj, ctx).await;
    assert!(fake.get(lifecycle::DEPLOYMENT).is_none());
    assert!(fake.get(lifecycle::STATEFULSET).is_some());

    update_spec(fake, &obj, lifecycle::everything_off);
    reconcile_stored(fake, &obj, ctx).await;
    assert!(fake.get(lifecycle::STATEFULSET).is_none());
    assert!(fake.get(lifecycle::DEPLOYMENT).is_some());
    assert!(fake.get(lifecycle::NETWORK_POLICY).is_none());

    update_spec(fake, &obj, lifecycle::invalid);
    reconcile_stored(fake, &obj, ctx).await;
}

#[tokio::test]
async fn missing_key_secret_degrades_without_touching_the_workload() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service_with_keys("locked");
    fake.put_service(&obj);

    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    assert_eq!(
        condition(&stored, "Degraded"),
        ("True".into(), "SecretMissing".into())
    );
    let msg = condition_message(&stored, "Degraded");
    assert!(msg.contains("Secret default/relay-keys"), "{msg}");
    assert!(msg.contains("auth.keys.relay"), "{msg}");
    assert_eq!(condition(&stored, "Ready").0, "False");
    let applies: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|w| w.method == Method::PATCH && !w.path.ends_with("/status"))
        .collect();
    assert!(applies.is_empty(), "nothing may be applied: {applies:?}");
    assert!(fake.get(&deployment_path("locked")).is_none());

    // The Secret appears, but without the older key version: still degraded, named.
    let secret_path = object_path("v1", "default", "secrets", "relay-keys");
    fake.put(&secret_path, common::relay_secret(&["v2.pem"]));
    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    let msg = condition_message(&stored, "Degraded");
    assert!(msg.contains("has no key v1.pem"), "{msg}");
    assert!(fake.get(&deployment_path("locked")).is_none());

    // Complete: the workload is created with the key mounted read-only.
    fake.put(&secret_path, common::relay_secret(&["v2.pem", "v1.pem"]));
    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    assert_eq!(condition(&stored, "Degraded").1, "AsExpected");
    let d = fake.get(&deployment_path("locked")).expect("deployment");
    let pod = &d["spec"]["template"]["spec"];
    let vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "relay-keys")
        .expect("secret volume");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == vol["name"])
        .expect("mount");
    assert_eq!(mount["mountPath"], "/var/run/secrets/strata/auth/relay");
    assert_eq!(mount["readOnly"], true);
    let cm = fake
        .get(&object_path("v1", "default", "configmaps", "locked-config"))
        .unwrap();
    let yaml = cm["data"]["strata.yaml"].as_str().unwrap();
    assert!(
        yaml.contains("/var/run/secrets/strata/auth/relay/v2.pem"),
        "{yaml}"
    );
    assert!(!yaml.contains("LS0t"), "no key material in the config");

    // Ready with keys: the message does not claim access control is off.
    deployment_becomes_ready(&fake, "locked", 1);
    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    assert_eq!(condition(&stored, "Ready").0, "True");
    assert!(!condition_message(&stored, "Ready").contains("access control is off"));

    // The Secret disappears while pods serve, and the spec changes: Degraded, the
    // running pods keep serving (Ready), and neither the Deployment nor the ConfigMap
    // is touched.
    fake.remove(&secret_path);
    update_spec(&fake, &obj, |s| s.auth.as_mut().unwrap().enforce = false);
    fake.clear_log();
    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    assert_eq!(
        condition(&stored, "Degraded"),
        ("True".into(), "SecretMissing".into())
    );
    assert_eq!(condition(&stored, "Ready").0, "True");
    let writes: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|w| !w.path.ends_with("/status") && !w.path.contains("/events"))
        .collect();
    assert!(writes.is_empty(), "nothing may be applied: {writes:?}");
}

#[tokio::test]
async fn ready_message_says_access_control_is_off() {
    let (fake, ctx) = start(Capabilities::default());
    let obj = common::service("open");
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    deployment_becomes_ready(&fake, "open", 1);
    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    assert_eq!(condition(&stored, "Ready").0, "True");
    let msg = condition_message(&stored, "Ready");
    assert!(msg.contains("access control is off"), "{msg}");
}

#[tokio::test]
async fn missing_auth_is_an_invalid_spec_saying_what_to_write() {
    let (fake, ctx) = start(Capabilities::default());
    let mut obj = common::service("unstated");
    obj.spec.auth = None;
    fake.put_service(&obj);
    reconcile_stored(&fake, &obj, &ctx).await;
    let stored = fake.service(&obj);
    assert_eq!(
        condition(&stored, "Degraded"),
        ("True".into(), "InvalidSpec".into())
    );
    let msg = condition_message(&stored, "Degraded");
    assert!(msg.contains("`auth: {enforce: false}`"), "{msg}");
    assert!(fake.get(&deployment_path("unstated")).is_none());
}
