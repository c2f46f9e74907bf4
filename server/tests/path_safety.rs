//! Path traversal (issue 15, security): object keys, scopes, usecases and upload ids
//! made of `..`, encoded slashes and dots, backslashes and absolute paths never create
//! or read a file outside the filesystem backend's root.
//!
//! The server's data directory sits next to a decoy directory holding a canary file.
//! Every request goes over raw TCP, so the request target reaches the server exactly as
//! written (clients would normalise `..`). Afterwards the whole temporary tree is
//! compared: outside the data directory nothing changed, and inside it only the
//! backend's own layout exists, with no file named after any key.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use strata_server::app;
use strata_server::auth::AuthConfig;
use strata_server::config::{Config, StorageConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CANARY: &[u8] = b"canary: must never be read or overwritten";

/// Keys as they appear in the request target, after `/v1/objects/safe/org=1/`.
const KEYS: &[&str] = &[
    "../../decoy/canary",
    "../../../../../../etc/passwd",
    "..%2F..%2Fdecoy%2Fcanary",
    "..%2f..%2fdecoy%2fcanary",
    "%2e%2e/%2e%2e/decoy/canary",
    "%2e%2e%2f%2e%2e%2fdecoy%2fcanary",
    "%2E%2E%2F%2E%2E%2Fdecoy%2Fcanary",
    "%252e%252e%252fdecoy%252fcanary",
    "..%5C..%5Cdecoy%5Ccanary",
    "%5C..%5C..%5Cdecoy",
    "/%2Fdecoy/canary",
    "%2Fetc%2Fpasswd",
    "./../decoy/./canary",
    "decoy/../../../canary",
    "..",
    "...",
    "%2e%2e",
    "%00canary",
];

/// Sends one request over a new connection; returns status and body.
async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {target}: no response head: {response:?}"));
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line of {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut body = response[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]).into_owned();
        let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
        data = &data[end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}

/// Every file and directory under `root`, relative, plus the canary's content.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            out.insert(path.strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Inside the data root only the backend's own names exist: `LOCK`, `FORMAT`, `log/<hex>.seg`,
/// `objects/<xx>/<sha256 hex>` and the `uploads/` staging area.
fn assert_backend_layout(data: &Path) {
    for path in tree(data) {
        let parts: Vec<&str> = path.split('/').collect();
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        let ok = match parts.as_slice() {
            ["LOCK"] | ["FORMAT"] | ["log"] | ["objects"] | ["uploads"] => true,
            ["log", seg] => seg.strip_suffix(".seg").is_some_and(hex),
            ["objects", shard] => shard.len() == 2 && hex(shard),
            ["objects", shard, name] => shard.len() == 2 && name.len() == 64 && hex(name),
            ["uploads", ..] => parts
                .iter()
                .all(|p| !p.contains("decoy") && !p.contains("canary")),
            _ => false,
        };
        assert!(ok, "unexpected path in the data root: {path}");
    }
}

#[tokio::test]
async fn traversal_keys_stay_inside_the_storage_root() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let decoy = tmp.path().join("decoy");
    std::fs::create_dir(&decoy).unwrap();
    std::fs::write(decoy.join("canary"), CANARY).unwrap();
    let data = tmp.path().join("store").join("data");
    let mut config = Config {
        auth: AuthConfig::disabled(),
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.drain_file = tmp.path().join("strata.down");
    config.storage = StorageConfig::Filesystem { path: data.clone() };
    let server = app::start(config).await.expect("server starts");
    let addr = server.addr();
    let outside_before: BTreeSet<String> = tree(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("store"))
        .collect();

    let mut stored = 0;
    // Small objects land in the log, large ones in files of their own: try both.
    let large = vec![b'L'; 200 * 1024];
    for (i, key) in KEYS.iter().enumerate() {
        for (size, payload) in [
            ("small", format!("payload {i}").into_bytes()),
            ("large", large.clone()),
        ] {
            let target = format!("/v1/objects/safe/org=1/{key}");
            let (status, body) = raw(addr, "PUT", &target, &payload).await;
            assert!(
                status == 200 || status == 400 || status == 404,
                "PUT {target} ({size}): {status} {}",
                String::from_utf8_lossy(&body)
            );
            let (get_status, got) = raw(addr, "GET", &target, b"").await;
            assert_ne!(got, CANARY, "GET {target} read the canary");
            if status == 200 {
                stored += 1;
                // Whatever the key decoded to, it round-trips as an object of its own.
                assert_eq!(get_status, 200, "GET {target} ({size})");
                assert!(got == payload, "GET {target} ({size}): other bytes");
            }
        }
    }
    assert!(
        stored >= KEYS.len(),
        "most keys are valid objects: {stored}"
    );

    // Traversal in the other path segments and in upload ids is refused outright.
    for target in [
        "/v1/objects/..%2F..%2Fdecoy/org=1/k",
        "/v1/objects/safe/..%2F..%2Fdecoy/k",
        "/v1/objects/safe/org=..%2F..%2Fdecoy/k",
        "/v1/objects/%2e%2e/org=1/k",
        "/v1/objects:multipart:parts/safe/org=1/k?upload_id=..%2F..%2Fdecoy&part_number=1",
        "/v1/objects:multipart:parts/safe/org=1/k?upload_id=%2Ftmp%2Fx&part_number=1",
    ] {
        let (status, body) = raw(addr, "PUT", target, b"evil").await;
        assert!(
            (400..500).contains(&status),
            "PUT {target}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let (_, got) = raw(addr, "GET", target, b"").await;
        assert_ne!(got, CANARY, "GET {target} read the canary");
    }

    server.shutdown().await;
    let outside_after: BTreeSet<String> = tree(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("store"))
        .collect();
    assert_eq!(
        outside_before, outside_after,
        "files appeared outside the root"
    );
    assert_eq!(std::fs::read(decoy.join("canary")).unwrap(), CANARY);
    assert_eq!(
        tree(&tmp.path().join("store"))
            .iter()
            .filter(|p| !p.starts_with("data"))
            .count(),
        0,
        "files next to the data root"
    );
    assert_backend_layout(&data);
}
