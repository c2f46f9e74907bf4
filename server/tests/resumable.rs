//! Resumable uploads (api-newest §2.9): the real Rust client 0.3.0's
//! `resumable-upload-api`, raw HTTP for the status codes, a restart between chunks, and
//! 501 from a backend that cannot stage uploads.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use objectstore_client::{Client, Error, Session, SessionToken, UploadProgress, Usecase};
use strata_server::app::{self, RunningServer};
use strata_server::backend::memory::MemoryBackend;
use strata_server::backend::{Backend, BackendError, PayloadStream, StoredObject};
use strata_server::config::{Config, StorageConfig};
use strata_server::object::{Metadata, ObjectId};
use tempfile::TempDir;

async fn start(dir: &TempDir) -> RunningServer {
    let mut config = Config::default();
    config.auth = strata_server::config::AuthConfig::disabled();
    config.http.addr = "127.0.0.1:0".parse().expect("address");
    config.http.drain_file = dir.path().join("strata.down");
    config.storage = StorageConfig::Filesystem {
        path: dir.path().join("data"),
    };
    app::start(config).await.expect("server starts")
}

fn session(server: &RunningServer) -> Session {
    let client = Client::builder(format!("http://{}", server.addr()))
        .build()
        .expect("client builds");
    Usecase::new("resumable")
        .expect("valid usecase")
        .for_organization(1)
        .session(&client)
        .expect("session")
}

async fn read(session: &Session, key: &str) -> Option<Bytes> {
    match session.get(key).send().await.expect("get") {
        Some(got) => Some(got.payload().await.expect("payload")),
        None => None,
    }
}

fn object_url(server: &RunningServer, key: &str) -> String {
    format!("http://{}/v1/objects/resumable/org=1/{key}", server.addr())
}

fn ops(server: &RunningServer, operation: &str) -> u64 {
    server
        .metrics()
        .operations
        .with_label_values(&[operation, "ok"])
        .get()
}

#[tokio::test]
async fn rust_client_creates_writes_queries_resumes_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir).await;
    let s = session(&server);
    let upload = s
        .create_upload(10)
        .key("doc")
        .content_type("text/plain")
        .send()
        .await
        .expect("create")
        .expect("supported, not 501");
    assert_eq!(upload.key(), "doc");
    assert_eq!(
        upload.put(0, "01234").send().await.unwrap(),
        UploadProgress::Incomplete { offset: 5 }
    );
    assert_eq!(
        upload.progress().send().await.unwrap(),
        UploadProgress::Incomplete { offset: 5 }
    );
    // A chunk whose response is lost: the client never learns the outcome and asks.
    let lost = reqwest::Client::new()
        .put(format!(
            "{}?session={}",
            object_url(&server, "doc"),
            upload.token().to_base64url()
        ))
        .header("upload-offset", "5")
        .body("567")
        .send()
        .await
        .unwrap();
    drop(lost);
    let offset = match upload.progress().send().await.unwrap() {
        UploadProgress::Incomplete { offset } => offset,
        UploadProgress::Complete => panic!("not complete yet"),
    };
    assert_eq!(offset, 8);
    assert!(
        read(&s, "doc").await.is_none(),
        "nothing is published early"
    );
    assert_eq!(
        upload
            .put(offset, &b"0123456789"[offset as usize..])
            .send()
            .await
            .unwrap(),
        UploadProgress::Complete
    );
    assert_eq!(read(&s, "doc").await.unwrap(), "0123456789");
    let meta = s.head("doc").send().await.unwrap().unwrap();
    assert_eq!(meta.content_type, "text/plain");
    // The final response may be lost too: the offset query reports completion again.
    assert_eq!(
        upload.progress().send().await.unwrap(),
        UploadProgress::Complete
    );
    assert_eq!(ops(&server, "resumable_create"), 1);

    // Cancel: afterwards the session is unavailable and nothing was stored.
    let doomed = s
        .create_upload(4)
        .key("doomed")
        .send()
        .await
        .unwrap()
        .unwrap();
    doomed.put(0, "ab").send().await.unwrap();
    doomed.cancel().send().await.unwrap();
    assert!(matches!(
        doomed.progress().send().await,
        Err(Error::ResumableUploadUnavailable)
    ));
    assert!(matches!(
        doomed.cancel().send().await,
        Err(Error::ResumableUploadUnavailable)
    ));
    assert!(read(&s, "doomed").await.is_none());

    // Without a key the server picks a UUIDv4.
    let anon = s.create_upload(3).send().await.unwrap().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(anon.key()).unwrap().get_version_num(),
        4
    );
    assert_eq!(
        anon.put(0, "xyz").send().await.unwrap(),
        UploadProgress::Complete
    );
    assert_eq!(read(&s, anon.key()).await.unwrap(), "xyz");
    server.shutdown().await;
}

#[tokio::test]
async fn a_restart_between_chunks_keeps_acknowledged_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir).await;
    let s = session(&server);
    let upload = s
        .create_upload(6)
        .key("survivor")
        .send()
        .await
        .unwrap()
        .unwrap();
    upload.put(0, "abc").send().await.unwrap();
    let token = upload.token().to_base64url();
    server.shutdown().await;

    let server = start(&dir).await;
    let s = session(&server);
    let resumed = s.resume_upload("survivor", SessionToken::from_base64url(&token).unwrap());
    assert_eq!(
        resumed.progress().send().await.unwrap(),
        UploadProgress::Incomplete { offset: 3 }
    );
    assert_eq!(
        resumed.put(3, "def").send().await.unwrap(),
        UploadProgress::Complete
    );
    assert_eq!(read(&s, "survivor").await.unwrap(), "abcdef");
    server.shutdown().await;
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).unwrap().ino()
}

/// A session above the filesystem backend's inline threshold stages an object file from
/// create on, keeps its bytes across a restart between chunks, and on the last byte
/// becomes the object by a link, not a copy: the object's file is the staged inode and
/// staging holds no data afterwards.
#[tokio::test]
async fn a_large_session_on_the_filesystem_is_adopted_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir).await;
    let s = session(&server);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 + i / 511) as u8).collect();
    let upload = s
        .create_upload(data.len() as u64)
        .key("big")
        .content_type("application/x-big")
        .send()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        upload
            .put(0, data[..100_000].to_vec())
            .send()
            .await
            .unwrap(),
        UploadProgress::Incomplete { offset: 100_000 }
    );
    let token = upload.token().to_base64url();
    server.shutdown().await;

    let server = start(&dir).await;
    let s = session(&server);
    let resumed = s.resume_upload("big", SessionToken::from_base64url(&token).unwrap());
    assert_eq!(
        resumed.progress().send().await.unwrap(),
        UploadProgress::Incomplete { offset: 100_000 }
    );
    assert_eq!(
        resumed
            .put(100_000, data[100_000..250_000].to_vec())
            .send()
            .await
            .unwrap(),
        UploadProgress::Incomplete { offset: 250_000 }
    );
    let sessions = dir.path().join("data/uploads/resumable");
    let staged: Vec<_> = files_under(&sessions)
        .into_iter()
        .filter(|p| p.ends_with("data"))
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    let staged_inode = inode(&staged[0]);
    assert_eq!(
        resumed
            .put(250_000, data[250_000..].to_vec())
            .send()
            .await
            .unwrap(),
        UploadProgress::Complete
    );
    assert_eq!(read(&s, "big").await.unwrap(), data);
    let meta = s.head("big").send().await.unwrap().unwrap();
    assert_eq!(meta.content_type, "application/x-big");

    let objects = files_under(&dir.path().join("data/objects"));
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(
        inode(&objects[0]),
        staged_inode,
        "the object file is the staged file, not a copy"
    );
    assert!(
        !files_under(&sessions).iter().any(|p| p.ends_with("data")),
        "nothing left in staging"
    );
    // The session reports completion and refuses more bytes, as before, with no
    // `done` marker: `session.json` without `data` is the finished record.
    assert_eq!(
        resumed.progress().send().await.unwrap(),
        UploadProgress::Complete
    );
    let left = files_under(&sessions);
    assert!(
        left.iter()
            .all(|p| p.ends_with("session.json") || p.ends_with("secret")),
        "{left:?}"
    );
    assert!(left.iter().any(|p| p.ends_with("session.json")), "{left:?}");
    server.shutdown().await;
    let server = start(&dir).await;
    assert_eq!(read(&session(&server), "big").await.unwrap(), data);
    let http = reqwest::Client::new();
    let url = format!("{}?session={token}", object_url(&server, "big"));
    let r = http
        .put(&url)
        .header("upload-offset", "0")
        .body("more")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410, "a finished session takes no bytes");
    let r = http.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 410, "nor is it cancelled");
    let resumed =
        session(&server).resume_upload("big", SessionToken::from_base64url(&token).unwrap());
    assert_eq!(
        resumed.progress().send().await.unwrap(),
        UploadProgress::Complete
    );
    server.shutdown().await;
}

#[tokio::test]
async fn raw_status_codes_and_token_binding() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir).await;
    let http = reqwest::Client::new();
    let create = |key: &str| {
        http.put(format!(
            "{}?upload_type=resumable",
            object_url(&server, key)
        ))
        .header("upload-length", "4")
    };
    let r = create("k").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["session"].as_str().unwrap().to_owned();
    let chunk = |key: &str, token: &str, offset: &str, body: &'static str| {
        http.put(format!("{}?session={token}", object_url(&server, key)))
            .header("upload-offset", offset)
            .header("content-length", body.len())
            .body(body)
    };

    // Create errors: bad Upload-Length, a body, both query parameters.
    for bad in ["", "x", "+4", "0"] {
        let r = http
            .put(format!(
                "{}?upload_type=resumable",
                object_url(&server, "bad")
            ))
            .header("upload-length", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
    }
    let r = create("bad").body("data").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .put(format!(
            "{}?upload_type=resumable&session={token}",
            object_url(&server, "k")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Chunk errors.
    let r = chunk("k", &token, "1", "x").send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["upload-offset"], "0");
    let r = chunk("k", &token, "abc", "x").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = chunk("k", &token, "2", "xyz").send().await.unwrap();
    assert_eq!(r.status(), 400, "beyond Upload-Length");
    let r = http
        .put(format!("{}?session={token}", object_url(&server, "k")))
        .header("upload-offset", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "offset query with a body");
    // A zero-length chunk never conflicts.
    let r = chunk("k", &token, "3", "").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "0");
    // Tampered, non-canonical, foreign-key and unknown tokens.
    let mut raw = SessionToken::from_base64url(&token).unwrap().into_bytes();
    raw[3] ^= 0x40;
    let tampered = SessionToken::new(raw).to_base64url();
    let r = chunk("k", &tampered, "0", "ab").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = chunk("k", &format!("{token}="), "0", "ab")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = chunk("other", &token, "0", "ab").send().await.unwrap();
    assert_eq!(r.status(), 404, "a token only addresses its own object");
    let r = chunk("k", "AAAA", "0", "ab").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .delete(format!("{}?session={token}", object_url(&server, "other")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Nothing was written by any of that.
    let r = chunk("k", &token, "0", "abcd").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = chunk("k", &token, "4", "").send().await.unwrap();
    assert_eq!(r.status(), 410, "a completed session is gone");
    let r = http.get(object_url(&server, "k")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), "abcd");
    assert_eq!(
        http.get(object_url(&server, "other"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    server.shutdown().await;
}

/// A backend that stores objects but cannot stage uploads.
#[derive(Debug, Default)]
struct NoStaging(MemoryBackend);

#[async_trait]
impl Backend for NoStaging {
    fn name(&self) -> &'static str {
        "no-staging"
    }
    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        self.0.put(id, metadata, payload).await
    }
    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        self.0.get(id).await
    }
    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        self.0.head(id).await
    }
    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        self.0.delete(id).await
    }
    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        self.0.update_metadata(id, expected, metadata).await
    }
    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        self.0.sweep_expired(now).await
    }
    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, bytes::Bytes)>,
    ) -> Result<bool, BackendError> {
        self.0.compare_and_swap(id, expected, new).await
    }
}

#[tokio::test]
async fn a_backend_without_staging_answers_501_for_resumable_and_multipart() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let metrics = strata_server::metrics::Metrics::new();
    let service = strata_server::service::StorageService::new(
        Arc::new(NoStaging::default()),
        &strata_server::config::ServiceConfig::default(),
        metrics.clone(),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = strata_server::http::AppState {
        service,
        metrics: metrics.clone(),
        drain_file: dir.path().join("down"),
        draining: Default::default(),
        access: strata_server::http::auth::Access::new(
            strata_server::auth::Authenticator::new(
                &strata_server::config::AuthConfig::disabled(),
                metrics.clone(),
            )
            .unwrap(),
            strata_server::limits::Admission::new(&Default::default(), &[], &Default::default())
                .unwrap(),
            metrics.clone(),
        ),
    };
    let app = strata_server::http::router(state, 100);
    for (method, uri) in [
        ("PUT", "/v1/objects/u1/org=1/k?upload_type=resumable"),
        ("POST", "/v1/objects/u1/org=1/?upload_type=resumable"),
        ("PUT", "/v1/objects:multipart/u1/org=1/k"),
        ("POST", "/v1/objects:multipart/u1/org=1/"),
    ] {
        let res = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("upload-length", "4")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 501, "{method} {uri}");
        assert_eq!(res.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["detail"], "service error: not implemented");
    }
    // Plain inserts still work.
    let res = app
        .oneshot(
            Request::put("/v1/objects/u1/org=1/k")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
