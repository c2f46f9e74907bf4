//! The (small) I/O half of the operator: read children, apply what differs, report status.
//!
//! Everything decided here is delegated to pure code: [`render`](crate::render) says
//! what should exist, [`status`](crate::status) says how to describe what does. This
//! module only compares and writes, and writes nothing when nothing differs. Children
//! are read from the watch caches ([`ChildCache`]), so a quiet cluster costs no API
//! calls per reconcile at all beyond the Secrets the spec names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use crate::api::StorageService;
use crate::render::{self, selector_string, Capabilities, Child, MANAGER};
use crate::status::{self, Observed, ObservedWorkload, DEGRADED, READY};

mod cache;
mod context;
mod diff;

pub use cache::{Cached, ChildCache};
pub use context::Context;
pub use diff::{is_subset, parse_quantity};

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

/// A child as the watch cache holds it or, while its kind has not synced, as a GET
/// returns it.
async fn read_child(
    ctx: &Context,
    ns: &str,
    ar: &ApiResource,
    name: &str,
) -> Result<Option<Arc<DynamicObject>>, Error> {
    match ctx.children.get(ar, ns, name) {
        Cached::Present(obj) => Ok(Some(obj)),
        Cached::Absent => Ok(None),
        Cached::Unsynced => Ok(dynamic_api(&ctx.client, ns, ar)
            .get_opt(name)
            .await?
            .map(Arc::new)),
    }
}

/// Applies children that differ from the cluster, returning the workload as it now is.
#[tracing::instrument(level = "debug", skip_all, fields(children = children.len()))]
async fn apply_children(
    ctx: &Context,
    ns: &str,
    children: &[Child],
) -> Result<ObservedWorkload, Error> {
    let params = PatchParams::apply(MANAGER).force();
    let mut workload = ObservedWorkload::Missing;
    for child in children {
        let api = dynamic_api(&ctx.client, ns, &child.resource);
        let current = read_child(ctx, ns, &child.resource, &child.name).await?;
        let unchanged = match &current {
            Some(c) => is_subset(&child.object, &serde_json::to_value(c.as_ref())?),
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
                })
                .map(Arc::new)?
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
        if let Some(existing) = read_child(ctx, ns, &ar, &name).await? {
            if owned_by(&existing, &uid) {
                info!(kind = %ar.kind, %name, "deleting child that is no longer desired");
                ctx.metrics.writes.with_label_values(&["delete"]).inc();
                match dynamic_api(&ctx.client, ns, &ar)
                    .delete(&name, &DeleteParams::background())
                    .await
                {
                    // The cache may still hold an object that is already gone.
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.is_not_found() => {}
                    Err(source) => {
                        return Err(Error::Write {
                            verb: "delete",
                            kind: ar.kind.clone(),
                            name: name.clone(),
                            source: Box::new(source),
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

/// Checks that every Secret holding verification keys exists and has every listed key
/// file; returns what is wrong, naming the Secret. Reads only the Secrets the spec
/// names (`get`), never lists or caches them.
async fn check_secrets(
    ctx: &Context,
    ns: &str,
    obj: &StorageService,
) -> Result<Option<String>, Error> {
    let api = Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let mut problems = Vec::new();
    for (secret_name, files) in render::auth::secret_names(&obj.spec) {
        let kids = obj
            .spec
            .auth
            .iter()
            .flat_map(|a| a.keys.iter())
            .filter(|(_, k)| k.secret_name == secret_name)
            .map(|(kid, _)| format!("auth.keys.{kid}"))
            .collect::<Vec<_>>()
            .join(", ");
        match api.get_opt(&secret_name).await? {
            None => problems.push(format!(
                "Secret {ns}/{secret_name} (named by {kids}) does not exist: create it with the Ed25519 public key PEM file(s) {}",
                files.join(", ")
            )),
            Some(secret) => {
                let has = |f: &String| {
                    secret.data.as_ref().is_some_and(|d| d.contains_key(f))
                        || secret.string_data.as_ref().is_some_and(|d| d.contains_key(f))
                };
                let missing: Vec<&str> = files
                    .iter()
                    .filter(|f| !has(f))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!(
                        "Secret {ns}/{secret_name} (named by {kids}) has no key {}: add it or fix keyFiles",
                        missing.join(", ")
                    ));
                }
            }
        }
    }
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}

/// Reads the workload without changing it (paused or invalid services).
async fn read_workload(ctx: &Context, ns: &str, name: &str) -> Result<ObservedWorkload, Error> {
    for ar in [
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<StatefulSet>(&()),
    ] {
        if let Some(obj) = read_child(ctx, ns, &ar, name).await? {
            return to_workload(&ar.kind, &obj);
        }
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
#[tracing::instrument(level = "debug", skip_all)]
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
/// Runs in a `reconcile` span naming the service, so every log line of the pass (and
/// the error the controller reports) says which object it was about.
#[tracing::instrument(name = "reconcile", skip_all, fields(service = %key(&obj)))]
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
        secret_missing: None,
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
    if !obj.spec.paused {
        observed.secret_missing = check_secrets(ctx, &ns, obj).await?;
    }
    if let Some(problem) = &observed.secret_missing {
        // Applying would roll pods onto a mount that cannot be satisfied; keep the
        // running ones and look again soon (Secrets are not watched).
        info!(service = %key(obj), %problem, "not applying: a referenced Secret is unusable");
        observed.workload = read_workload(ctx, &ns, &name).await?;
    } else if obj.spec.paused {
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
    // A missing Secret is not watched: look again soon even while old pods serve.
    let requeue = if ready && observed.secret_missing.is_none() {
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
///
/// Each owned kind has exactly one watch: a reflector fills that kind's store in
/// [`Context::children`] and passes the same events on to the controller as triggers
/// (`owns_stream_with`), so reconciles read children from the cache the trigger came
/// through.
pub async fn run(ctx: Arc<Context>) {
    drive(controller(&ctx).shutdown_on_signal(), ctx).await;
}

/// Runs the same controller as [`run`] until `shutdown` resolves instead of a signal,
/// then lets in-flight reconciles finish; tests drive the real wiring through it.
pub async fn run_until(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    drive(controller(&ctx).graceful_shutdown_on(shutdown), ctx).await;
}

/// The controller of StorageServices with one reflector-backed watch per owned kind.
fn controller(ctx: &Context) -> Controller<StorageService> {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let mut controller = Controller::new(
        Api::<StorageService>::all(client.clone()),
        watcher::Config::default(),
    );
    for ar in render::managed_resources(ctx.capabilities()) {
        let writer = ctx.children.register(&ar);
        let events = watcher(
            Api::<DynamicObject>::all_with(client.clone(), &ar),
            owned.clone(),
        )
        .default_backoff();
        controller = controller.owns_stream_with(reflector(writer, events).touched_objects(), ar);
    }
    controller
}

/// Reconciles until the controller shuts down, keeping the per-service metrics in step
/// with the services that still exist.
async fn drive(controller: Controller<StorageService>, ctx: Arc<Context>) {
    let store = controller.store();
    let ctx_for_stream = ctx.clone();
    controller
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

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
