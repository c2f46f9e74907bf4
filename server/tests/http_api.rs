//! HTTP conformance of the object routes against `shared/objectstore-api.md` §2.2–§2.6,
//! §3, §4, §5 as amended by `shared/objectstore-api-newest.md` (the newest wins).
//!
//! Each test starts an in-process server on 127.0.0.1:0 with the filesystem backend in
//! a temporary directory. Requests go through reqwest, or through a raw TCP stream when
//! the exact bytes matter (paths with dot segments, chunked uploads, header name case).
//! After every rejected request the whole data directory is compared with a snapshot
//! taken before it: a rejected request must not change anything stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use strata_server::app::{self, RunningServer};
use strata_server::auth::AuthConfig;
use strata_server::config::{Config, StorageConfig};
use strata_server::object::expiration::parse_timestamp;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Prefix of every object URL used here: usecase `conf`, scopes `org=1;project=2`.
const OBJ: &str = "/v1/objects/conf/org=1;project=2";

/// A running server, its data directory and an HTTP client.
struct Harness {
    server: RunningServer,
    dir: TempDir,
    http: reqwest::Client,
}

/// One response, whichever way it was obtained.
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body expected ({e}): {:?}", self.text()))
    }

    /// A 400 with the upstream JSON error shape.
    fn assert_json_error(&self, status: StatusCode, detail_prefix: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "content-type {:?}",
            self.header("content-type")
        );
        let detail = self.json()["detail"]
            .as_str()
            .expect("detail is a string")
            .to_owned();
        assert!(
            detail.starts_with(detail_prefix),
            "detail {detail:?} should start with {detail_prefix:?}"
        );
        // `causes`, when present, is a non-empty list of strings (api §5.1).
        if let Some(causes) = self.json().get("causes") {
            let causes = causes.as_array().expect("causes is an array");
            assert!(!causes.is_empty(), "empty causes must be left out");
            assert!(causes.iter().all(|c| c.is_string()), "causes are strings");
        }
    }
}

/// Every stored file, by path relative to the data directory.
type Snapshot = BTreeMap<PathBuf, Vec<u8>>;

fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            out.insert(
                path.strip_prefix(root).expect("under root").to_owned(),
                bytes,
            );
        }
    }
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration.
    async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            // The auth suite (tests/auth.rs) turns access control on; here it is off.
            auth: AuthConfig::disabled(),
            ..Config::default()
        };
        config.http.addr = "127.0.0.1:0".parse().expect("address");
        config.http.drain_file = dir.path().join("strata.down");
        config.storage = StorageConfig::Filesystem {
            path: dir.path().join("data"),
        };
        adjust(&mut config);
        let server = app::start(config).await.expect("server starts");
        Harness {
            server,
            dir,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.addr(), path)
    }

    fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        let root = self.dir.path().join("data");
        walk(&root, &root, &mut out);
        out
    }

    /// Asserts that the stored state equals `before`.
    fn assert_unchanged(&self, before: &Snapshot, what: &str) {
        let after = self.snapshot();
        assert!(
            after == *before,
            "stored state changed after rejected request {what}: before {:?}, after {:?}",
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path)).body(body);
        for (name, value) in headers {
            req = req.header(*name, HeaderValue::from_bytes(value).expect("header value"));
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.bytes().await.expect("body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn put(&self, key: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Resp {
        self.send(Method::PUT, &format!("{OBJ}/{key}"), headers, body.to_vec())
            .await
    }

    async fn get(&self, key: &str, headers: &[(&str, &[u8])]) -> Resp {
        self.send(Method::GET, &format!("{OBJ}/{key}"), headers, Vec::new())
            .await
    }

    async fn head(&self, key: &str) -> Resp {
        self.send(Method::HEAD, &format!("{OBJ}/{key}"), &[], Vec::new())
            .await
    }

    async fn delete(&self, key: &str) -> Resp {
        self.send(Method::DELETE, &format!("{OBJ}/{key}"), &[], Vec::new())
            .await
    }

    async fn patch(&self, key: &str, content_type: Option<&str>, body: &str) -> Resp {
        let headers: Vec<(&str, &[u8])> = content_type
            .map(|ct| vec![("content-type", ct.as_bytes())])
            .unwrap_or_default();
        self.send(
            Method::PATCH,
            &format!("{OBJ}/{key}"),
            &headers,
            body.to_owned(),
        )
        .await
    }

    /// Sends `request` verbatim over a new connection (which it must ask to close) and
    /// returns the parsed response plus the header names exactly as they were sent.
    async fn raw(&self, request: &[u8]) -> (Resp, Vec<String>) {
        let mut stream = TcpStream::connect(self.server.addr())
            .await
            .expect("connect");
        stream.write_all(request).await.expect("write");
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
            .await
            .expect("response within 10 s")
            .expect("read");
        parse_raw_response(&bytes)
    }

    async fn stop(self) {
        self.server.shutdown().await;
    }
}

fn parse_raw_response(bytes: &[u8]) -> (Resp, Vec<String>) {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&bytes[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .expect("status code")
        .parse()
        .expect("numeric status");
    let mut headers = HeaderMap::new();
    let mut names = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("header line");
        names.push(name.to_owned());
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value.trim()).expect("value"),
        );
    }
    let mut body = bytes[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        body = decode_chunked(&body);
    }
    (
        Resp {
            status: StatusCode::from_u16(code).expect("status"),
            headers,
            body,
        },
        names,
    )
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).expect("ASCII size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn raw_request(method: &str, path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra_headers}"
    )
    .into_bytes();
    if !body.is_empty() || method == "PUT" || method == "POST" {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    req
}

fn ts(resp: &Resp, name: &str) -> SystemTime {
    let text = resp
        .header(name)
        .unwrap_or_else(|| panic!("{name} missing"));
    assert!(
        text.ends_with('Z') && !text.contains('.') && text.len() == 20,
        "{name} must be whole-second RFC 3339 UTC: {text}"
    );
    parse_timestamp(text).expect("RFC 3339")
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

const METADATA_HEADERS: &[&str] = &[
    "content-encoding",
    "x-sn-expiration",
    "x-sn-time-created",
    "x-sn-time-expires",
    "x-sn-origin",
    "x-sn-filename",
    "x-sn-size",
    "content-disposition",
];

// ---------------------------------------------------------------------------------------
// §2.2 routing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn collection_route_only_accepts_post() {
    let h = Harness::start().await;
    h.put("k", &[], b"data").await;
    let before = h.snapshot();
    for path in [OBJ.to_owned(), format!("{OBJ}/")] {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let r = h.send(method.clone(), &path, &[], Vec::new()).await;
            assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let allow = r
                .header("allow")
                .unwrap_or_else(|| panic!("allow on {method} {path}"));
            assert!(allow.contains("POST"), "allow {allow:?}");
            assert!(r.body.is_empty(), "405 body must be empty: {:?}", r.text());
            h.assert_unchanged(&before, &format!("{method} {path}"));
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn post_on_object_route_is_405() {
    let h = Harness::start().await;
    let before = h.snapshot();
    let r = h
        .send(Method::POST, &format!("{OBJ}/key"), &[], b"x".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.header("allow").is_some());
    assert!(r.body.is_empty());
    h.assert_unchanged(&before, "POST on object route");
    h.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_empty_404() {
    let h = Harness::start().await;
    // `/` is not among them: it says what the server is (tests/cli.rs).
    for path in [
        "/v1",
        "/v1/objects",
        "/v1/objects/conf",
        "/v2/objects/conf/_/k",
        "/v1/objects:batch/conf/_",
        "/v1/objects:nothing/conf/_/k",
    ] {
        let r = h.send(Method::GET, path, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(r.body.is_empty(), "{path}: {:?}", r.text());
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §2.3 insert
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn put_returns_200_with_decoded_key() {
    let h = Harness::start().await;
    let r = h.put("dir/na%C3%AFve%20name", &[], b"hello").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json")));
    assert_eq!(r.json(), serde_json::json!({"key": "dir/naïve name"}));
    // Overwrite: 200 again, payload and metadata replaced.
    let r = h
        .put(
            "dir/na%C3%AFve%20name",
            &[("content-type", b"text/plain"), ("x-snme-v", b"2")],
            b"bye",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let g = h.get("dir/na%C3%AFve%20name", &[]).await;
    assert_eq!(g.body, b"bye");
    assert_eq!(g.header("content-type"), Some("text/plain"));
    assert_eq!(g.header("x-snme-v"), Some("2"));
    h.stop().await;
}

#[tokio::test]
async fn overwrite_drops_old_metadata() {
    let h = Harness::start().await;
    h.put(
        "k",
        &[
            ("x-snme-old", b"1"),
            ("x-sn-filename", b"a.txt"),
            ("content-encoding", b"zstd"),
            ("x-sn-expiration", b"ttl:1d"),
        ],
        b"one",
    )
    .await;
    h.put("k", &[], b"two").await;
    let g = h.get("k", &[]).await;
    assert_eq!(g.body, b"two");
    for name in [
        "x-snme-old",
        "x-sn-filename",
        "content-encoding",
        "x-sn-expiration",
        "x-sn-time-expires",
        "content-disposition",
    ] {
        assert!(g.header(name).is_none(), "{name} survived an overwrite");
    }
    h.stop().await;
}

#[tokio::test]
async fn post_generates_uuid_v4_keys_with_and_without_slash() {
    let h = Harness::start().await;
    for path in [OBJ.to_owned(), format!("{OBJ}/")] {
        let r = h
            .send(
                Method::POST,
                &path,
                &[("x-snme-p", b"1")],
                b"posted".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text());
        let key = r.json()["key"].as_str().expect("key").to_owned();
        let uuid = uuid::Uuid::parse_str(&key).expect("UUID key");
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(key, key.to_lowercase());
        assert_eq!(key.len(), 36);
        let g = h.get(&key, &[]).await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.body, b"posted");
        assert_eq!(g.header("x-snme-p"), Some("1"));
    }
    h.stop().await;
}

#[tokio::test]
async fn empty_payload_is_an_object() {
    let h = Harness::start().await;
    assert_eq!(h.put("empty", &[], b"").await.status, StatusCode::OK);
    let g = h.get("empty", &[]).await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.body.is_empty());
    assert_eq!(g.header("content-length"), Some("0"));
    assert_eq!(g.header("x-sn-size"), Some("0"));
    let hd = h.head("empty").await;
    assert!(hd.status == StatusCode::OK || hd.status == StatusCode::NO_CONTENT);
    assert_eq!(hd.header("x-sn-size"), Some("0"));
    h.stop().await;
}

#[tokio::test]
async fn payload_is_stored_verbatim_even_when_marked_compressed() {
    let h = Harness::start().await;
    // Not real zstd: the server must neither check nor decode it.
    let body = b"\x28\xb5\x2f\xfdnot really zstd\x00\xff".to_vec();
    let r = h.put("z", &[("content-encoding", b"zstd")], &body).await;
    assert_eq!(r.status, StatusCode::OK);
    let g = h
        .get("z", &[("accept-encoding", b"gzip, zstd, identity")])
        .await;
    assert_eq!(g.body, body);
    assert_eq!(g.header("content-encoding"), Some("zstd"));
    assert_eq!(
        g.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    let r = h
        .put("g", &[("content-encoding", b"gzip")], b"\x1f\x8bxx")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        h.get("g", &[]).await.header("content-encoding"),
        Some("gzip")
    );
    h.stop().await;
}

#[tokio::test]
async fn chunked_upload_without_content_length() {
    let h = Harness::start().await;
    let request = format!(
        "PUT {OBJ}/chunked HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\ncontent-encoding: zstd\r\n\r\n\
         5\r\nhello\r\n1\r\n \r\nb\r\nchunked ...\r\n0\r\n\r\n"
    );
    let (r, _) = h.raw(request.as_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"key": "chunked"}));
    let g = h.get("chunked", &[]).await;
    assert_eq!(g.body, b"hello chunked ...");
    assert_eq!(g.header("x-sn-size"), Some("17"));
    // POST, chunked, zero chunks.
    let request = format!(
        "POST {OBJ}/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let (r, _) = h.raw(request.as_bytes()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let key = r.json()["key"].as_str().expect("key").to_owned();
    assert_eq!(h.get(&key, &[]).await.header("content-length"), Some("0"));
    h.stop().await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let h = Harness::start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let res = client
        .put(h.url(&format!("{OBJ}/h2")))
        .header("x-snme-proto", "h2")
        .body("over h2c")
        .send()
        .await
        .expect("h2c PUT");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
    let res = client
        .get(h.url(&format!("{OBJ}/h2")))
        .send()
        .await
        .expect("h2c GET");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-snme-proto"], "h2");
    assert_eq!(res.bytes().await.expect("body").as_ref(), b"over h2c");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §2.4 GET, §2.5 HEAD, §2.6 DELETE
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn get_returns_payload_and_metadata_headers() {
    let h = Harness::start().await;
    h.put(
        "obj",
        &[("content-type", b"text/plain; charset=utf-8")],
        b"0123456789",
    )
    .await;
    let g = h.get("obj", &[]).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body, b"0123456789");
    assert_eq!(g.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(g.header("content-length"), Some("10"));
    assert_eq!(g.header("x-sn-size"), Some("10"));
    assert_eq!(g.header("accept-ranges"), Some("bytes"));
    assert!(g.header("content-encoding").is_none());
    assert!(
        g.header("x-sn-expiration").is_none(),
        "manual is never sent"
    );
    assert!(g.header("x-sn-time-expires").is_none());
    assert!(g.header("content-disposition").is_none());
    let created = ts(&g, "x-sn-time-created");
    let now = SystemTime::now();
    assert!(created <= now + Duration::from_secs(1) && created + Duration::from_secs(60) > now);
    // Default content type.
    h.put("plain", &[], b"x").await;
    assert_eq!(
        h.get("plain", &[]).await.header("content-type"),
        Some("application/octet-stream")
    );
    h.stop().await;
}

#[tokio::test]
async fn head_has_get_headers_without_body() {
    let h = Harness::start().await;
    h.put(
        "obj",
        &[("x-sn-filename", b"a.txt"), ("x-snme-k", b"v")],
        b"0123456789",
    )
    .await;
    let g = h.get("obj", &[]).await;
    let hd = h.head("obj").await;
    assert!(
        hd.status == StatusCode::OK || hd.status == StatusCode::NO_CONTENT,
        "{}",
        hd.status
    );
    assert!(hd.body.is_empty());
    assert_eq!(hd.header("content-length"), Some("10"));
    for name in [
        "content-type",
        "x-sn-size",
        "x-sn-time-created",
        "x-sn-filename",
        "x-snme-k",
        "content-disposition",
        "accept-ranges",
    ] {
        assert_eq!(hd.header(name), g.header(name), "{name}");
    }
    // Range is ignored on HEAD.
    let r = h
        .send(
            Method::HEAD,
            &format!("{OBJ}/obj"),
            &[("range", b"bytes=0-1")],
            Vec::new(),
        )
        .await;
    assert!(r.status == StatusCode::OK || r.status == StatusCode::NO_CONTENT);
    assert!(r.header("content-range").is_none());
    assert_eq!(r.header("content-length"), Some("10"));
    h.stop().await;
}

#[tokio::test]
async fn missing_objects() {
    let h = Harness::start().await;
    for r in [
        h.get("nope", &[]).await,
        h.head("nope").await,
        h.get("nope", &[("range", b"bytes=0-1")]).await,
    ] {
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.body.is_empty());
        for name in METADATA_HEADERS {
            assert!(r.header(name).is_none(), "{name} on 404");
        }
        assert!(r.header("x-sn-size").is_none());
    }
    let before = h.snapshot();
    let d = h.delete("nope").await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert!(d.body.is_empty());
    h.assert_unchanged(&before, "DELETE of a missing key");
    h.stop().await;
}

#[tokio::test]
async fn delete_removes_only_its_key() {
    let h = Harness::start().await;
    h.put("a", &[], b"A").await;
    h.put("b", &[], b"B").await;
    let d = h.delete("a").await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert!(d.body.is_empty());
    assert_eq!(h.get("a", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("b", &[]).await.body, b"B");
    assert_eq!(h.delete("a").await.status, StatusCode::NO_CONTENT);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §3 path encoding
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn keys_with_slashes_and_dots_coexist() {
    let h = Harness::start().await;
    // Sent raw: reqwest's URL parser would normalise `..` and `.` segments.
    let keys = [
        "a", "a/b", "a/", "a//a", "../x", "./a", "/lead", "a/./b", "a/../b",
    ];
    for (i, key) in keys.iter().enumerate() {
        let body = format!("body-{i}");
        let (r, _) = h
            .raw(&raw_request(
                "PUT",
                &format!("{OBJ}/{key}"),
                "",
                body.as_bytes(),
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "PUT {key}: {}", r.text());
        assert_eq!(r.json()["key"], *key, "PUT {key}");
    }
    for (i, key) in keys.iter().enumerate() {
        let (r, _) = h
            .raw(&raw_request("GET", &format!("{OBJ}/{key}"), "", b""))
            .await;
        assert_eq!(r.status, StatusCode::OK, "GET {key}");
        assert_eq!(r.text(), format!("body-{i}"), "GET {key}");
    }
    let (r, _) = h
        .raw(&raw_request("DELETE", &format!("{OBJ}/a/"), "", b""))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.get("a/", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("a", &[]).await.text(), "body-0");
    assert_eq!(h.get("a/b", &[]).await.text(), "body-1");
    assert_eq!(h.get("a//a", &[]).await.text(), "body-3");
    h.stop().await;
}

#[tokio::test]
async fn percent_encoding_is_decoded_per_segment() {
    let h = Harness::start().await;
    h.put("a%2Fb", &[], b"slash").await;
    assert_eq!(h.get("a/b", &[]).await.text(), "slash");
    let r = h
        .send(
            Method::GET,
            "/v1/objects/conf/org%3D1;project=2/a%2fb",
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.text(), "slash", "org%3D1 must equal org=1");
    // `+` is not a space in a path.
    h.put("x+y", &[], b"plus").await;
    assert_eq!(h.get("x%2By", &[]).await.text(), "plus");
    assert_eq!(h.get("x%20y", &[]).await.status, StatusCode::NOT_FOUND);
    // Sub-delimiters and loosely encoded ASCII arrive literally.
    let key = "k!$&'()*+,;=:@|^[]";
    let (r, _) = h
        .raw(&raw_request(
            "PUT",
            &format!("{OBJ}/{key}"),
            "",
            b"subdelims",
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["key"], key);
    // Encoded `?` and `#` are part of the key, not a query or fragment.
    let r = h.put("q%3Fx%23y", &[], b"qx").await;
    assert_eq!(r.json()["key"], "q?x#y");
    assert_eq!(h.get("q%3fx%23y", &[]).await.text(), "qx");
    assert_eq!(h.get("q", &[]).await.status, StatusCode::NOT_FOUND);
    // UTF-8 keys.
    h.put("%E6%97%A5%E6%9C%AC", &[], b"nihon").await;
    let (r, _) = h
        .raw(&raw_request(
            "GET",
            &format!("{OBJ}/%e6%97%a5%e6%9c%ac"),
            "",
            b"",
        ))
        .await;
    assert_eq!(r.text(), "nihon");
    h.stop().await;
}

async fn put_scoped(h: &Harness, scopes: &str, body: &[u8]) -> Resp {
    let path = format!("/v1/objects/conf/{scopes}/k");
    h.send(Method::PUT, &path, &[], body.to_vec()).await
}

#[tokio::test]
async fn scopes_are_ordered_namespaces() {
    let h = Harness::start().await;
    assert_eq!(
        put_scoped(&h, "org=1;project=2", b"12").await.status,
        StatusCode::OK
    );
    assert_eq!(
        put_scoped(&h, "project=2;org=1", b"21").await.status,
        StatusCode::OK
    );
    assert_eq!(put_scoped(&h, "_", b"none").await.status, StatusCode::OK);
    assert_eq!(put_scoped(&h, "org=1", b"1").await.status, StatusCode::OK);
    assert_eq!(
        put_scoped(&h, "a=(x)$!+'_-", b"chars").await.status,
        StatusCode::OK
    );
    for (scopes, want) in [
        ("org=1;project=2", "12"),
        ("project=2;org=1", "21"),
        ("_", "none"),
        ("org=1", "1"),
        ("a=(x)$!+'_-", "chars"),
    ] {
        let r = h
            .send(
                Method::GET,
                &format!("/v1/objects/conf/{scopes}/k"),
                &[],
                Vec::new(),
            )
            .await;
        assert_eq!(r.text(), want, "{scopes}");
    }
    // Different usecases are different namespaces too.
    let r = h
        .send(Method::GET, "/v1/objects/other/_/k", &[], Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

/// Sends `path` with PUT, GET and DELETE and expects a 400 plain-text `want…` each
/// time, with nothing stored changing.
async fn assert_bad_path(h: &Harness, before: &Snapshot, path: &str, want: &str) {
    for method in [Method::PUT, Method::GET, Method::DELETE] {
        let r = h.send(method.clone(), path, &[], b"x".to_vec()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert!(
            r.text().starts_with(want),
            "{method} {path}: got {:?}, want prefix {want:?}",
            r.text()
        );
        assert!(
            r.header("content-type")
                .is_some_and(|ct| ct.starts_with("text/plain")),
            "{method} {path}: content-type {:?}",
            r.header("content-type")
        );
        h.assert_unchanged(before, &format!("{method} {path}"));
    }
}

#[tokio::test]
async fn bad_paths_are_400_plain_text() {
    let h = Harness::start().await;
    h.put("k", &[], b"data").await;
    let before = h.snapshot();
    let syntax = "Invalid URL: scope must be 'key=value'";
    for (path, want) in [
        ("/v1/objects/conf/org/k", syntax),
        ("/v1/objects/conf/org=/k", syntax),
        ("/v1/objects/conf/=1/k", syntax),
        ("/v1/objects/conf/org=1;/k", syntax),
        (
            "/v1/objects/conf/org=1.5/k",
            "Invalid URL: invalid character '.'",
        ),
        (
            "/v1/objects/conf/org=a=b/k",
            "Invalid URL: invalid character '='",
        ),
        (
            "/v1/objects/conf/org=%C3%A9/k",
            "Invalid URL: invalid character 'é'",
        ),
        (
            "/v1/objects/conf/org=a%2Fb/k",
            "Invalid URL: invalid character '/'",
        ),
        ("/v1/objects/con.f/_/k", "Invalid URL: invalid usecase"),
        ("/v1/objects/con%20f/_/k", "Invalid URL: invalid usecase"),
    ] {
        assert_bad_path(&h, &before, path, want).await;
    }
    // POST on a collection with bad scopes.
    let r = h
        .send(Method::POST, "/v1/objects/conf/org/", &[], b"x".to_vec())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.text(), syntax);
    h.assert_unchanged(&before, "POST with bad scopes");
    h.stop().await;
}

/// Regression guard: axum's own path extractors answer these with `Invalid UTF-8 in
/// `key``; the contract wants `Invalid URL: …` (api §5.2).
#[tokio::test]
async fn invalid_utf8_path_params_are_400_invalid_url() {
    let h = Harness::start().await;
    h.put("k", &[], b"data").await;
    let before = h.snapshot();
    for path in [
        "/v1/objects/conf/_/%FF",
        "/v1/objects/conf/_/a%C3",
        "/v1/objects/conf/org=%FF/k",
        "/v1/objects/c%FF/_/k",
    ] {
        assert_bad_path(
            &h,
            &before,
            path,
            "Invalid URL: path parameter is not valid UTF-8",
        )
        .await;
    }
    h.stop().await;
}

/// Regression guard: axum's `RawPathParams` values are already percent-decoded, so
/// decoding them again turned `%2541` into `A` and accepted `org%253D1` as `org=1`
/// (api §3.1: each parameter is decoded exactly once).
#[tokio::test]
async fn percent_decoding_happens_exactly_once() {
    let h = Harness::start().await;
    let r = h.put("a%2541", &[], b"once").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["key"], "a%41", "key decoded twice");
    assert_eq!(h.get("aA", &[]).await.status, StatusCode::NOT_FOUND);
    let r = h.put("100%2525", &[], b"pct").await;
    assert_eq!(r.json()["key"], "100%25");
    let before = h.snapshot();
    assert_bad_path(
        &h,
        &before,
        "/v1/objects/conf/org%253D1/k",
        "Invalid URL: scope must be 'key=value'",
    )
    .await;
    h.stop().await;
}

#[tokio::test]
async fn usecase_names() {
    let h = Harness::start().await;
    let long = "u".repeat(64);
    for usecase in ["ab", "x", "___", "A-z_0", long.as_str()] {
        let r = h
            .send(
                Method::PUT,
                &format!("/v1/objects/{usecase}/_/k"),
                &[],
                b"ok".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{usecase}: {}", r.text());
    }
    let before = h.snapshot();
    let too_long = "u".repeat(65);
    let r = h
        .send(
            Method::PUT,
            &format!("/v1/objects/{too_long}/_/k"),
            &[],
            b"no".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text().starts_with("Invalid URL: invalid usecase"),
        "{}",
        r.text()
    );
    h.assert_unchanged(&before, "PUT with 65-char usecase");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §4 metadata and headers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn utf8_metadata_round_trips_percent_encoded() {
    let h = Harness::start().await;
    let r = h
        .put(
            "meta",
            &[
                ("x-sn-filename", b"r%C3%A9port-%F0%9F%93%84.pdf"),
                ("x-sn-origin", b"%C3%9Cnknown-%E6%BA%90"),
                ("x-snme-release", b"100%25 v%C3%A9rsion"),
                ("x-snme-tab", b"a%09b"),
                ("X-SNME-Mixed-Case", b"plain ascii"),
                ("x-snme-stray", b"100% sure"),
                ("x-snme-raw-tab", b"a\tb"),
            ],
            b"m",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for resp in [h.get("meta", &[]).await, h.head("meta").await] {
        assert_eq!(
            resp.header("x-sn-filename"),
            Some("r%C3%A9port-%F0%9F%93%84.pdf")
        );
        assert_eq!(resp.header("x-sn-origin"), Some("%C3%9Cnknown-%E6%BA%90"));
        assert_eq!(resp.header("x-snme-release"), Some("100%25 v%C3%A9rsion"));
        assert_eq!(resp.header("x-snme-tab"), Some("a%09b"));
        assert_eq!(resp.header("x-snme-mixed-case"), Some("plain ascii"));
        assert_eq!(resp.header("x-snme-stray"), Some("100%25 sure"));
        assert_eq!(resp.header("x-snme-raw-tab"), Some("a%09b"));
        assert_eq!(
            resp.header("content-disposition"),
            Some(
                "attachment; filename=\"r_port-_.pdf\"; \
                 filename*=UTF-8''r%C3%A9port-%F0%9F%93%84.pdf"
            )
        );
    }
    h.stop().await;
}

/// HTTP strips whitespace at both ends of a header value, so a value that starts or
/// ends with a space only survives if the server sends those spaces as `%20`.
#[tokio::test]
async fn edge_spaces_survive_the_round_trip() {
    let h = Harness::start().await;
    let r = h
        .put(
            "pad",
            &[
                ("x-snme-pad", b"%20padded value%20%20"),
                ("x-sn-origin", b"%20"),
            ],
            b"p",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (g, _) = h
        .raw(&raw_request("GET", &format!("{OBJ}/pad"), "", b""))
        .await;
    assert_eq!(g.headers["x-snme-pad"], "%20padded value%20%20");
    assert_eq!(g.headers["x-sn-origin"], "%20");
    h.stop().await;
}

#[tokio::test]
async fn content_disposition_sanitises_filenames() {
    let h = Harness::start().await;
    for (raw, want) in [
        ("a.txt", "attachment; filename=\"a.txt\""),
        ("../etc/passwd", "attachment; filename=\"..-etc-passwd\""),
        ("..", "attachment; filename=\"--\""),
        ("a\\b", "attachment; filename=\"a-b\""),
        ("say \"hi\"", "attachment; filename=\"say \\\"hi\\\"\""),
        ("", "attachment; filename=\"\""),
    ] {
        let r = h.put("f", &[("x-sn-filename", raw.as_bytes())], b"f").await;
        assert_eq!(r.status, StatusCode::OK, "{raw:?}");
        let g = h.get("f", &[]).await;
        assert_eq!(g.header("content-disposition"), Some(want), "{raw:?}");
        assert_eq!(g.header("x-sn-filename"), Some(raw), "{raw:?}");
    }
    h.stop().await;
}

#[tokio::test]
async fn expiration_is_emitted_in_dhms_form() {
    let h = Harness::start().await;
    for (sent, want) in [
        ("ttl:30s", "ttl:30s"),
        ("tti:1h", "tti:1h"),
        ("ttl:1 days 3600 seconds", "ttl:1d 1h"),
        ("tti:2weeks", "tti:14d"),
        ("ttl:2months", "ttl:60d 21h 7m 12s"),
        ("ttl:90d", "ttl:90d"),
        ("ttl:1day 1h 1m 1s", "ttl:1d 1h 1m 1s"),
        ("ttl:1.5s 1d", "ttl:1d 1s"),
    ] {
        let r = h
            .put("exp", &[("x-sn-expiration", sent.as_bytes())], b"e")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{sent}: {}", r.text());
        let g = h.get("exp", &[]).await;
        assert_eq!(g.header("x-sn-expiration"), Some(want), "{sent}");
        let created = ts(&g, "x-sn-time-created");
        let expires = ts(&g, "x-sn-time-expires");
        assert!(expires > created, "{sent}");
    }
    // TTL deadline = created + ttl (whole seconds).
    h.put("exp", &[("x-sn-expiration", b"ttl:1d")], b"e").await;
    let g = h.get("exp", &[]).await;
    assert_eq!(
        secs(ts(&g, "x-sn-time-expires")) - secs(ts(&g, "x-sn-time-created")),
        86_400
    );
    // `manual` is accepted and never echoed.
    h.put("exp", &[("x-sn-expiration", b"manual")], b"e").await;
    let g = h.get("exp", &[]).await;
    assert!(g.header("x-sn-expiration").is_none());
    assert!(g.header("x-sn-time-expires").is_none());
    h.stop().await;
}

#[tokio::test]
async fn read_only_headers_are_ignored_on_writes() {
    let h = Harness::start().await;
    let r = h
        .put(
            "ro",
            &[
                ("x-sn-time-created", b"garbage"),
                ("x-sn-time-expires", b"1999-01-01T00:00:00Z"),
                ("x-sn-size", b"999999"),
            ],
            b"abc",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let g = h.get("ro", &[]).await;
    assert_eq!(g.header("x-sn-size"), Some("3"));
    assert!(g.header("x-sn-time-expires").is_none());
    let created = ts(&g, "x-sn-time-created");
    assert!(secs(created) > 1_700_000_000);
    h.stop().await;
}

#[tokio::test]
async fn repeated_metadata_headers_last_wins() {
    let h = Harness::start().await;
    let r = h
        .put(
            "rep",
            &[
                ("x-snme-a", b"first"),
                ("x-snme-a", b"second"),
                ("x-sn-origin", b"o1"),
                ("x-sn-origin", b"o2"),
            ],
            b"r",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let g = h.get("rep", &[]).await;
    assert_eq!(g.header("x-snme-a"), Some("second"));
    assert_eq!(g.header("x-sn-origin"), Some("o2"));
    assert_eq!(g.headers.get_all("x-snme-a").iter().count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn invalid_metadata_is_400_json_and_stores_nothing() {
    let h = Harness::start().await;
    h.put("victim", &[("x-snme-v", b"original")], b"original")
        .await;
    let before = h.snapshot();
    let cases: &[(&str, &[u8])] = &[
        ("x-sn-filename", "r\u{e9}port.pdf".as_bytes()),
        ("x-sn-origin", b"\xff"),
        ("x-snme-k", "caf\u{e9}".as_bytes()),
        ("x-snme-k", b"%FF"),
        ("x-sn-filename", b"%C3"),
        ("content-encoding", b"identity"),
        ("content-encoding", b"br"),
        ("content-encoding", b"ZSTD"),
        ("content-type", b"not a media type"),
        ("content-type", b"text"),
        ("x-sn-expiration", b"ttl:"),
        ("x-sn-expiration", b"ttl:soon"),
        ("x-sn-expiration", b"forever"),
    ];
    for (name, value) in cases {
        let what = format!("{name}: {}", String::from_utf8_lossy(value));
        for (method, path) in [
            (Method::PUT, format!("{OBJ}/victim")),
            (Method::PUT, format!("{OBJ}/fresh")),
            (Method::POST, format!("{OBJ}/")),
        ] {
            let r = h
                .send(method.clone(), &path, &[(*name, *value)], b"evil".to_vec())
                .await;
            r.assert_json_error(StatusCode::BAD_REQUEST, "client error");
            h.assert_unchanged(&before, &format!("{method} {path} with {what}"));
        }
    }
    let g = h.get("victim", &[]).await;
    assert_eq!(g.body, b"original");
    assert_eq!(g.header("x-snme-v"), Some("original"));
    assert_eq!(h.get("fresh", &[]).await.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test]
async fn response_header_names_are_lowercase() {
    let h = Harness::start().await;
    h.put(
        "lc",
        &[
            ("Content-Type", b"text/plain"),
            ("X-SN-Expiration", b"ttl:1h"),
            ("X-SN-Filename", b"a.txt"),
            ("X-SN-Origin", b"1.2.3.4"),
            ("X-SNME-Key", b"v"),
            ("Content-Encoding", b"zstd"),
        ],
        b"0123456789",
    )
    .await;
    for request in [
        raw_request("GET", &format!("{OBJ}/lc"), "", b""),
        raw_request("GET", &format!("{OBJ}/lc"), "Range: bytes=0-1\r\n", b""),
        raw_request("GET", &format!("{OBJ}/lc"), "Range: bytes=50-\r\n", b""),
        raw_request("HEAD", &format!("{OBJ}/lc"), "", b""),
        raw_request("PUT", &format!("{OBJ}/lc2"), "", b"x"),
        raw_request("GET", &format!("{OBJ}/missing"), "", b""),
        raw_request("GET", &format!("{OBJ}/lc"), "Range: bytes=x\r\n", b""),
        raw_request("GET", "/v1/objects/conf/bad/k", "", b""),
    ] {
        let (r, names) = h.raw(&request).await;
        assert!(r.status.as_u16() < 500);
        for name in &names {
            assert_eq!(
                *name,
                name.to_lowercase(),
                "header name not lowercase in response to {}",
                String::from_utf8_lossy(&request)
            );
        }
    }
    let (r, names) = h
        .raw(&raw_request("GET", &format!("{OBJ}/lc"), "", b""))
        .await;
    for expected in [
        "content-type",
        "content-encoding",
        "x-sn-expiration",
        "x-sn-time-created",
        "x-sn-time-expires",
        "x-sn-filename",
        "x-sn-origin",
        "x-snme-key",
        "x-sn-size",
        "content-disposition",
        "accept-ranges",
        "content-length",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    assert_eq!(r.body, b"0123456789");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §4.6 ranges
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn satisfiable_ranges_are_206() {
    let h = Harness::start().await;
    h.put("r", &[("x-snme-k", b"v")], b"0123456789").await;
    for (range, body, content_range) in [
        ("bytes=0-4", "01234", "bytes 0-4/10"),
        ("bytes=3-3", "3", "bytes 3-3/10"),
        ("bytes=5-", "56789", "bytes 5-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=-30", "0123456789", "bytes 0-9/10"),
        ("bytes=7-100", "789", "bytes 7-9/10"),
        ("BYTES=1-2", "12", "bytes 1-2/10"),
        ("bytes=9-", "9", "bytes 9-9/10"),
    ] {
        let r = h.get("r", &[("range", range.as_bytes())]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.text(), body, "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{range}"
        );
        assert_eq!(r.header("x-sn-size"), Some("10"), "{range}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("x-snme-k"), Some("v"), "{range}");
    }
    h.stop().await;
}

#[tokio::test]
async fn multi_ranges_are_ignored() {
    let h = Harness::start().await;
    h.put("r", &[], b"0123456789").await;
    for range in ["bytes=0-1,3-4", "bytes=0-1, 5-", "bytes=x,y"] {
        let r = h.get("r", &[("range", range.as_bytes())]).await;
        assert_eq!(r.status, StatusCode::OK, "{range}");
        assert_eq!(r.text(), "0123456789");
        assert!(r.header("content-range").is_none());
    }
    h.stop().await;
}

#[tokio::test]
async fn unsatisfiable_ranges_are_416() {
    let h = Harness::start().await;
    h.put("r", &[("x-snme-k", b"v")], b"0123456789").await;
    h.put("empty", &[], b"").await;
    for (key, range, total) in [
        ("r", "bytes=10-", "10"),
        ("r", "bytes=10-20", "10"),
        ("r", "bytes=100-", "10"),
        ("empty", "bytes=0-", "0"),
        ("empty", "bytes=0-0", "0"),
        ("empty", "bytes=-5", "0"),
    ] {
        let r = h.get(key, &[("range", range.as_bytes())]).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{key} {range}");
        assert!(r.body.is_empty());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{total}").as_str())
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        for name in ["x-snme-k", "x-sn-time-created", "x-sn-size", "content-type"] {
            assert!(r.header(name).is_none(), "{name} on 416 for {key} {range}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn malformed_ranges_are_400_json() {
    let h = Harness::start().await;
    h.put("r", &[], b"0123456789").await;
    let before = h.snapshot();
    for range in [
        &b"items=0-1"[..],
        b"bytes=5-1",
        b"bytes=-0",
        b"bytes=a-b",
        b"bytes= 1-2",
        b"bytes=1 -2",
        b"bytes=",
        b"bytes=-",
        b"bytes=+1-2",
        b"bytes",
        b"bytes=1",
        b"bytes=\xc3\xa9-1",
    ] {
        let r = h.get("r", &[("range", range)]).await;
        r.assert_json_error(
            StatusCode::BAD_REQUEST,
            "client error: invalid Range header: ",
        );
        h.assert_unchanged(
            &before,
            &format!("range {}", String::from_utf8_lossy(range)),
        );
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// newest §4.7 PATCH expiry extension
// ---------------------------------------------------------------------------------------

fn extend_after(after: &str, from: &str) -> String {
    format!(r#"{{"extend_expiry":{{"after":"{after}","from":"{from}"}}}}"#)
}

#[tokio::test]
async fn patch_extends_ttl_and_recalculates_policy() {
    let h = Harness::start().await;
    h.put("t", &[("x-sn-expiration", b"ttl:1d")], b"t").await;
    let before = h.get("t", &[]).await;
    let created = secs(ts(&before, "x-sn-time-created"));
    let r = h
        .patch(
            "t",
            Some("application/json"),
            &extend_after("3d", "creation"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.body.is_empty());
    let g = h.get("t", &[]).await;
    assert_eq!(g.header("x-sn-expiration"), Some("ttl:3d"));
    assert_eq!(secs(ts(&g, "x-sn-time-expires")), created + 3 * 86_400);
    assert_eq!(secs(ts(&g, "x-sn-time-created")), created);
    assert_eq!(g.body, b"t");
    h.stop().await;
}

#[tokio::test]
async fn patch_never_shortens() {
    let h = Harness::start().await;
    h.put("t", &[("x-sn-expiration", b"ttl:10d")], b"t").await;
    let before_get = h.get("t", &[]).await;
    let before = h.snapshot();
    for body in [
        extend_after("1d", "creation"),
        extend_after("1h", "now"),
        r#"{"extend_expiry":{"at":"2000-01-01T00:00:00Z"}}"#.to_owned(),
    ] {
        let r = h.patch("t", Some("application/json"), &body).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{body}: {}", r.text());
        h.assert_unchanged(&before, &format!("satisfied PATCH {body}"));
    }
    let g = h.get("t", &[]).await;
    assert_eq!(g.header("x-sn-expiration"), Some("ttl:10d"));
    assert_eq!(
        g.header("x-sn-time-expires"),
        before_get.header("x-sn-time-expires")
    );
    h.stop().await;
}

#[tokio::test]
async fn patch_at_and_tti() {
    let h = Harness::start().await;
    h.put("i", &[("x-sn-expiration", b"tti:1h")], b"i").await;
    let target = SystemTime::now() + Duration::from_secs(30 * 86_400);
    let at = strata_server::object::expiration::format_timestamp(target);
    // Python's isoformat form: microseconds and +00:00.
    let python_at = format!("{}.123456+00:00", at.trim_end_matches('Z'));
    let r = h
        .patch(
            "i",
            Some("application/json"),
            &format!(r#"{{"extend_expiry":{{"at":"{python_at}"}}}}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let g = h.get("i", &[]).await;
    assert_eq!(
        g.header("x-sn-expiration"),
        Some("tti:1h"),
        "TTI keeps its duration"
    );
    assert_eq!(
        secs(ts(&g, "x-sn-time-expires")),
        secs(parse_timestamp(&at).expect("ts")) + 1,
        "fractional `at` rounds up"
    );
    h.stop().await;
}

#[tokio::test]
async fn patch_rejections() {
    let h = Harness::start().await;
    h.put("manual", &[], b"m").await;
    h.put("t", &[("x-sn-expiration", b"ttl:1h")], b"t").await;
    let before = h.snapshot();
    let good = extend_after("1d", "now");

    // 404: absent object, empty body.
    let r = h.patch("absent", Some("application/json"), &good).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.is_empty(), "{}", r.text());
    h.assert_unchanged(&before, "PATCH absent");

    // 409: manual object, JSON body.
    let r = h.patch("manual", Some("application/json"), &good).await;
    r.assert_json_error(StatusCode::CONFLICT, "");
    h.assert_unchanged(&before, "PATCH manual");

    // 415: no JSON content type.
    for ct in [None, Some("text/plain")] {
        let r = h.patch("t", ct, &good).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        h.assert_unchanged(&before, "PATCH without JSON content type");
    }

    // 400: JSON syntax.
    for body in ["{", "", "not json"] {
        let r = h.patch("t", Some("application/json"), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:?}: {}", r.text());
        h.assert_unchanged(&before, &format!("PATCH syntax {body:?}"));
    }

    // 422: wrong shape, unknown fields, bad values.
    for body in [
        r#"{}"#,
        r#"{"extend_expiry":{}}"#,
        r#"{"extend_expiry":{"after":"1d"}}"#,
        r#"{"extend_expiry":{"after":"1d","from":"later"}}"#,
        r#"{"extend_expiry":{"after":"soon","from":"now"}}"#,
        r#"{"extend_expiry":{"after":"","from":"now"}}"#,
        r#"{"extend_expiry":{"at":"tomorrow"}}"#,
        r#"{"extend_expiry":{"at":"2030-01-01T00:00:00Z","after":"1d","from":"now"}}"#,
        r#"{"extend_expiry":{"at":"2030-01-01T00:00:00Z"},"extra":1}"#,
        r#"{"extend_expiry":{"at":"2030-01-01T00:00:00Z","extra":1}}"#,
        r#"{"extend_expiry":{"after":1,"from":"now"}}"#,
        r#"[]"#,
    ] {
        let r = h.patch("t", Some("application/json"), body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text()
        );
        h.assert_unchanged(&before, &format!("PATCH shape {body}"));
    }

    // 400: from now past the year 9999.
    let r = h
        .patch(
            "t",
            Some("application/json"),
            &extend_after("3000000d", "now"),
        )
        .await;
    r.assert_json_error(StatusCode::BAD_REQUEST, "client error");
    h.assert_unchanged(&before, "PATCH past 9999");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// newest §2.9: resumable create is never a plain insert (sessions: tests/resumable.rs)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn resumable_create_opens_a_session_and_stores_no_object() {
    let h = Harness::start().await;
    h.put("existing", &[], b"keep").await;
    let upload = [("upload-length", &b"4"[..])];
    for (method, path) in [
        (Method::POST, format!("{OBJ}/?upload_type=resumable")),
        (Method::POST, format!("{OBJ}?upload_type=resumable")),
        (Method::PUT, format!("{OBJ}/new?upload_type=resumable")),
        (Method::PUT, format!("{OBJ}/existing?upload_type=resumable")),
    ] {
        let r = h.send(method.clone(), &path, &upload, Vec::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{method} {path}: {}", r.text());
        let body = r.json();
        assert!(
            body["session"].is_string() && body["key"].is_string(),
            "{body}"
        );
        assert_eq!(body["granularity"], 0);
    }
    assert_eq!(h.get("new", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("existing", &[]).await.text(), "keep");
    h.stop().await;
}

#[tokio::test]
async fn unknown_upload_type_is_400() {
    let h = Harness::start().await;
    h.put("existing", &[], b"keep").await;
    let before = h.snapshot();
    for (method, path) in [
        (Method::POST, format!("{OBJ}/?upload_type=multipart")),
        (Method::PUT, format!("{OBJ}/new?upload_type=simple")),
        (Method::PUT, format!("{OBJ}/existing?upload_type=")),
        (Method::DELETE, format!("{OBJ}/existing?upload_type=x")),
    ] {
        let r = h.send(method.clone(), &path, &[], b"data".to_vec()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {path}");
        h.assert_unchanged(&before, &format!("{method} {path}"));
    }
    h.stop().await;
}

#[tokio::test]
async fn session_requests_never_store_or_delete() {
    let h = Harness::start().await;
    h.put("existing", &[], b"keep").await;
    let before = h.snapshot();
    for (method, path, headers) in [
        (
            Method::PUT,
            format!("{OBJ}/existing?session=AAAA"),
            vec![("upload-offset", &b"0"[..])],
        ),
        (
            Method::PUT,
            format!("{OBJ}/existing?session=AAAA"),
            vec![("upload-offset", &b"*"[..])],
        ),
        (
            Method::DELETE,
            format!("{OBJ}/existing?session=AAAA"),
            vec![],
        ),
    ] {
        let r = h
            .send(method.clone(), &path, &headers, b"data".to_vec())
            .await;
        assert!(
            r.status.is_client_error() || r.status.is_server_error(),
            "{method} {path}: {}",
            r.status
        );
        h.assert_unchanged(&before, &format!("{method} {path}"));
    }
    // Other query parameters (auth) on ordinary requests are ignored.
    let r = h
        .send(
            Method::PUT,
            &format!("{OBJ}/q?os_auth=x&unrelated=1"),
            &[],
            b"q".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .send(
            Method::GET,
            &format!("{OBJ}/q?upload_type=resumable"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "GET ignores upload_type");
    assert_eq!(r.text(), "q");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §4.7 expiry enforcement
// ---------------------------------------------------------------------------------------

/// Polls until the object answers 404 or the deadline passes.
async fn wait_for_404(h: &Harness, key: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if h.get(key, &[]).await.status == StatusCode::NOT_FOUND {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn expired_objects_are_404() {
    let h = Harness::start().await;
    h.put("short", &[("x-sn-expiration", b"ttl:1s")], b"s")
        .await;
    h.put("zero", &[("x-sn-expiration", b"ttl:0s")], b"z").await;
    h.put("long", &[("x-sn-expiration", b"ttl:1h")], b"l").await;
    let long_created = ts(&h.get("long", &[]).await, "x-sn-time-created");
    h.put("idle", &[("x-sn-expiration", b"tti:1s")], b"i").await;
    let idle_inserted = tokio::time::Instant::now();
    assert!(
        wait_for_404(&h, "short", Duration::from_secs(5)).await,
        "ttl:1s never expired"
    );
    assert!(
        wait_for_404(&h, "zero", Duration::from_secs(3)).await,
        "ttl:0s never expired"
    );
    // Not polled: every access would (correctly) move a TTI deadline. Its deadline is
    // at most 2 s after the insert (1 s, rounded up to the whole second).
    tokio::time::sleep_until(idle_inserted + Duration::from_millis(2_500)).await;
    assert_eq!(
        h.get("idle", &[]).await.status,
        StatusCode::NOT_FOUND,
        "tti:1s never expired"
    );
    for key in ["short", "zero", "idle"] {
        assert_eq!(
            h.head(key).await.status,
            StatusCode::NOT_FOUND,
            "HEAD {key}"
        );
        let r = h.get(key, &[("range", b"bytes=0-0")]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "ranged GET {key}");
        let r = h
            .patch(key, Some("application/json"), &extend_after("1d", "now"))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "PATCH {key}");
    }
    assert_eq!(h.get("long", &[]).await.text(), "l");
    // More than two seconds have passed: an overwrite sets a later creation time.
    h.put("long", &[("x-sn-expiration", b"ttl:1h")], b"l2")
        .await;
    let g = h.get("long", &[]).await;
    assert!(
        ts(&g, "x-sn-time-created") > long_created,
        "overwrite keeps old time-created"
    );
    assert_eq!(
        secs(ts(&g, "x-sn-time-expires")) - secs(ts(&g, "x-sn-time-created")),
        3_600
    );
    // Re-inserting an expired key works and resets the creation time.
    let r = h.put("short", &[], b"again").await;
    assert_eq!(r.status, StatusCode::OK);
    let g = h.get("short", &[]).await;
    assert_eq!(g.text(), "again");
    assert!(g.header("x-sn-expiration").is_none());
    h.stop().await;
}

#[tokio::test]
async fn tti_access_extends_the_deadline() {
    let h = Harness::start().await;
    h.put("idle", &[("x-sn-expiration", b"tti:4s")], b"i").await;
    // Access every second for 6 s: without bumps it would expire after ~4 s.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = h.get("idle", &[]).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "TTI object expired while being read"
        );
        assert_eq!(r.header("x-sn-expiration"), Some("tti:4s"));
    }
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §2.3 / §5.2 precedence, §4.4 TTI deadline, §4.5 no transcoding
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn error_precedence() {
    let h = Harness::start().await;
    h.put("k", &[], b"data").await;
    let before = h.snapshot();
    let bad_meta: &[(&str, &[u8])] = &[("content-encoding", b"identity")];
    // Path beats metadata.
    let r = h
        .send(
            Method::PUT,
            "/v1/objects/conf/org/k",
            bad_meta,
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.text(), "Invalid URL: scope must be 'key=value'");
    // Query beats metadata (plain text, not the JSON metadata error).
    let r = h
        .send(
            Method::PUT,
            &format!("{OBJ}/k?upload_type=bogus"),
            bad_meta,
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        !r.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "query error should be plain text: {}",
        r.text()
    );
    // Metadata is checked at resumable create, before the 501.
    let r = h
        .send(
            Method::PUT,
            &format!("{OBJ}/k?upload_type=resumable"),
            bad_meta,
            Vec::new(),
        )
        .await;
    r.assert_json_error(StatusCode::BAD_REQUEST, "client error");
    // Range is parsed before storage is consulted: bad Range on a missing key is 400.
    let r = h.get("missing", &[("range", b"bytes=9-1")]).await;
    r.assert_json_error(
        StatusCode::BAD_REQUEST,
        "client error: invalid Range header: ",
    );
    h.assert_unchanged(&before, "precedence requests");
    h.stop().await;
}

#[tokio::test]
async fn tti_read_reports_the_deadline_before_the_bump() {
    let h = Harness::start().await;
    h.put("idle", &[("x-sn-expiration", b"tti:4s")], b"i").await;
    let first = h.head("idle").await;
    let original = ts(&first, "x-sn-time-expires");
    // The debounce for tti:4s is 1 s; 2.5 s later an access moves the deadline.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let bumping = h.get("idle", &[]).await;
    assert_eq!(bumping.status, StatusCode::OK);
    assert_eq!(
        ts(&bumping, "x-sn-time-expires"),
        original,
        "the access that moves the deadline reports the old one (api §4.4 item 5)"
    );
    // The bump runs beside the read, not inside it: a later access sees it.
    let mut moved = false;
    for _ in 0..100 {
        if ts(&h.head("idle").await, "x-sn-time-expires") > original {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "a later access sees the moved deadline");
    h.stop().await;
}

#[tokio::test]
async fn responses_are_never_transcoded() {
    let h = Harness::start().await;
    let body = vec![b'a'; 4096];
    h.put("plain", &[("content-type", b"text/plain")], &body)
        .await;
    let g = h
        .get("plain", &[("accept-encoding", b"gzip, br, zstd, deflate")])
        .await;
    assert!(g.header("content-encoding").is_none());
    assert_eq!(g.body, body);
    assert_eq!(g.header("content-length"), Some("4096"));
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// §5.2 / §10 / DESIGN §2: admission limits and panic isolation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn web_limit_rejects_with_empty_503() {
    let h = Harness::start_with(|c| c.http.max_requests = 0).await;
    let before = h.snapshot();
    for (method, path) in [
        (Method::PUT, format!("{OBJ}/k")),
        (Method::GET, format!("{OBJ}/k")),
        (Method::POST, format!("{OBJ}/")),
    ] {
        let r = h.send(method.clone(), &path, &[], b"x".to_vec()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        assert!(r.body.is_empty(), "{method} {path}: {:?}", r.text());
        h.assert_unchanged(&before, &format!("{method} {path} over the web limit"));
    }
    let r = h.send(Method::GET, "/health", &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "OK");
    h.stop().await;
}

#[tokio::test]
async fn service_limit_rejects_with_429_json() {
    let h = Harness::start_with(|c| c.service.max_concurrency = 0).await;
    let before = h.snapshot();
    for (method, path) in [
        (Method::PUT, format!("{OBJ}/k")),
        (Method::GET, format!("{OBJ}/k")),
        (Method::DELETE, format!("{OBJ}/k")),
    ] {
        let r = h.send(method.clone(), &path, &[], b"x".to_vec()).await;
        r.assert_json_error(StatusCode::TOO_MANY_REQUESTS, "service error");
        h.assert_unchanged(&before, &format!("{method} {path} over the service limit"));
    }
    h.stop().await;
}

#[tokio::test]
async fn backend_panic_is_500_json_and_isolated() {
    let h = Harness::start_with(|c| c.faults.panic_key_prefix = Some("boom".to_owned())).await;
    h.put("fine", &[], b"ok").await;
    let before = h.snapshot();
    let r = h.put("boom-1", &[], b"x").await;
    r.assert_json_error(StatusCode::INTERNAL_SERVER_ERROR, "service error");
    h.assert_unchanged(&before, "PUT that panicked");
    let r = h.get("boom-2", &[]).await;
    r.assert_json_error(StatusCode::INTERNAL_SERVER_ERROR, "service error");
    // Everything else carries on.
    assert_eq!(h.get("fine", &[]).await.text(), "ok");
    assert_eq!(h.put("fine2", &[], b"ok2").await.status, StatusCode::OK);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// The same core rules on the in-memory backend (no snapshots: nothing on disk)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn memory_backend_core_behaviour() {
    let h = Harness::start_with(|c| c.storage = StorageConfig::Memory {}).await;
    let keys = ["a", "a/b", "a/", "a//a", "../x"];
    for (i, key) in keys.iter().enumerate() {
        let (r, _) = h
            .raw(&raw_request(
                "PUT",
                &format!("{OBJ}/{key}"),
                "x-snme-n: %C3%A9\r\n",
                format!("m{i}").as_bytes(),
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "PUT {key}");
    }
    for (i, key) in keys.iter().enumerate() {
        let (r, _) = h
            .raw(&raw_request("GET", &format!("{OBJ}/{key}"), "", b""))
            .await;
        assert_eq!(r.text(), format!("m{i}"), "GET {key}");
        assert_eq!(r.headers["x-snme-n"], "%C3%A9");
        assert_eq!(r.headers["x-sn-size"], "2");
        assert_eq!(r.headers["content-length"], "2");
    }
    let hd = h.head("a/b").await;
    assert_eq!(hd.header("content-length"), Some("2"));
    let r = h.get("a", &[("range", b"bytes=-1")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.header("content-range"), Some("bytes 1-1/2"));
    assert_eq!(h.delete("nope").await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.delete("a/").await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.get("a/", &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("a", &[]).await.text(), "m0");
    // Rejections store nothing.
    let r = h.put("bad", &[("x-snme-k", b"%FF")], b"x").await;
    r.assert_json_error(StatusCode::BAD_REQUEST, "client error");
    let r = h
        .send(
            Method::PUT,
            &format!("{OBJ}/bad?upload_type=resumable"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no Upload-Length");
    assert_eq!(h.get("bad", &[]).await.status, StatusCode::NOT_FOUND);
    // PATCH and expiry.
    h.put("t", &[("x-sn-expiration", b"ttl:1d")], b"t").await;
    let r = h
        .patch(
            "t",
            Some("application/json"),
            &extend_after("2d", "creation"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.head("t").await.header("x-sn-expiration"), Some("ttl:2d"));
    h.put("short", &[("x-sn-expiration", b"ttl:1s")], b"s")
        .await;
    assert!(wait_for_404(&h, "short", Duration::from_secs(5)).await);
    assert_eq!(h.head("short").await.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------
// Larger payloads: ranges across chunk boundaries, atomic overwrites
// ---------------------------------------------------------------------------------------

/// Deterministic, non-repeating test bytes.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn metrics_show_where_objects_live_and_the_log_commits() {
    let h = Harness::start().await;
    for key in ["a", "b", "c"] {
        assert_eq!(h.put(key, &[], b"small").await.status, StatusCode::OK);
    }
    assert_eq!(
        h.put("big", &[], &pattern(200_000, 3)).await.status,
        StatusCode::OK
    );
    assert_eq!(h.delete("b").await.status, StatusCode::NO_CONTENT);
    let text = h
        .send(Method::GET, "/metrics", &[], Vec::new())
        .await
        .text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from /metrics"))
    };
    assert_eq!(value("strata_storage_objects{location=\"log\"}"), 2.0);
    assert_eq!(value("strata_storage_objects{location=\"file\"}"), 1.0);
    // Three puts, a delete and the large object's marker: five records.
    assert_eq!(value("strata_storage_log_records_total"), 5.0);
    let commits = value("strata_storage_log_commits_total");
    assert!((1.0..=5.0).contains(&commits), "{commits} commits");
    assert!(value("strata_storage_log_live_bytes") > 0.0);
    assert!(value("strata_storage_log_live_bytes") < value("strata_storage_log_bytes"));
    assert_eq!(value("strata_storage_log_segments"), 1.0);
    assert_eq!(value("strata_storage_log_read_only"), 0.0);
    assert_eq!(value("strata_storage_compactions_total"), 0.0);
}

#[tokio::test]
async fn bytes_out_counts_payloads_served_from_log_and_file() {
    let h = Harness::start().await;
    let out = || h.server.metrics().bytes.with_label_values(&["out"]).get();
    let small = pattern(4096, 1);
    let big = pattern(300_000, 2);
    assert_eq!(h.put("small", &[], &small).await.status, StatusCode::OK);
    assert_eq!(h.put("big", &[], &big).await.status, StatusCode::OK);
    for (key, body) in [("small", &small), ("big", &big)] {
        let before = out();
        assert!(h.get(key, &[]).await.body == *body);
        assert_eq!(out() - before, body.len() as u64, "{key}");
        let before = out();
        let r = h.get(key, &[("range", b"bytes=100-199")]).await;
        assert!(r.body == body[100..200]);
        assert_eq!(out() - before, 100, "{key} range");
    }
}

#[tokio::test]
async fn large_object_ranges_cross_chunk_boundaries() {
    let h = Harness::start().await;
    let len = 3 * 1024 * 1024 + 17;
    let body = pattern(len, 7);
    assert_eq!(h.put("big", &[], &body).await.status, StatusCode::OK);
    let g = h.get("big", &[]).await;
    assert_eq!(g.header("content-length"), Some(len.to_string().as_str()));
    assert!(g.body == body, "full body differs");
    for (start, end) in [
        (0usize, 0usize),
        (65_535, 65_536),
        (8_191, 8_193),
        (1_000_000, 2_000_000),
        (len - 1, len - 1),
        (12_345, len - 1),
    ] {
        let range = format!("bytes={start}-{end}");
        let r = h.get("big", &[("range", range.as_bytes())]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body.len(), end - start + 1, "{range}");
        assert!(r.body == body[start..=end], "{range}: bytes differ");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{len}").as_str())
        );
    }
    let r = h.get("big", &[("range", b"bytes=-100000")]).await;
    assert!(r.body == body[len - 100_000..]);
    // HEAD ignores Range, even a malformed one.
    let r = h
        .send(
            Method::HEAD,
            &format!("{OBJ}/big"),
            &[("range", b"bytes=oops")],
            Vec::new(),
        )
        .await;
    assert!(r.status == StatusCode::OK || r.status == StatusCode::NO_CONTENT);
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_are_never_torn() {
    let h = std::sync::Arc::new(Harness::start().await);
    let len = 256 * 1024;
    let versions: Vec<Vec<u8>> = (0..4).map(|i| pattern(len, 100 + i)).collect();
    h.put("hot", &[("x-snme-v", b"0")], &versions[0]).await;
    let writer = {
        let h = h.clone();
        let versions = versions.clone();
        tokio::spawn(async move {
            for round in 0..24usize {
                let v = round % versions.len();
                let tag = v.to_string();
                let r = h
                    .put("hot", &[("x-snme-v", tag.as_bytes())], &versions[v])
                    .await;
                assert_eq!(r.status, StatusCode::OK);
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 10 {
        let g = h.get("hot", &[]).await;
        assert_eq!(g.status, StatusCode::OK);
        let v: usize = g
            .header("x-snme-v")
            .expect("version tag")
            .parse()
            .expect("tag");
        assert!(
            g.body == versions[v],
            "read {reads}: body does not match the metadata of version {v}"
        );
        reads += 1;
    }
    writer.await.expect("writer");
    match std::sync::Arc::try_unwrap(h) {
        Ok(h) => h.stop().await,
        Err(_) => panic!("harness still shared"),
    }
}

// ---------------------------------------------------------------------------------------
// More §2.2 / §3 / §5.2 edges
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn other_object_routes_never_store_objects() {
    let h = Harness::start().await;
    let before = h.snapshot();
    // Multipart initiate stages an upload (tests/python/test_multipart.py); parts and
    // completion of an unknown upload must not store anything.
    for (method, path) in [
        (
            Method::PUT,
            "/v1/objects:multipart:parts/conf/_/k?upload_id=x&part_number=1",
        ),
        (
            Method::POST,
            "/v1/objects:multipart:complete/conf/_/k?upload_id=x",
        ),
        (Method::POST, "/v1/objects:batch/conf/_/"),
        (Method::PUT, "/v1/objects:batch/conf/_/k"),
    ] {
        let r = h.send(method.clone(), path, &[], b"payload".to_vec()).await;
        assert!(
            !r.status.is_success(),
            "{method} {path} answered {} for an unknown upload or a bad batch",
            r.status
        );
        h.assert_unchanged(&before, &format!("{method} {path}"));
    }
    let r = h
        .send(Method::GET, "/v1/objects/conf/_/k", &[], Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test]
async fn duplicate_scope_names_and_long_keys() {
    let h = Harness::start().await;
    let r = h
        .send(
            Method::PUT,
            "/v1/objects/conf/a=1;a=2/k",
            &[],
            b"dup".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "duplicate names are not rejected");
    let r = h
        .send(Method::GET, "/v1/objects/conf/a=2;a=1/k", &[], Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "order matters");
    let long_key = format!("{}/{}", "k".repeat(600), "é".repeat(200));
    let encoded: String =
        percent_encoding::utf8_percent_encode(&long_key, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2F", "/");
    let r = h.put(&encoded, &[], b"long").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["key"], long_key.as_str());
    assert_eq!(h.get(&encoded, &[]).await.text(), "long");
    h.stop().await;
}

#[tokio::test]
async fn broken_off_upload_leaves_storage_unchanged() {
    let h = Harness::start().await;
    h.put("victim", &[("x-snme-v", b"old")], b"old payload")
        .await;
    let before = h.snapshot();
    for key in ["victim", "fresh"] {
        let mut stream = TcpStream::connect(h.server.addr()).await.expect("connect");
        let head = format!(
            "PUT {OBJ}/{key} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\
             x-snme-v: new\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write head");
        stream.write_all(&[b'x'; 1000]).await.expect("write part");
        stream.shutdown().await.expect("half-close");
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
        if !response.is_empty() {
            let (r, _) = parse_raw_response(&response);
            assert!(
                !r.status.is_success(),
                "a truncated upload of {key} was acknowledged with {}",
                r.status
            );
        }
    }
    // The storage task runs to completion; give it a moment to clean up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while h.snapshot() != before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.assert_unchanged(&before, "truncated uploads");
    let g = h.get("victim", &[]).await;
    assert_eq!(g.body, b"old payload");
    assert_eq!(g.header("x-snme-v"), Some("old"));
    assert_eq!(h.get("fresh", &[]).await.status, StatusCode::NOT_FOUND);
    h.stop().await;
}
