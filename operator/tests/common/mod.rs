//! Shared test helpers: StorageService fixtures and an in-memory fake API server
//! behind `tower_test::mock`, recording every request. It answers LIST (namespaced or
//! across namespaces, with equality label selectors) and WATCH (`?watch=true`: an open
//! stream of newline-delimited watch events, replaying what changed since the given
//! `resourceVersion`), so the real controller wiring can run against it.
#![allow(dead_code, missing_docs)]

pub mod lifecycle;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{json, Value};
use strata_operator::api::StorageService;

/// Directory of the example StorageServices used by golden and controller tests.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/examples")
}

/// Loads `tests/examples/<name>.yaml` as a stored object (uid, generation set).
pub fn example(name: &str) -> StorageService {
    let text = std::fs::read_to_string(examples_dir().join(format!("{name}.yaml"))).unwrap();
    let mut obj: StorageService = serde_yaml::from_str(&text).unwrap();
    stored(&mut obj);
    obj
}

/// Gives `obj` what the API server would: a uid and a generation.
pub fn stored(obj: &mut StorageService) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    obj.metadata.uid = Some(format!("uid-{name}"));
    obj.metadata.generation.get_or_insert(1);
    obj.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
}

/// A minimal stored StorageService called `name` in `default`.
pub fn service(name: &str) -> StorageService {
    let mut obj = StorageService::new(name, strata_operator::api::StorageServiceSpec::minimal());
    stored(&mut obj);
    obj
}

/// Storage on a shared backend (an S3-compatible bucket), which may scale out.
pub fn shared_storage() -> strata_operator::api::StorageSpec {
    serde_json::from_value(json!({
        "type": "s3compatible",
        "s3compatible": {"endpoint": "http://minio:9000", "bucket": "strata"},
    }))
    .unwrap()
}

/// A service whose tokens are verified with key `relay` from Secret `relay-keys`.
pub fn service_with_keys(name: &str) -> StorageService {
    let mut obj = service(name);
    obj.spec.auth = Some(
        serde_json::from_value(json!({"keys": {"relay": {
            "secretName": "relay-keys",
            "keyFiles": ["v2.pem", "v1.pem"],
            "maxPermissions": ["object.read", "object.write"],
        }}}))
        .unwrap(),
    );
    obj
}

/// The Secret `relay-keys` holding the key files `files`.
pub fn relay_secret(files: &[&str]) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|f| {
            (
                (*f).to_owned(),
                json!("LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K"),
            )
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "relay-keys", "namespace": "default"}, "data": data})
}

/// One request the fake saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// `content-type`: tells server-side apply from merge patches.
    pub content_type: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Seen {
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

/// In-memory objects by API path, plus a log of requests.
#[derive(Default)]
pub struct FakeState {
    pub objects: BTreeMap<String, Value>,
    pub log: Vec<Seen>,
    /// Requests the operator's RBAC rules would not allow.
    pub forbidden: Vec<String>,
    /// Paths whose apply the fake rejects with 422 (e.g. an immutable field).
    pub reject: Vec<String>,
    /// `(api group, resource, verb)` of every authorised request.
    pub used: std::collections::BTreeSet<(String, String, String)>,
    next_rv: u64,
    /// Open watch streams.
    watches: Vec<Watch>,
    /// Every change so far, so a watch started at an older `resourceVersion` misses
    /// nothing (as the API server's watch cache guarantees).
    history: Vec<Change>,
}

/// The response body type of the fake: whole JSON documents or open watch streams.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// One open watch: which collection, which labels, where its events go.
struct Watch {
    prefix: String,
    namespace: Option<String>,
    plural: String,
    selector: Vec<(String, String)>,
    events: mpsc::UnboundedSender<Bytes>,
}

/// One change of a stored object, as a watch event.
struct Change {
    rv: u64,
    path: String,
    kind: &'static str,
    object: Value,
}

/// Where an API path points: `prefix` is `/api/v1` or `/apis/<group>/<version>`.
struct Location {
    prefix: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
}

fn locate(path: &str) -> Option<Location> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (format!("/api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (*plural, None),
        [plural, name] => (*plural, Some((*name).to_owned())),
        _ => return None,
    };
    Some(Location {
        prefix,
        namespace,
        plural: plural.to_owned(),
        name,
    })
}

/// Percent-decodes one query value.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The value of query parameter `key`, decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| decode(v))
}

/// An equality-only label selector (`a=b,c=d`); anything else is a test bug.
fn parse_selector(query: &str) -> Vec<(String, String)> {
    let Some(selector) = query_param(query, "labelSelector") else {
        return Vec::new();
    };
    selector
        .split(',')
        .map(|term| {
            let (k, v) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .unwrap_or_else(|| panic!("unsupported label selector {selector}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn selects(selector: &[(String, String)], object: &Value) -> bool {
    selector
        .iter()
        .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v.as_str()))
}

/// The object as a LIST or watch returns it: with its namespace, which stored
/// apply bodies may leave out.
fn served(path: &str, object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(ns) = locate(path).and_then(|l| l.namespace) {
        if object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = json!(ns);
        }
    }
    object
}

impl Watch {
    fn matches(&self, path: &str, object: &Value) -> bool {
        let Some(at) = locate(path) else {
            return false;
        };
        at.name.is_some()
            && at.prefix == self.prefix
            && at.plural == self.plural
            && (self.namespace.is_none() || self.namespace == at.namespace)
            && selects(&self.selector, object)
    }

    /// Sends one event; false once the client has gone.
    fn send(&self, kind: &str, object: &Value) -> bool {
        let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
        line.push(b'\n');
        self.events.unbounded_send(Bytes::from(line)).is_ok()
    }
}

impl FakeState {
    /// Records a change of the object at `path` and tells every matching watch.
    fn changed(&mut self, path: &str, kind: &'static str, object: &Value) {
        let object = served(path, object);
        let rv = self.next_rv;
        self.watches
            .retain(|w| !w.matches(path, &object) || w.send(kind, &object));
        self.history.push(Change {
            rv,
            path: path.to_owned(),
            kind,
            object,
        });
    }
}

/// Handle on a running fake API server.
#[derive(Clone)]
pub struct FakeApi {
    pub state: Arc<Mutex<FakeState>>,
}

fn json_response(status: StatusCode, value: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).unwrap())).boxed_unsync())
        .unwrap()
}

fn not_found(path: &str) -> Response<FakeBody> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{path} not found"), "reason": "NotFound", "code": 404
        }),
    )
}

impl FakeApi {
    /// Starts the fake and returns a client talking to it.
    pub fn start() -> (kube::Client, FakeApi) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<FakeBody>>();
        let fake = FakeApi {
            state: Arc::new(Mutex::new(FakeState::default())),
        };
        let state = fake.state.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                };
                let seen = Seen {
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    method: parts.method.clone(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body,
                };
                let resp = handle_request(&state, &seen);
                state.lock().unwrap().log.push(seen);
                send.send_response(resp);
            }
        });
        let client = kube::Client::new(svc, "default");
        (client, fake)
    }

    /// Stores an object at its API path.
    pub fn put(&self, path: &str, value: Value) {
        let mut s = self.state.lock().unwrap();
        s.objects.insert(path.to_owned(), value);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    pub fn remove(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.remove(path)
    }

    /// Stores a StorageService where the controller would read and patch it.
    pub fn put_service(&self, obj: &StorageService) {
        self.put(&service_path(obj), serde_json::to_value(obj).unwrap());
    }

    /// The StorageService as the fake now holds it (status included).
    pub fn service(&self, obj: &StorageService) -> StorageService {
        serde_json::from_value(self.get(&service_path(obj)).unwrap()).unwrap()
    }

    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn used(&self) -> std::collections::BTreeSet<(String, String, String)> {
        self.state.lock().unwrap().used.clone()
    }

    pub fn reject(&self, path: &str) {
        self.state.lock().unwrap().reject.push(path.to_owned());
    }

    pub fn forbidden(&self) -> Vec<String> {
        self.state.lock().unwrap().forbidden.clone()
    }

    pub fn writes(&self) -> Vec<Seen> {
        self.log().into_iter().filter(Seen::is_write).collect()
    }
}

pub fn service_path(obj: &StorageService) -> String {
    format!(
        "/apis/strata.dev/v1alpha1/namespaces/{}/storageservices/{}",
        obj.metadata.namespace.as_deref().unwrap(),
        obj.metadata.name.as_deref().unwrap()
    )
}

/// Path of a namespaced object: `core` group for `""`.
pub fn object_path(group_version: &str, ns: &str, plural: &str, name: &str) -> String {
    if group_version == "v1" {
        format!("/api/v1/namespaces/{ns}/{plural}/{name}")
    } else {
        format!("/apis/{group_version}/namespaces/{ns}/{plural}/{name}")
    }
}

/// `(api group, resource[/subresource], has a name)` of a request path.
fn resource_of(path: &str) -> Option<(String, String, bool)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    match rest {
        [resource] => Some((group, (*resource).to_owned(), false)),
        [resource, _name] => Some((group, (*resource).to_owned(), true)),
        [resource, _name, sub] => Some((group, format!("{resource}/{sub}"), true)),
        _ => None,
    }
}

/// Whether the operator's own RBAC rules allow this request. An apply that creates
/// the object needs `create` as well as `patch`, as on a real API server.
fn verbs_of(
    method: &Method,
    path: &str,
    query: &str,
    creates: bool,
) -> Option<(String, String, Vec<&'static str>)> {
    let (group, resource, named) = resource_of(path)?;
    let verbs: &[&str] = match *method {
        Method::GET if is_watch(query) => &["watch"],
        Method::GET if named => &["get"],
        Method::GET => &["list"],
        Method::PATCH if creates => &["patch", "create"],
        Method::PATCH => &["patch"],
        Method::DELETE => &["delete"],
        Method::POST => &["create"],
        _ => return None,
    };
    Some((group, resource, verbs.to_vec()))
}

fn is_watch(query: &str) -> bool {
    query_param(query, "watch").as_deref() == Some("true")
}

fn authorized(method: &Method, path: &str, query: &str, creates: bool) -> bool {
    let Some((group, resource, verbs)) = verbs_of(method, path, query, creates) else {
        return false;
    };
    let rules = strata_operator::rbac::cluster_role_rules();
    verbs.iter().all(|verb| {
        rules.iter().any(|r| {
            r.api_groups.iter().flatten().any(|g| *g == group)
                && r.resources.iter().flatten().any(|res| *res == resource)
                && r.verbs.iter().any(|v| v == verb)
        })
    })
}

fn forbidden(path: &str) -> Response<FakeBody> {
    json_response(
        StatusCode::FORBIDDEN,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{path} is forbidden by the operator's RBAC rules"), "reason": "Forbidden", "code": 403
        }),
    )
}

fn handle_request(state: &Arc<Mutex<FakeState>>, req: &Seen) -> Response<FakeBody> {
    let mut s = state.lock().unwrap();
    let path = req.path.clone();
    let creates =
        req.method == Method::PATCH && !path.ends_with("/status") && !s.objects.contains_key(&path);
    if !authorized(&req.method, &path, &req.query, creates) {
        s.forbidden.push(format!("{} {}", req.method, path));
        return forbidden(&path);
    }
    if let Some((group, resource, verbs)) = verbs_of(&req.method, &path, &req.query, creates) {
        for verb in verbs {
            s.used
                .insert((group.clone(), resource.clone(), verb.to_owned()));
        }
    }
    match req.method {
        Method::GET if is_watch(&req.query) => watch(&mut s, &path, &req.query),
        Method::GET if locate(&path).is_some_and(|l| l.name.is_none() && l.namespace.is_none()) => {
            list_all(&s, &path, &req.query)
        }
        Method::GET => {
            if let Some(obj) = s.objects.get(&path) {
                return json_response(StatusCode::OK, obj);
            }
            // A collection: the direct children of `path`.
            let prefix = format!("{path}/");
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                .map(|(_, v)| v.clone())
                .collect();
            if path.ends_with("pods")
                || path.ends_with("persistentvolumeclaims")
                || !items.is_empty()
            {
                return json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                );
            }
            not_found(&path)
        }
        Method::PATCH if s.reject.contains(&path) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "spec.volumeClaimTemplates: Forbidden: updates to statefulset spec for fields other than 'replicas', 'template' are forbidden",
                "reason": "Invalid", "code": 422
            }),
        ),
        Method::PATCH => {
            s.next_rv += 1;
            let rv = s.next_rv.to_string();
            if let Some(base) = path.strip_suffix("/status") {
                let Some(obj) = s.objects.get_mut(base) else {
                    return not_found(base);
                };
                obj["status"] = req.body["status"].clone();
                obj["metadata"]["resourceVersion"] = json!(rv);
                let obj = obj.clone();
                s.changed(base, "MODIFIED", &obj);
                return json_response(StatusCode::OK, &obj);
            }
            let previous = s.objects.get(&path).cloned();
            let mut obj = if req.content_type.contains("apply-patch") {
                req.body.clone()
            } else {
                // merge patch (RFC 7386) over the stored object
                let Some(mut base) = previous.clone() else {
                    return not_found(&path);
                };
                merge(&mut base, &req.body);
                base
            };
            let uid = previous
                .as_ref()
                .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("uid-{rv}"));
            obj["metadata"]["uid"] = json!(uid);
            obj["metadata"]["resourceVersion"] = json!(rv);
            let generation = previous
                .as_ref()
                .map(|p| p["metadata"]["generation"].as_i64().unwrap_or(1) + 1)
                .unwrap_or(1);
            obj["metadata"]["generation"] = json!(generation);
            if let Some(status) = previous.as_ref().and_then(|p| p.get("status")) {
                obj["status"] = status.clone();
            }
            s.objects.insert(path.clone(), obj.clone());
            let kind = if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.changed(&path, kind, &obj);
            json_response(StatusCode::OK, &obj)
        }
        Method::DELETE => match s.objects.remove(&path) {
            Some(old) => {
                s.next_rv += 1;
                s.changed(&path, "DELETED", &old);
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                )
            }
            None => not_found(&path),
        },
        Method::POST => {
            let mut obj = req.body.clone();
            if obj["metadata"]["name"].is_null() {
                obj["metadata"]["name"] = json!("event-1");
            }
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let target = format!("{path}/{name}");
            if s.objects.contains_key(&target) {
                return json_response(
                    StatusCode::CONFLICT,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "already exists", "reason": "AlreadyExists", "code": 409}),
                );
            }
            s.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(s.next_rv.to_string());
            obj["metadata"]["uid"] = json!(format!("uid-{}", s.next_rv));
            s.objects.insert(target.clone(), obj.clone());
            s.changed(&target, "ADDED", &obj);
            json_response(StatusCode::CREATED, &obj)
        }
        _ => not_found(&path),
    }
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// LIST across namespaces (`/apis/<gv>/<plural>`): every stored object of that kind
/// the label selector picks, at the current `resourceVersion`; never paged.
fn list_all(s: &FakeState, path: &str, query: &str) -> Response<FakeBody> {
    let at = locate(path).expect("a collection path");
    let selector = parse_selector(query);
    let items: Vec<Value> = s
        .objects
        .iter()
        .filter(|(p, v)| {
            locate(p)
                .is_some_and(|l| l.prefix == at.prefix && l.plural == at.plural && l.name.is_some())
                && selects(&selector, v)
        })
        .map(|(p, v)| served(p, v))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "List",
                "metadata": {"resourceVersion": s.next_rv.to_string()}, "items": items}),
    )
}

/// WATCH: replays the changes after `resourceVersion`, then keeps the stream open for
/// later ones.
fn watch(s: &mut FakeState, path: &str, query: &str) -> Response<FakeBody> {
    let at = locate(path).expect("a collection path");
    let since: u64 = query_param(query, "resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let (events, lines) = mpsc::unbounded();
    let watch = Watch {
        prefix: at.prefix,
        namespace: at.namespace,
        plural: at.plural,
        selector: parse_selector(query),
        events,
    };
    for change in s.history.iter().filter(|c| c.rv > since) {
        if watch.matches(&change.path, &change.object) {
            watch.send(change.kind, &change.object);
        }
    }
    s.watches.push(watch);
    let body = StreamBody::new(lines.map(|line| Ok::<_, Infallible>(Frame::data(line))));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(body.boxed_unsync())
        .unwrap()
}

/// How long a test waits for the controller before failing.
pub const WAIT: Duration = Duration::from_secs(20);

impl FakeApi {
    /// Stores `value` at `path` as a client other than the operator would (a user, or
    /// another controller), telling the watches.
    pub fn update(&self, path: &str, value: Value) {
        let mut s = self.state.lock().unwrap();
        s.next_rv += 1;
        let rv = s.next_rv.to_string();
        let mut value = value;
        value["metadata"]["resourceVersion"] = json!(rv);
        let kind = if s.objects.contains_key(path) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        s.objects.insert(path.to_owned(), value.clone());
        s.changed(path, kind, &value);
    }

    /// Deletes the object at `path` as another client would, telling the watches.
    pub fn delete(&self, path: &str) -> Value {
        let mut s = self.state.lock().unwrap();
        let old = s.objects.remove(path).expect("object to delete");
        s.next_rv += 1;
        s.changed(path, "DELETED", &old);
        old
    }

    /// Paths of the collections being watched right now.
    pub fn watched(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.watches
            .iter()
            .filter(|w| !w.events.is_closed())
            .map(|w| format!("{}/{}", w.prefix, w.plural))
            .collect()
    }

    /// Waits (at most [`WAIT`]) until `done` holds, re-checking as requests arrive;
    /// panics naming `what` otherwise.
    pub async fn eventually(&self, what: &str, done: impl Fn(&FakeApi) -> bool) {
        let waited = tokio::time::timeout(WAIT, async {
            while !done(self) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out after {WAIT:?} waiting for {what}; requests: {:#?}",
            self.log()
                .iter()
                .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
                .collect::<Vec<_>>()
        );
    }
}
