//! Shared test helpers: StorageService fixtures and an in-memory fake API server
//! behind `tower_test::mock`, recording every request.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};
use strata_operator::api::StorageService;

/// Directory of the example StorageServices used by golden and controller tests.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/examples")
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
}

/// Handle on a running fake API server.
#[derive(Clone)]
pub struct FakeApi {
    pub state: Arc<Mutex<FakeState>>,
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

fn not_found(path: &str) -> Response<Body> {
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
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
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
    creates: bool,
) -> Option<(String, String, Vec<&'static str>)> {
    let (group, resource, named) = resource_of(path)?;
    let verbs: &[&str] = match *method {
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

fn authorized(method: &Method, path: &str, creates: bool) -> bool {
    let Some((group, resource, verbs)) = verbs_of(method, path, creates) else {
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

fn forbidden(path: &str) -> Response<Body> {
    json_response(
        StatusCode::FORBIDDEN,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{path} is forbidden by the operator's RBAC rules"), "reason": "Forbidden", "code": 403
        }),
    )
}

fn handle_request(state: &Arc<Mutex<FakeState>>, req: &Seen) -> Response<Body> {
    let mut s = state.lock().unwrap();
    let path = req.path.clone();
    let creates =
        req.method == Method::PATCH && !path.ends_with("/status") && !s.objects.contains_key(&path);
    if !authorized(&req.method, &path, creates) {
        s.forbidden.push(format!("{} {}", req.method, path));
        return forbidden(&path);
    }
    if let Some((group, resource, verbs)) = verbs_of(&req.method, &path, creates) {
        for verb in verbs {
            s.used
                .insert((group.clone(), resource.clone(), verb.to_owned()));
        }
    }
    match req.method {
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
                return json_response(StatusCode::OK, &obj.clone());
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
            s.objects.insert(path, obj.clone());
            json_response(StatusCode::OK, &obj)
        }
        Method::DELETE => match s.objects.remove(&path) {
            Some(_) => json_response(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ),
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
            s.objects.insert(target, obj.clone());
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
