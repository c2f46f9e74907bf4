//! Batch endpoint B1 (api §7, newest §7, api §10 bulk permits): the real Rust client
//! 0.3.0 (`Session::many`) and raw HTTP for the wire edge cases.
//!
//! Every test starts its own in-process server on 127.0.0.1:0 in a temporary directory.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use objectstore_client::{Client, Compression, OperationResult, Session, Usecase};
use strata_server::app::{self, RunningServer};
use strata_server::config::{Config, StorageConfig};
use tempfile::TempDir;

struct Harness {
    server: RunningServer,
    client: Client,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.auth = strata_server::config::AuthConfig::disabled();
        config.http.addr = "127.0.0.1:0".parse().expect("address");
        config.http.drain_file = dir.path().join("strata.down");
        config.storage = StorageConfig::Filesystem {
            path: dir.path().join("data"),
        };
        adjust(&mut config);
        let server = app::start(config).await.expect("server starts");
        let client = Client::builder(format!("http://{}", server.addr()))
            .build()
            .expect("client builds");
        Self {
            server,
            client,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn session(&self, org: u64) -> Session {
        Usecase::new("batch")
            .expect("valid usecase")
            .for_organization(org)
            .session(&self.client)
            .expect("session")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    fn ops(&self, operation: &str, outcome: &str) -> u64 {
        self.server
            .metrics()
            .operations
            .with_label_values(&[operation, outcome])
            .get()
    }

    /// Sends a raw multipart batch body with `boundary`.
    async fn batch(&self, scopes: &str, boundary: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/objects:batch/batch/{scopes}/")))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("batch request")
    }
}

/// Deterministic bytes that do not compress much.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

async fn payload(response: objectstore_client::GetResponse) -> Bytes {
    response.payload().await.expect("payload readable")
}

#[tokio::test]
async fn rust_client_many_with_500_mixed_operations() {
    let h = Harness::start().await;
    let s = h.session(1);
    // Seed objects that the batch reads, heads and deletes.
    for i in 0..100 {
        s.put(format!("seed {i}"))
            .key(format!("seed/{i}"))
            .compress(None)
            .send()
            .await
            .unwrap();
    }
    let mut many = s.many();
    let mut expected_puts: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..200 {
        let key = format!("new dir/é {i}%");
        let body = if i % 2 == 0 {
            b"compressible ".repeat(50 + i)
        } else {
            noise(100 + i, i as u64)
        };
        let put = s.put(body.clone()).key(&key);
        let put = match i % 3 {
            0 => put.compress(Compression::Zstd),
            1 => put.compress(Compression::Gzip),
            _ => put.compress(None),
        };
        expected_puts.insert(key, body);
        many = many.push(put);
    }
    for i in 0..100 {
        many = many.push(s.get(&format!("seed/{i}")));
    }
    for i in 0..50 {
        many = many.push(s.head(&format!("seed/{i}")));
    }
    for i in 50..100 {
        many = many.push(s.delete(&format!("seed/{i}")));
    }
    for i in 0..50 {
        many = many.push(s.get(&format!("missing/{i}")));
    }
    let mut results = many.send().await;
    let (mut puts, mut gets, mut heads, mut deletes, mut misses) = (0, 0, 0, 0, 0);
    while let Some(result) = results.next().await {
        match result {
            OperationResult::Put(key, r) => {
                assert_eq!(r.expect("put ok").key, key);
                assert!(expected_puts.contains_key(&key), "{key:?}");
                puts += 1;
            }
            OperationResult::Get(key, r) => match r.expect("get ok") {
                Some(got) => {
                    let i: usize = key.strip_prefix("seed/").unwrap().parse().unwrap();
                    assert_eq!(payload(got).await, format!("seed {i}").into_bytes());
                    gets += 1;
                }
                None => {
                    assert!(key.starts_with("missing/"), "{key:?}");
                    misses += 1;
                }
            },
            OperationResult::Head(key, r) => {
                let meta = r.expect("head ok").expect("exists");
                let i: usize = key.strip_prefix("seed/").unwrap().parse().unwrap();
                assert_eq!(meta.size, Some(format!("seed {i}").len()));
                heads += 1;
            }
            OperationResult::Delete(key, r) => {
                r.expect("delete ok");
                assert!(key.starts_with("seed/"));
                deletes += 1;
            }
            OperationResult::Error(e) => panic!("unattributed error: {e}"),
        }
    }
    assert_eq!((puts, gets, heads, deletes, misses), (200, 100, 50, 50, 50));
    // All of them went through the batch endpoint, none as single requests.
    assert_eq!(h.ops("batch_insert", "ok"), 200);
    assert_eq!(h.ops("batch_get", "ok"), 100);
    assert_eq!(h.ops("batch_get", "not_found"), 50);
    assert_eq!(h.ops("batch_head", "ok"), 50);
    assert_eq!(h.ops("batch_delete", "ok"), 50);
    assert_eq!(h.ops("insert", "ok"), 100, "only the seeding PUTs");
    // Every insert reads back exactly, compressed ones decompressed by the client.
    for (key, body) in &expected_puts {
        let got = s.get(key).send().await.unwrap().expect("stored");
        assert_eq!(&payload(got).await[..], &body[..], "{key:?}");
    }
    for i in 50..100 {
        assert!(s.get(&format!("seed/{i}")).send().await.unwrap().is_none());
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn rust_client_sends_large_inserts_individually() {
    let h = Harness::start().await;
    let s = h.session(2);
    let big = noise(3 * 1024 * 1024, 7);
    let small = noise(1000, 8);
    let mut results = s
        .many()
        .push(s.put(big.clone()).key("big").compress(None))
        .push(s.put(small.clone()).key("small").compress(None))
        .send()
        .await;
    let mut keys = Vec::new();
    while let Some(result) = results.next().await {
        match result {
            OperationResult::Put(key, r) => {
                r.expect("put ok");
                keys.push(key);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    keys.sort();
    assert_eq!(keys, ["big", "small"]);
    assert_eq!(h.ops("insert", "ok"), 1, "the large insert is a single PUT");
    assert_eq!(h.ops("batch_insert", "ok"), 1);
    let got = s.get("big").send().await.unwrap().unwrap();
    assert_eq!(payload(got).await, big);
    h.server.shutdown().await;
}

/// One request part for raw batches.
fn part(boundary: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("--{boundary}\r\ncontent-disposition: form-data; name=part\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
    out
}

fn end(boundary: &str) -> Vec<u8> {
    format!("--{boundary}--\r\n").into_bytes()
}

/// A parsed response part.
#[derive(Debug)]
struct ResultPart {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl ResultPart {
    fn status(&self) -> u16 {
        self.headers["x-sn-batch-operation-status"]
            .split_once(' ')
            .unwrap()
            .0
            .parse()
            .unwrap()
    }
}

/// Splits a response byte-exactly as api §7 frames it, returning parts by index.
fn parse_response(content_type: &str, body: &[u8]) -> BTreeMap<usize, ResultPart> {
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=\"")
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or_else(|| panic!("content-type {content_type:?}"));
    let hex = boundary
        .strip_prefix("os-boundary-")
        .expect("boundary prefix");
    assert_eq!(hex.len(), 32);
    assert!(hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let closing = format!("--{boundary}--");
    assert!(
        body.ends_with(closing.as_bytes()),
        "no trailing CRLF after {closing}"
    );
    let body = &body[..body.len() - closing.len()];
    let delimiter = format!("--{boundary}\r\n");
    let mut parts = BTreeMap::new();
    let text = body;
    let mut rest = text;
    while !rest.is_empty() {
        assert!(
            rest.starts_with(delimiter.as_bytes()),
            "framing: {:?}",
            String::from_utf8_lossy(rest)
        );
        rest = &rest[delimiter.len()..];
        let head_end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        let head = std::str::from_utf8(&rest[..head_end]).unwrap();
        let mut headers = BTreeMap::new();
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(": ").expect("header line");
            assert_eq!(name, name.to_ascii_lowercase());
            headers.insert(name.to_owned(), value.to_owned());
        }
        rest = &rest[head_end + 4..];
        // The body runs until CRLF followed by the next delimiter or the end.
        let next = rest
            .windows(delimiter.len() + 2)
            .position(|w| w == format!("\r\n{delimiter}").as_bytes());
        let body_end = next.unwrap_or(rest.len() - 2);
        assert_eq!(&rest[body_end..body_end + 2], b"\r\n");
        let part = ResultPart {
            headers,
            body: rest[..body_end].to_vec(),
        };
        rest = &rest[body_end + 2..];
        assert_eq!(part.headers["content-disposition"], "form-data; name=part");
        let index: usize = part.headers["x-sn-batch-operation-index"].parse().unwrap();
        assert!(parts.insert(index, part).is_none(), "index {index} twice");
    }
    parts
}

async fn response_parts(response: reqwest::Response) -> BTreeMap<usize, ResultPart> {
    assert_eq!(response.status(), 200);
    let ct = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.bytes().await.unwrap();
    parse_response(&ct, &body)
}

/// Error parts carry only the index and status (and the part disposition), and the
/// JSON error body.
fn assert_error_part(part: &ResultPart, status: u16) {
    assert_error_headers(part, status);
    let json: serde_json::Value = serde_json::from_slice(&part.body).expect("JSON error body");
    assert!(json["detail"].is_string(), "{json}");
}

/// An error part's status and headers: only the index and status.
fn assert_error_headers(part: &ResultPart, status: u16) {
    assert_eq!(part.status(), status, "{part:?}");
    let names: Vec<&str> = part.headers.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "content-disposition",
            "x-sn-batch-operation-index",
            "x-sn-batch-operation-status"
        ],
        "{part:?}"
    );
}

#[tokio::test]
async fn raw_batch_edge_cases() {
    let h = Harness::start().await;
    let b = "XyZ-boundary";
    let mut body = Vec::new();
    body.extend(part(b, &[], b"")); // 0: missing kind
    body.extend(part(b, &[("x-sn-batch-operation-kind", "copy")], b"")); // 1: unknown kind
    body.extend(part(b, &[("x-sn-batch-operation-kind", "get")], b"")); // 2: missing key
    body.extend(part(
        b,
        &[
            ("x-sn-batch-operation-kind", "INSERT"),
            ("x-sn-batch-operation-key", "dir/a b%25c %C3%A9"),
            ("content-type", "text/plain"),
            ("x-snme-color", "blue"),
        ],
        b"hello",
    )); // 3: insert with literal and escaped key
    body.extend(part(
        b,
        &[("x-sn-batch-operation-kind", "insert")],
        &vec![b'x'; 1024 * 1024 + 1],
    )); // 4: too large
    body.extend(part(
        b,
        &[("x-sn-batch-operation-kind", "insert")],
        &vec![b'y'; 1024 * 1024],
    )); // 5: exactly 1 MiB, generated key
    body.extend(part(
        b,
        &[
            ("x-sn-batch-operation-kind", "insert"),
            ("x-sn-batch-operation-key", "bad-meta"),
            ("x-sn-expiration", "forever"),
        ],
        b"x",
    )); // 6: bad metadata
    body.extend(part(
        b,
        &[
            ("x-sn-batch-operation-kind", "head"),
            ("x-sn-batch-operation-key", "nope"),
        ],
        b"ignored body",
    )); // 7: head of a missing object
    body.extend(end(b));
    let parts = response_parts(h.batch("org=1", b, body).await).await;
    assert_eq!(parts.len(), 8);
    assert_error_part(&parts[&0], 400);
    assert_error_part(&parts[&1], 400);
    assert_error_part(&parts[&2], 400);
    assert_error_part(&parts[&4], 413);
    assert_error_part(&parts[&6], 400);
    let insert = &parts[&3];
    assert_eq!(insert.status(), 201);
    assert_eq!(insert.headers["x-sn-batch-operation-kind"], "insert");
    assert_eq!(
        insert.headers["x-sn-batch-operation-key"],
        "dir/a b%25c %C3%A9"
    );
    assert!(insert.body.is_empty());
    let generated = &parts[&5].headers["x-sn-batch-operation-key"];
    assert_eq!(parts[&5].status(), 201);
    assert_eq!(
        uuid::Uuid::parse_str(generated).unwrap().get_version_num(),
        4
    );
    assert_eq!(parts[&7].status(), 404);
    assert_eq!(parts[&7].headers["x-sn-batch-operation-key"], "nope");

    // The insert is an ordinary object; a batch get returns it with its metadata.
    let got = h
        .http
        .get(h.url("/v1/objects/batch/org=1/dir/a%20b%25c%20%C3%A9"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["x-snme-color"], "blue");
    assert_eq!(got.bytes().await.unwrap(), "hello");
    let mut body = part(
        b,
        &[
            ("x-sn-batch-operation-kind", "get"),
            ("x-sn-batch-operation-key", "dir%2Fa%20b%25c%20%C3%A9"),
        ],
        b"",
    );
    body.extend(part(
        b,
        &[
            ("x-sn-batch-operation-kind", "Head"),
            ("x-sn-batch-operation-key", "dir/a b%25c %C3%A9"),
        ],
        b"",
    ));
    body.extend(part(
        b,
        &[
            ("x-sn-batch-operation-kind", "delete"),
            ("x-sn-batch-operation-key", generated),
        ],
        b"",
    ));
    body.extend(end(b));
    let parts = response_parts(h.batch("org=1", b, body).await).await;
    let get = &parts[&0];
    assert_eq!(get.status(), 200);
    assert_eq!(get.body, b"hello");
    assert_eq!(get.headers["content-type"], "text/plain");
    assert_eq!(get.headers["x-snme-color"], "blue");
    assert_eq!(get.headers["x-sn-batch-operation-kind"], "get");
    assert!(!get.headers.contains_key("accept-ranges"));
    let head = &parts[&1];
    assert_eq!(head.status(), 204);
    assert_eq!(head.headers["content-type"], "text/plain");
    assert!(head.body.is_empty());
    assert_eq!(parts[&2].status(), 204);
    assert_eq!(parts[&2].headers["x-sn-batch-operation-kind"], "delete");
    h.server.shutdown().await;
}

#[tokio::test]
async fn raw_batch_request_level_errors() {
    let h = Harness::start().await;
    // No boundary / not multipart: 400 plain text.
    for ct in ["application/json", "multipart/form-data", ""] {
        let mut req = h.http.post(h.url("/v1/objects:batch/batch/org=1/"));
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let r = req.body("x").send().await.unwrap();
        assert_eq!(r.status(), 400, "{ct}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
    // No trailing slash: 404.
    let r = h.batch_no_slash().await;
    assert_eq!(r.status(), 404);
    // Bad path: 400.
    let r = h
        .http
        .post(h.url("/v1/objects:batch/bad%20usecase/org=1/"))
        .header("content-type", "multipart/form-data; boundary=b")
        .body(end("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // An empty batch is just the closing delimiter.
    let r = h.batch("org=1", "b", end("b")).await;
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let body = r.bytes().await.unwrap();
    assert!(parse_response(&ct, &body).is_empty());
    // A stream that breaks mid-part: the failure is a 400 part.
    let mut body = part(
        "b",
        &[
            ("x-sn-batch-operation-kind", "get"),
            ("x-sn-batch-operation-key", "k"),
        ],
        b"",
    );
    body.extend_from_slice(b"--b\r\nx-sn-batch-operation-kind: insert\r\n\r\ntruncated");
    let parts = response_parts(h.batch("org=1", "b", body).await).await;
    assert_eq!(parts[&0].status(), 404);
    assert_error_part(&parts[&1], 400);
    h.server.shutdown().await;
}

impl Harness {
    async fn batch_no_slash(&self) -> reqwest::Response {
        self.http
            .post(self.url("/v1/objects:batch/batch/org=1"))
            .header("content-type", "multipart/form-data; boundary=b")
            .body(end("b"))
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn parts_after_the_1000th_get_413_each() {
    let h = Harness::start().await;
    let b = "many";
    let mut body = Vec::new();
    for i in 0..1003 {
        let key = format!("k{i}");
        body.extend(part(
            b,
            &[
                ("x-sn-batch-operation-kind", "insert"),
                ("x-sn-batch-operation-key", &key),
            ],
            key.as_bytes(),
        ));
    }
    body.extend(end(b));
    let parts = response_parts(h.batch("org=3", b, body).await).await;
    assert_eq!(parts.len(), 1003);
    for i in 0..1000 {
        assert_eq!(parts[&i].status(), 201, "{i}");
    }
    for i in 1000..1003 {
        assert_error_part(&parts[&i], 413);
    }
    assert_eq!(h.ops("batch_insert", "ok"), 1000);
    let r = h
        .http
        .get(h.url("/v1/objects/batch/org=3/k1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    h.server.shutdown().await;
}

/// A request body past the 1 GiB cap (api §7): the operations before it complete, the
/// part the cap cuts off gets 413 (an insert body over 1 MiB), and the stream error is
/// one more part with 400; nothing of the oversized insert is stored. The body is
/// generated as it is sent, so the test never holds it.
#[tokio::test]
async fn a_body_past_the_1_gib_cap_ends_in_a_400_part() {
    let h = Harness::start().await;
    let b = "capped";
    let mut head = part(
        b,
        &[
            ("x-sn-batch-operation-kind", "insert"),
            ("x-sn-batch-operation-key", "small"),
        ],
        b"fits",
    );
    let big = part(
        b,
        &[
            ("x-sn-batch-operation-kind", "insert"),
            ("x-sn-batch-operation-key", "huge"),
        ],
        b"",
    );
    // The second part's headers, without its (empty) body and closing CRLF.
    head.extend_from_slice(&big[..big.len() - 2]);
    // Exactly one byte past the cap, then the client waits: the server has read all
    // that was sent when it answers and closes, so no reset can cut off the answer.
    let cap = 1usize << 30;
    let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let mut filler = cap - head.len();
    let mut pieces = vec![bytes::Bytes::from(head)];
    while filler > 0 {
        let take = filler.min(chunk.len());
        pieces.push(chunk.slice(..take));
        filler -= take;
    }
    pieces.push(bytes::Bytes::from_static(b"x"));
    let body = futures::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>))
        .chain(futures::stream::pending());
    let request = h
        .http
        .post(h.url("/v1/objects:batch/batch/org=4/"))
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let answered = async {
        let response = request.await.expect("batch request");
        assert_eq!(response.status(), 200, "the failure is reported in a part");
        response_parts(response).await
    };
    // Without the cap the server would wait for the rest of the body forever.
    let parts = tokio::time::timeout(Duration::from_secs(120), answered)
        .await
        .expect("the cap ends the request");
    assert_eq!(parts.len(), 3, "{:?}", parts.keys());
    assert_eq!(parts[&0].status(), 201);
    assert_error_part(&parts[&1], 413);
    assert_error_part(&parts[&2], 400);
    let get = |key: &'static str| {
        h.http
            .get(h.url(&format!("/v1/objects/batch/org=4/{key}")))
            .send()
    };
    assert_eq!(get("small").await.unwrap().status(), 200);
    assert_eq!(get("huge").await.unwrap().status(), 404);
    h.server.shutdown().await;
}

fn inserts(boundary: &str, prefix: &str, n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}{i}");
        body.extend(part(
            boundary,
            &[
                ("x-sn-batch-operation-kind", "insert"),
                ("x-sn-batch-operation-key", &key),
            ],
            key.as_bytes(),
        ));
    }
    body.extend(end(boundary));
    body
}

#[tokio::test]
async fn a_panic_in_one_operation_leaves_the_other_999_intact() {
    let h = Harness::start_with(|c| {
        c.faults.panic_key_prefix = Some("boom".into());
    })
    .await;
    let b = "p";
    let mut body = inserts(b, "ok", 999);
    body.truncate(body.len() - end(b).len());
    body.extend(part(
        b,
        &[
            ("x-sn-batch-operation-kind", "insert"),
            ("x-sn-batch-operation-key", "boom-1"),
        ],
        b"x",
    ));
    body.extend(end(b));
    let parts = response_parts(h.batch("org=4", b, body).await).await;
    assert_eq!(parts.len(), 1000);
    assert_error_part(&parts[&999], 500);
    let detail = serde_json::from_slice::<serde_json::Value>(&parts[&999].body).unwrap();
    assert!(
        detail["detail"].as_str().unwrap().contains("panicked")
            || detail["detail"]
                .as_str()
                .unwrap()
                .contains("service task failed"),
        "{detail}"
    );
    for i in 0..999 {
        assert_eq!(parts[&i].status(), 201, "{i}");
    }
    assert_eq!(h.ops("batch_insert", "panic"), 1);
    assert_eq!(h.ops("batch_insert", "ok"), 999);
    let r = h
        .http
        .get(h.url("/v1/objects/batch/org=4/ok998"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), "ok998");
    h.server.shutdown().await;
}

/// Each operation takes a throughput token of its own after the request's (api §7 step
/// 2): with a one-request-per-second rule the request is admitted and its operations
/// get 429 parts, counted like any rate-limited request.
#[tokio::test]
async fn batch_operations_take_throughput_tokens_of_their_own() {
    let h = Harness::start_with(|c| {
        c.rate_limits.throughput.rules = vec![strata_server::limits::ThroughputRule {
            scopes: vec![("org".into(), "8".into())],
            rps: Some(1),
            ..Default::default()
        }];
    })
    .await;
    let b = "rate";
    let mut body = Vec::new();
    for key in ["a", "b", "c"] {
        body.extend(part(
            b,
            &[
                ("x-sn-batch-operation-kind", "get"),
                ("x-sn-batch-operation-key", key),
            ],
            b"",
        ));
    }
    body.extend(end(b));
    let response = h.batch("org=8", b, body).await;
    assert_eq!(
        response.status(),
        200,
        "the request itself took the one token"
    );
    let parts = response_parts(response).await;
    let limited = parts.values().filter(|p| p.status() == 429).count();
    // A token refills after a second: at most one operation of a stalled run gets it.
    assert!(
        limited >= 2,
        "{:?}",
        parts.values().map(|p| p.status()).collect::<Vec<_>>()
    );
    for part in parts.values().filter(|p| p.status() == 429) {
        // The same plain-text body as a rate-limited request.
        assert_error_headers(part, 429);
        let text = String::from_utf8_lossy(&part.body);
        assert!(text.contains("rate limit"), "{text}");
    }
    let counted = h
        .server
        .metrics()
        .access
        .rate_limited
        .with_label_values(&["throughput_rule"])
        .get();
    assert_eq!(counted, limited as u64);
    h.server.shutdown().await;
}

/// Results stream in completion order, not request order: a slow first operation's
/// part comes after the quick second one's.
#[tokio::test]
async fn results_arrive_in_completion_order() {
    let h = Harness::start_with(|c| {
        c.faults.delay_key_prefix = Some("slow".into());
        c.faults.delay = Duration::from_millis(500);
    })
    .await;
    let b = "order";
    let mut body = part(
        b,
        &[
            ("x-sn-batch-operation-kind", "insert"),
            ("x-sn-batch-operation-key", "slow-first"),
        ],
        b"1",
    );
    body.extend(part(
        b,
        &[
            ("x-sn-batch-operation-kind", "insert"),
            ("x-sn-batch-operation-key", "quick-second"),
        ],
        b"2",
    ));
    body.extend(end(b));
    let text = h.batch("org=6", b, body).await.text().await.unwrap();
    let at = |index: usize| {
        text.find(&format!("x-sn-batch-operation-index: {index}\r\n"))
            .unwrap_or_else(|| panic!("no part {index} in {text:?}"))
    };
    assert!(at(1) < at(0), "the quick operation reports first: {text:?}");
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_slow_batch_leaves_room_for_single_requests() {
    let h = Harness::start_with(|c| {
        c.faults.delay_key_prefix = Some("slow".into());
        c.faults.delay = Duration::from_millis(20);
        c.service.max_concurrency = 10;
        c.service.bulk_percent = 50;
        c.service.queue_timeout = Duration::from_secs(30);
    })
    .await;
    let b = "slow";
    let body = inserts(b, "slow", 1000);
    let request = h
        .http
        .post(h.url("/v1/objects:batch/batch/org=5/"))
        .header("content-type", format!("multipart/form-data; boundary={b}"))
        .body(body);
    let batch = tokio::spawn(async move { response_parts(request.send().await.unwrap()).await });
    // Wait until the batch holds its whole bulk budget.
    let mut saw_bulk = false;
    for _ in 0..2000 {
        if h.server.metrics().bulk_tasks_running.get() == 5 {
            saw_bulk = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(saw_bulk, "the batch never saturated its bulk budget");
    // Single requests keep being served while the batch is running.
    let mut served_during_batch = 0;
    for i in 0..50 {
        let r = h
            .http
            .put(h.url(&format!("/v1/objects/batch/org=5/single{i}")))
            .body("single")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "single request {i} refused during the batch"
        );
        if h.server.metrics().bulk_tasks_running.get() > 0 {
            served_during_batch += 1;
        }
    }
    assert!(served_during_batch > 0);
    let parts = batch.await.unwrap();
    assert_eq!(parts.len(), 1000);
    assert!(parts.values().all(|p| p.status() == 201));
    assert_eq!(h.server.metrics().bulk_tasks_running.get(), 0);
    h.server.shutdown().await;
}
