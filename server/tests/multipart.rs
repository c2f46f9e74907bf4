//! Multipart uploads M1–M6 (api §2.7) over raw HTTP on the memory backend (the Python
//! suite covers the filesystem backend with the real client): the streamed completion
//! (spaces while assembling, then one JSON document), a panic during assembly, and the
//! wire shapes of every call.

mod support;

use std::time::Duration;

use strata_server::app::{self, RunningServer};
use strata_server::config::{Config, StorageConfig};
use support::multipart::Multipart;

async fn start(adjust: impl FnOnce(&mut Config)) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.auth = strata_server::config::AuthConfig::disabled();
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.drain_file = dir.path().join("strata.down");
    config.storage = StorageConfig::Memory {};
    adjust(&mut config);
    (app::start(config).await.expect("server starts"), dir)
}

fn url(server: &RunningServer, route: &str, key: &str, query: &str) -> String {
    format!("http://{}/v1/{route}/{PATH}/{key}{query}", server.addr())
}

/// Where every object of these tests lives.
const PATH: &str = "mp/org=1";

async fn initiate(http: &reqwest::Client, server: &RunningServer, key: &str) -> String {
    let headers = [("content-type", "text/plain"), ("x-snme-tag", "v")];
    let body = Multipart::new(http, server, PATH)
        .initiate(key, &headers)
        .await;
    assert_eq!(body["key"], key);
    body["upload_id"].as_str().unwrap().to_owned()
}

async fn part(
    http: &reqwest::Client,
    server: &RunningServer,
    key: &str,
    upload: &str,
    n: u32,
    body: &'static str,
) -> String {
    Multipart::new(http, server, PATH)
        .part(key, upload, n, body)
        .await
}

async fn complete(
    http: &reqwest::Client,
    server: &RunningServer,
    key: &str,
    upload: &str,
    parts: &[(u32, &str)],
) -> (reqwest::StatusCode, Vec<u8>) {
    let r = Multipart::new(http, server, PATH)
        .complete(key, upload, parts)
        .await;
    let status = r.status();
    assert_eq!(r.headers()["content-type"], "application/json");
    (status, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn memory_backend_cycle_with_streamed_completion() {
    let (server, _dir) = start(|c| {
        c.faults.delay_key_prefix = Some("slow".into());
        c.faults.delay = Duration::from_millis(2500);
    })
    .await;
    let http = reqwest::Client::new();
    let upload = initiate(&http, &server, "slow/object").await;
    let e1 = part(&http, &server, "slow/object", &upload, 1, "hello ").await;
    let e2 = part(&http, &server, "slow/object", &upload, 2, "world").await;

    // The backend takes 2.5 s to store: the client sees spaces, then one document.
    let (status, body) = complete(
        &http,
        &server,
        "slow/object",
        &upload,
        &[(1, &e1), (2, &e2)],
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let json = text.trim_start_matches(' ');
    let spaces = text.len() - json.len();
    assert!(spaces >= 1, "no keep-alive spaces in {text:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(json).unwrap(),
        serde_json::json!({ "key": "slow/object" })
    );
    let got = http
        .get(url(&server, "objects", "slow/object", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "text/plain");
    assert_eq!(got.headers()["x-snme-tag"], "v");
    assert_eq!(got.text().await.unwrap(), "hello world");
    // The upload is gone after completion.
    let (status, body) = complete(&http, &server, "slow/object", &upload, &[(1, &e1)]).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["error"]["code"], "internal error");
    assert_eq!(
        server
            .metrics()
            .operations
            .with_label_values(&["multipart_complete", "ok"])
            .get(),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn part_order_and_a_panicking_assembly_are_error_documents() {
    let (server, _dir) = start(|c| c.faults.panic_key_prefix = Some("boom".into())).await;
    let http = reqwest::Client::new();
    let upload = initiate(&http, &server, "boom").await;
    let e1 = part(&http, &server, "boom", &upload, 1, "a").await;
    let e2 = part(&http, &server, "boom", &upload, 2, "b").await;
    let (status, body) = complete(&http, &server, "boom", &upload, &[(2, &e2), (1, &e1)]).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["error"]["code"], "InvalidPartOrder");
    let (status, body) = complete(&http, &server, "boom", &upload, &[(1, &e1), (2, &e2)]).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["error"]["code"], "internal error", "{doc}");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("panic"),
        "{doc}"
    );
    assert_eq!(
        server
            .metrics()
            .panics
            .with_label_values(&["multipart_complete"])
            .get(),
        1
    );
    // The server carries on.
    let other = initiate(&http, &server, "fine").await;
    let e = part(&http, &server, "fine", &other, 1, "ok").await;
    let (_, body) = complete(&http, &server, "fine", &other, &[(1, &e)]).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["key"],
        "fine"
    );
    server.shutdown().await;
}
