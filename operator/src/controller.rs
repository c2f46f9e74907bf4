//! The (small) I/O half of the operator: read children, apply what differs, report status.
//!
//! Everything decided here is delegated to pure code: [`render`](crate::render) says
//! what should exist, [`status`](crate::status) says how to describe what does. This
//! module only compares and writes, and writes nothing when nothing differs, so a
//! quiet cluster costs reads only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::api::StorageService;
use crate::metrics::Metrics;
use crate::render::{self, selector_string, Capabilities, Child, MANAGER};
use crate::status::{self, Observed, ObservedWorkload, DEGRADED, READY};

/// Requeue interval of a healthy service (a safety net; watches trigger the rest).
pub const RESYNC_READY: Duration = Duration::from_secs(300);
/// Requeue interval while a rollout is in progress or something is broken.
pub const RESYNC_PROGRESSING: Duration = Duration::from_secs(30);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile failed; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A read (or the status write) failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(Box<kube::Error>),
    /// Applying or deleting one child failed.
    #[error("{verb} {kind} {name} failed: {source}")]
    Write {
        /// `apply` or `delete`.
        verb: &'static str,
        /// Child kind.
        kind: String,
        /// Child name.
        name: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// An object could not be converted between JSON and its typed form.
    #[error("unexpected object shape: {0}")]
    Shape(#[from] serde_json::Error),
    /// The StorageService has no namespace (it is namespaced, so the API is broken).
    #[error("StorageService {0} has no namespace")]
    MissingNamespace(String),
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Self {
        Error::Kube(Box::new(err))
    }
}

/// Shared state of every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events about StorageServices.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    caps: RwLock<Capabilities>,
    failures: Mutex<HashMap<String, u32>>,
    managed: Mutex<HashMap<String, Vec<String>>>,
    /// Services with a published readiness gauge, so deleted ones are removed.
    ready_published: Mutex<std::collections::HashSet<(String, String)>>,
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

    fn record_managed(&self, key: &str, kinds: Vec<String>) {
        let mut managed = self.managed.lock().expect("managed lock");
        managed.insert(key.to_owned(), kinds);
        self.publish_managed(&managed);
    }

    /// Publishes whether one StorageService is Ready.
    fn record_ready(&self, ns: &str, name: &str, ready: bool) {
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

/// Discovers optional APIs: `monitoring.coreos.com/v1` with both kinds we render.
pub async fn discover(client: &Client) -> Capabilities {
    let monitoring = match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) => {
            let names: Vec<&str> = list.resources.iter().map(|r| r.name.as_str()).collect();
            names.contains(&"servicemonitors") && names.contains(&"prometheusrules")
        }
        Err(err) => {
            debug!(error = %err, "monitoring.coreos.com/v1 not served");
            false
        }
    };
    Capabilities { monitoring }
}

/// True when every field set in `desired` has the same value in `actual`. Fields the
/// API server adds (defaults, status, uid…) are ignored, so this is exactly "would a
/// server-side apply of `desired` change anything we own?".
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    subset_at(desired, actual, false)
}

/// Keys whose values are maps of resource quantities, which the API server stores in
/// canonical form (`1000m` comes back as `1`).
const QUANTITY_MAPS: [&str; 2] = ["requests", "limits"];

fn subset_at(desired: &Value, actual: &Value, quantities: bool) -> bool {
    match (desired, actual) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, v)| match a.get(k) {
            Some(av) => subset_at(v, av, quantities || QUANTITY_MAPS.contains(&k.as_str())),
            None => v.is_null() || v.as_object().is_some_and(|o| o.is_empty()),
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| subset_at(dv, av, false))
        }
        (Value::String(d), Value::String(a)) if quantities && d != a => {
            match (parse_quantity(d), parse_quantity(a)) {
                (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 4.0,
                _ => false,
            }
        }
        (d, a) => d == a,
    }
}

/// Parses a Kubernetes quantity (`500m`, `1.5Gi`, `2e3`) into its numeric value.
pub fn parse_quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let text = text.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    text.parse::<f64>().ok()
}

fn key(obj: &StorageService) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn dynamic_api(client: &Client, ns: &str, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, ar)
}

fn owned_by(obj: &DynamicObject, uid: &str) -> bool {
    obj.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

fn to_workload(kind: &str, obj: &DynamicObject) -> Result<ObservedWorkload, Error> {
    let value = serde_json::to_value(obj)?;
    Ok(match kind {
        "StatefulSet" => ObservedWorkload::StatefulSet(Box::new(serde_json::from_value(value)?)),
        _ => ObservedWorkload::Deployment(Box::new(serde_json::from_value(value)?)),
    })
}

/// Applies children that differ from the cluster, returning the workload as it now is.
async fn apply_children(
    ctx: &Context,
    ns: &str,
    children: &[Child],
) -> Result<ObservedWorkload, Error> {
    let params = PatchParams::apply(MANAGER).force();
    let mut workload = ObservedWorkload::Missing;
    for child in children {
        let api = dynamic_api(&ctx.client, ns, &child.resource);
        let current = api.get_opt(&child.name).await?;
        let unchanged = match &current {
            Some(c) => is_subset(&child.object, &serde_json::to_value(c)?),
            None => false,
        };
        let live = if unchanged {
            current.expect("unchanged implies present")
        } else {
            debug!(kind = %child.resource.kind, name = %child.name, created = current.is_none(), "applying");
            ctx.metrics.writes.with_label_values(&["apply"]).inc();
            api.patch(&child.name, &params, &Patch::Apply(&child.object))
                .await
                .map_err(|source| Error::Write {
                    verb: "apply",
                    kind: child.resource.kind.clone(),
                    name: child.name.clone(),
                    source: Box::new(source),
                })?
        };
        if matches!(child.resource.kind.as_str(), "Deployment" | "StatefulSet") {
            workload = to_workload(&child.resource.kind, &live)?;
        }
    }
    Ok(workload)
}

/// Deletes children of kinds that are no longer desired, if this service owns them.
async fn prune(
    ctx: &Context,
    obj: &StorageService,
    ns: &str,
    desired: &[Child],
) -> Result<(), Error> {
    let uid = obj.uid().unwrap_or_default();
    let name = obj.name_any();
    for ar in render::managed_resources(ctx.capabilities()) {
        if desired.iter().any(|c| c.resource.kind == ar.kind)
            || matches!(ar.kind.as_str(), "ConfigMap" | "Service")
        {
            continue;
        }
        let api = dynamic_api(&ctx.client, ns, &ar);
        if let Some(existing) = api.get_opt(&name).await? {
            if owned_by(&existing, &uid) {
                info!(kind = %ar.kind, %name, "deleting child that is no longer desired");
                ctx.metrics.writes.with_label_values(&["delete"]).inc();
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map_err(|source| Error::Write {
                        verb: "delete",
                        kind: ar.kind.clone(),
                        name: name.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
    }
    Ok(())
}

/// Reads the workload without changing it (paused or invalid services).
async fn read_workload(ctx: &Context, ns: &str, name: &str) -> Result<ObservedWorkload, Error> {
    if let Some(d) = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?
    {
        return Ok(ObservedWorkload::Deployment(Box::new(d)));
    }
    if let Some(s) = Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?
    {
        return Ok(ObservedWorkload::StatefulSet(Box::new(s)));
    }
    Ok(ObservedWorkload::Missing)
}

fn workload_ready(obj: &StorageService, w: &ObservedWorkload) -> bool {
    let (ready, updated) = match w {
        ObservedWorkload::Missing => return false,
        ObservedWorkload::Deployment(d) => {
            let s = d.status.clone().unwrap_or_default();
            (
                s.ready_replicas.unwrap_or(0),
                s.updated_replicas.unwrap_or(0),
            )
        }
        ObservedWorkload::StatefulSet(s) => {
            let s = s.status.clone().unwrap_or_default();
            (
                s.ready_replicas.unwrap_or(0),
                s.updated_replicas.unwrap_or(0),
            )
        }
    };
    ready >= obj.spec.replicas && updated >= obj.spec.replicas
}

/// Writes the status if (and only if) it differs, and emits Events for transitions a
/// human should see.
async fn publish_status(
    ctx: &Context,
    obj: &StorageService,
    ns: &str,
    observed: &Observed,
) -> Result<bool, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = status::compute(obj, observed, now);
    let old = obj.status.clone().unwrap_or_default();
    if obj.status.as_ref() == Some(&new) {
        return Ok(false);
    }
    let api: Api<StorageService> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": StorageService::api_version(&()),
        "kind": StorageService::kind(&()),
        "status": new,
    });
    ctx.metrics.writes.with_label_values(&["status"]).inc();
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;

    let reference = obj.object_ref(&());
    let was = |t: &str| {
        old.condition(t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let is = |t: &str| {
        new.condition(t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let mut events = Vec::new();
    if let Some(c) = new.condition(DEGRADED) {
        if c.status == "True" && was(DEGRADED) != is(DEGRADED) {
            events.push(Event {
                type_: EventType::Warning,
                reason: c.reason.clone(),
                note: Some(truncate(&c.message, 1000)),
                action: "Reconcile".into(),
                secondary: None,
            });
        }
    }
    if let Some(c) = new.condition(READY) {
        if c.status == "True" && was(READY).map(|w| w.0) != Some("True".into()) {
            events.push(Event {
                type_: EventType::Normal,
                reason: "Ready".into(),
                note: Some(truncate(&c.message, 1000)),
                action: "Reconcile".into(),
                secondary: None,
            });
        }
    }
    for ev in events {
        ctx.metrics.writes.with_label_values(&["event"]).inc();
        if let Err(err) = ctx.recorder.publish(&ev, &reference).await {
            // Events are best effort: losing one must not fail the reconcile.
            warn!(error = %err, reason = %ev.reason, "could not publish event");
        }
    }
    Ok(true)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Reconciles one StorageService: render, apply what differs, prune, report status.
pub async fn reconcile(obj: Arc<StorageService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok((_, true)) => "invalid",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    ctx.metrics
        .reconciliations
        .with_label_values(&[label])
        .inc();
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("failures lock")
            .remove(&key(&obj));
    }
    result.map(|(action, _)| action)
}

async fn reconcile_inner(obj: &StorageService, ctx: &Context) -> Result<(Action, bool), Error> {
    let ns = obj
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(obj.name_any()))?;
    let name = obj.name_any();
    let mut observed = Observed {
        invalid: None,
        apply_error: None,
        workload: ObservedWorkload::Missing,
        pods: Vec::new(),
        claims: Vec::new(),
        config_hash: None,
    };
    let rendered = match render::render(obj, ctx.capabilities()) {
        Ok(r) => r,
        Err(err) => {
            info!(service = %key(obj), error = %err, "invalid StorageService");
            observed.invalid = Some(err.to_string());
            observed.workload = read_workload(ctx, &ns, &name).await?;
            ctx.record_ready(&ns, &name, false);
            publish_status(ctx, obj, &ns, &observed).await?;
            // Nothing will change until the spec does.
            return Ok((Action::await_change(), true));
        }
    };
    let children = rendered.children();
    let mut apply_error = None;
    if obj.spec.paused {
        observed.workload = read_workload(ctx, &ns, &name).await?;
    } else {
        match apply_children(ctx, &ns, &children).await {
            Ok(w) => {
                observed.workload = w;
                observed.config_hash = Some(rendered.config_hash.clone());
                prune(ctx, obj, &ns, &children).await?;
                ctx.record_managed(
                    &key(obj),
                    children.iter().map(|c| c.resource.kind.clone()).collect(),
                );
            }
            Err(err) => {
                observed.apply_error = Some(err.to_string());
                observed.workload = read_workload(ctx, &ns, &name).await?;
                apply_error = Some(err);
            }
        }
    }
    let ready = workload_ready(obj, &observed.workload) && apply_error.is_none();
    ctx.record_ready(&ns, &name, ready);
    if !ready && observed.workload != ObservedWorkload::Missing {
        let lp = ListParams::default().labels(&selector_string(&name));
        observed.pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
            .list(&lp)
            .await?
            .items;
        if matches!(observed.workload, ObservedWorkload::StatefulSet(_)) {
            observed.claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
                .list(&lp)
                .await?
                .items;
        }
    }
    publish_status(ctx, obj, &ns, &observed).await?;
    if let Some(err) = apply_error {
        return Err(err);
    }
    let requeue = if ready {
        RESYNC_READY
    } else {
        RESYNC_PROGRESSING
    };
    Ok((Action::requeue(requeue), false))
}

/// Counts the failure and retries with exponential backoff (5 s doubling to 5 min), so
/// a broken API server or a rejected apply never turns into a hot loop.
pub fn error_policy(obj: Arc<StorageService>, err: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().expect("failures lock");
    let n = failures.entry(key(&obj)).or_insert(0);
    *n = n.saturating_add(1);
    let delay = backoff(*n);
    warn!(service = %key(&obj), error = %err, attempt = *n, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Delay before retry number `attempt` (1-based).
pub fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Runs the controller until SIGTERM/SIGINT, then lets in-flight reconciles finish.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let mut controller = Controller::new(
        Api::<StorageService>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
    .owns(Api::<Deployment>::all(client.clone()), owned.clone())
    .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
    .owns(Api::<Service>::all(client.clone()), owned.clone())
    .owns(
        Api::<PodDisruptionBudget>::all(client.clone()),
        owned.clone(),
    )
    .owns(
        Api::<HorizontalPodAutoscaler>::all(client.clone()),
        owned.clone(),
    );
    if ctx.capabilities().monitoring {
        for ar in [
            render::service_monitor::api_resource(),
            render::prometheus_rule::api_resource(),
        ] {
            controller = controller.owns_with(
                Api::<DynamicObject>::all_with(client.clone(), &ar),
                ar,
                owned.clone(),
            );
        }
    }
    let store = controller.store();
    let ctx_for_stream = ctx.clone();
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let live: Vec<String> = store.state().iter().map(|s| key(s)).collect();
            ctx_for_stream.retain_managed(&live);
            async move {
                match result {
                    Ok((o, _)) => debug!(service = %o, "reconciled"),
                    Err(err) => debug!(error = %err, "reconcile error"),
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_fields() {
        let desired = json!({"a": 1, "b": {"c": [ {"x": 1} ]}, "e": {}});
        let actual = json!({"a": 1, "b": {"c": [ {"x": 1, "y": 2} ], "d": 3}, "z": 0});
        assert!(is_subset(&desired, &actual));
        assert!(!is_subset(&json!({"a": 2}), &actual));
        assert!(!is_subset(&json!({"b": {"c": []}}), &actual));
    }

    #[test]
    fn quantities_compare_by_value() {
        let desired = json!({"resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}}});
        let actual = json!({"resources": {"requests": {"cpu": "1", "memory": "1073741824"}}});
        assert!(is_subset(&desired, &actual));
        let bigger = json!({"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}});
        assert!(!is_subset(&desired, &bigger));
        // outside resource maps strings stay strings
        assert!(!is_subset(
            &json!({"image": "a:1.0"}),
            &json!({"image": "a:1"})
        ));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536.0));
        assert_eq!(parse_quantity("nope"), None);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
