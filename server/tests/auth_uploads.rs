//! Access control on the batch and multipart routes (api §5.3, §6.4, §7): the batch
//! request is authenticated and admitted once, each operation authorized with its own
//! permission (a refusal is a 403 part that leaves the others alone) and inserts checked
//! against the use-case policy (a 400 part); every multipart call needs `object.write`.
//! The real Rust client 0.3.0 (`Session::many` with a signed token) and raw HTTP.

use std::collections::BTreeMap;

use futures::StreamExt;
use objectstore_client::{Client, OperationResult, Permission, Session, Usecase};
use reqwest::StatusCode;

#[path = "support/auth.rs"]
mod auth_support;

use auth_support::*;

fn session(client: &Client, org: u64) -> Session {
    Usecase::new(USECASE)
        .unwrap()
        .for_organization(org)
        .session(client)
        .unwrap()
}

/// Starts an enforcing server whose use case allows TTLs of at most one day.
async fn start() -> Harness {
    Harness::start(|c, _| {
        let mut policy = strata_server::limits::UsecaseConfig::default();
        policy.expiration.ttl.max = Some(std::time::Duration::from_secs(86_400));
        c.usecases.insert(USECASE.into(), policy);
    })
    .await
}

/// Writes `body` under `key` of org 7 with a full token.
async fn seed(h: &Harness, key: &str, body: &'static str) {
    let token = h.keys.full_token("7");
    let (status, text) = h
        .send(
            reqwest::Method::PUT,
            &Harness::object_path("7", key),
            Some(&token),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

/// One raw batch part.
fn part(boundary: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("--{boundary}\r\ncontent-disposition: form-data; name=part\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    format!("{out}\r\n{body}\r\n")
}

/// Posts a raw batch to org 7 and returns the response.
async fn raw_batch(h: &Harness, token: Option<&str>, parts: &[String]) -> reqwest::Response {
    let boundary = "test-boundary";
    let body = format!("{}--{boundary}--\r\n", parts.concat());
    let mut req = h
        .http
        .post(h.url(&format!("/v1/objects:batch/{USECASE}/org=7/")))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        );
    if let Some(t) = token {
        req = req.header("x-os-auth", format!("Bearer {t}"));
    }
    req.body(body).send().await.unwrap()
}

/// Status and JSON error detail (if any) of every result part, by operation index.
/// The test parts have one-line bodies, so a line-wise scan is exact here.
fn statuses(body: &str) -> BTreeMap<usize, (u16, String)> {
    let mut out = BTreeMap::new();
    for block in body.split("\r\n--os-boundary-") {
        let mut index = None;
        let mut status = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("x-sn-batch-operation-index: ") {
                index = Some(v.parse::<usize>().unwrap());
            }
            if let Some(v) = line.strip_prefix("x-sn-batch-operation-status: ") {
                status = Some(v.split(' ').next().unwrap().parse::<u16>().unwrap());
            }
        }
        if let (Some(i), Some(s)) = (index, status) {
            let detail = block
                .split("\r\n\r\n")
                .nth(1)
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b.trim()).ok())
                .and_then(|j| j["detail"].as_str().map(str::to_owned))
                .unwrap_or_default();
            assert!(out.insert(i, (s, detail)).is_none(), "index {i} twice");
        }
    }
    out
}

#[tokio::test]
async fn batch_refuses_only_the_operations_the_token_does_not_permit() {
    let h = start().await;
    seed(&h, "a", "va").await;
    seed(&h, "b", "vb").await;
    // A static token from the real client granting read and write but not delete.
    let writer = h.client(h.generator("full", &h.keys.full_v2));
    let token = session(&writer, 7)
        .create_token()
        .unwrap()
        .expect("generator")
        .permissions(&[Permission::ObjectRead, Permission::ObjectWrite])
        .sign()
        .unwrap();
    let client = h.client(token.clone());
    let s = session(&client, 7);
    let mut results = s
        .many()
        .push(s.delete("a"))
        .push(s.get("b"))
        .push(s.head("a"))
        .push(s.put("new").key("c").compress(None))
        .push(s.delete("b"))
        .send()
        .await;
    let (mut deletes, mut others) = (0, 0);
    while let Some(result) = results.next().await {
        match result {
            OperationResult::Delete(key, r) => {
                assert!(r.is_err(), "delete of {key} was allowed");
                deletes += 1;
            }
            OperationResult::Get(key, r) => {
                let got = r.expect("get allowed").expect("b exists");
                assert_eq!(key, "b");
                assert_eq!(&got.payload().await.unwrap()[..], b"vb");
                others += 1;
            }
            OperationResult::Head(_, r) => {
                assert!(r.expect("head allowed").is_some());
                others += 1;
            }
            OperationResult::Put(key, r) => {
                assert_eq!(r.expect("put allowed").key, key);
                others += 1;
            }
            OperationResult::Error(err) => panic!("unattributed batch error: {err}"),
        }
    }
    assert_eq!((deletes, others), (2, 3));
    // Nothing was deleted; the insert landed.
    assert_eq!(h.read_back("7", "a").await.as_deref(), Some("va"));
    assert_eq!(h.read_back("7", "b").await.as_deref(), Some("vb"));
    assert_eq!(h.read_back("7", "c").await.as_deref(), Some("new"));

    // The same batch on the wire: the deletes are 403 error parts, the rest 2xx.
    let b = "test-boundary";
    let parts = [
        part(
            b,
            &[
                ("x-sn-batch-operation-kind", "delete"),
                ("x-sn-batch-operation-key", "a"),
            ],
            "",
        ),
        part(
            b,
            &[
                ("x-sn-batch-operation-kind", "get"),
                ("x-sn-batch-operation-key", "b"),
            ],
            "",
        ),
        part(
            b,
            &[
                ("x-sn-batch-operation-kind", "insert"),
                ("x-sn-batch-operation-key", "d"),
            ],
            "vd",
        ),
        part(
            b,
            &[
                ("x-sn-batch-operation-kind", "DELETE"),
                ("x-sn-batch-operation-key", "c"),
            ],
            "",
        ),
    ];
    let res = raw_batch(&h, Some(&token), &parts).await;
    assert_eq!(res.status(), StatusCode::OK);
    let got = statuses(&res.text().await.unwrap());
    let codes: Vec<u16> = got.values().map(|(s, _)| *s).collect();
    assert_eq!(codes, [403, 200, 201, 403], "{got:?}");
    assert!(got[&0].1.contains("auth error"), "{got:?}");
    assert_eq!(h.read_back("7", "a").await.as_deref(), Some("va"));
    assert_eq!(h.read_back("7", "c").await.as_deref(), Some("new"));
    assert_eq!(h.read_back("7", "d").await.as_deref(), Some("vd"));
    // A token for another organization gets 403 for every operation.
    let other = h.keys.full_token("8");
    let res = raw_batch(&h, Some(&other), &parts).await;
    let got = statuses(&res.text().await.unwrap());
    assert!(got.values().all(|(s, _)| *s == 403), "{got:?}");
    assert_eq!(h.read_back("7", "a").await.as_deref(), Some("va"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn batch_without_a_token_is_refused_like_a_single_request() {
    let h = start().await;
    seed(&h, "a", "va").await;
    let (single, single_body) = h
        .send(
            reqwest::Method::DELETE,
            &Harness::object_path("7", "a"),
            None,
            "",
        )
        .await;
    assert!(
        single == StatusCode::BAD_REQUEST || single == StatusCode::UNAUTHORIZED,
        "{single}"
    );
    let b = "test-boundary";
    let parts = [part(
        b,
        &[
            ("x-sn-batch-operation-kind", "delete"),
            ("x-sn-batch-operation-key", "a"),
        ],
        "",
    )];
    let res = raw_batch(&h, None, &parts).await;
    assert_eq!(res.status(), single);
    assert_eq!(res.text().await.unwrap(), single_body);
    // A forged token (unknown signer) is refused for the whole request too.
    let forged = h.keys.token(
        "stranger",
        &claims(USECASE, "7", &["object.delete"], now() + 60),
    );
    let res = raw_batch(&h, Some(&forged), &parts).await;
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_ne!(res.status(), StatusCode::OK);
    assert_eq!(h.read_back("7", "a").await.as_deref(), Some("va"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn batch_insert_violating_the_usecase_policy_is_a_400_part() {
    let h = start().await;
    let token = h.keys.full_token("7");
    let b = "test-boundary";
    let parts = [
        part(
            b,
            &[
                ("x-sn-batch-operation-kind", "insert"),
                ("x-sn-batch-operation-key", "long"),
                ("x-sn-expiration", "ttl:2d"),
            ],
            "x",
        ),
        part(
            b,
            &[
                ("x-sn-batch-operation-kind", "insert"),
                ("x-sn-batch-operation-key", "short"),
                ("x-sn-expiration", "ttl:1h"),
            ],
            "y",
        ),
    ];
    let res = raw_batch(&h, Some(&token), &parts).await;
    assert_eq!(res.status(), StatusCode::OK);
    let got = statuses(&res.text().await.unwrap());
    assert_eq!(got[&0].0, 400, "{got:?}");
    assert!(got[&0].1.contains("use case policy violation"), "{got:?}");
    assert_eq!(got[&1].0, 201, "{got:?}");
    assert_eq!(h.read_back("7", "long").await, None);
    assert_eq!(h.read_back("7", "short").await.as_deref(), Some("y"));
    h.server.shutdown().await;
}

fn multipart_url(h: &Harness, route: &str, key: &str, query: &str) -> String {
    h.url(&format!("/v1/{route}/{USECASE}/org=7/{key}{query}"))
}

#[tokio::test]
async fn multipart_calls_need_write_permission() {
    let h = start().await;
    let full = h.keys.full_token("7");
    let read_only = h.keys.token(
        "full",
        &claims(USECASE, "7", &["object.read", "object.delete"], now() + 60),
    );
    let bearer = |t: &str| format!("Bearer {t}");
    // Initiate: 403 without write, 400/401 without a token, 400 on a policy violation.
    let r = h
        .http
        .put(multipart_url(&h, "objects:multipart", "m", ""))
        .header("x-os-auth", bearer(&read_only))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = h
        .http
        .put(multipart_url(&h, "objects:multipart", "m", ""))
        .send()
        .await
        .unwrap();
    assert!(r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::UNAUTHORIZED);
    let r = h
        .http
        .put(multipart_url(&h, "objects:multipart", "m", ""))
        .header("x-os-auth", bearer(&full))
        .header("x-sn-expiration", "ttl:2d")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("use case policy violation"));
    // A real upload, started with write permission.
    let r = h
        .http
        .put(multipart_url(&h, "objects:multipart", "m", ""))
        .header("x-os-auth", bearer(&full))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    let upload = body["upload_id"].as_str().unwrap().to_owned();
    let part_url = |n: u32| {
        multipart_url(
            &h,
            "objects:multipart:parts",
            "m",
            &format!("?upload_id={upload}&part_number={n}"),
        )
    };
    let put_part = |n: u32, token: String| {
        h.http
            .put(part_url(n))
            .header("x-os-auth", bearer(&token))
            .body("part-bytes")
            .send()
    };
    let r = put_part(1, full.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.json::<serde_json::Value>().await.unwrap()["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    // Upload a part without write: 403, and the part is not stored.
    let r = put_part(2, read_only.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let list = |token: String| {
        h.http
            .get(multipart_url(
                &h,
                "objects:multipart:parts",
                "m",
                &format!("?upload_id={upload}"),
            ))
            .header("x-os-auth", bearer(&token))
            .send()
    };
    assert_eq!(
        list(read_only.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let listed: serde_json::Value = list(full.clone()).await.unwrap().json().await.unwrap();
    let numbers: Vec<u64> = listed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1]);
    // Complete without write: 403, and no object appears.
    let complete = |token: String| {
        h.http
            .post(multipart_url(
                &h,
                "objects:multipart:complete",
                "m",
                &format!("?upload_id={upload}"),
            ))
            .header("x-os-auth", bearer(&token))
            .json(&serde_json::json!({"parts": [{"part_number": 1, "etag": etag}]}))
            .send()
    };
    assert_eq!(
        complete(read_only.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.read_back("7", "m").await, None);
    // Abort without write: 403, the upload survives and completes with write.
    let r = h
        .http
        .delete(multipart_url(
            &h,
            "objects:multipart",
            "m",
            &format!("?upload_id={upload}"),
        ))
        .header("x-os-auth", bearer(&read_only))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = complete(full.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(r.text().await.unwrap().trim()).unwrap();
    assert_eq!(doc["key"], "m", "{doc}");
    assert_eq!(h.read_back("7", "m").await.as_deref(), Some("part-bytes"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn resumable_create_checks_the_usecase_policy() {
    let h = start().await;
    let full = h.keys.full_token("7");
    let r = h
        .http
        .put(h.url(&format!(
            "{}?upload_type=resumable",
            Harness::object_path("7", "r")
        )))
        .header("x-os-auth", format!("Bearer {full}"))
        .header("x-sn-expiration", "ttl:2d")
        .header("upload-length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("use case policy violation"));
    h.server.shutdown().await;
}
