//! Access control end to end (api §5.2, §6, §8): the real Rust client 0.3.0 signing with
//! `TokenGenerator` and static tokens, every refused credential (with read-back proving
//! nothing was written or deleted), pre-signed URLs, killswitches, rate limits, usecase
//! policy and start-up refusals. Keys are made at test time with `openssl genpkey`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer;
use objectstore_client::{Client, Permission, Session, Usecase};
use reqwest::StatusCode;
use serde_json::{json, Value};
use strata_server::app;
use strata_server::auth::AuthConfig;
use strata_server::config::{Config, StorageConfig};

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

/// Reads `key` of org 7 through the client (which undoes its zstd compression).
async fn client_read(client: &Client, key: &str) -> Option<Vec<u8>> {
    let got = session(client, 7).get(key).send().await.unwrap()?;
    Some(got.payload().await.unwrap().to_vec())
}

#[tokio::test]
async fn rust_client_token_generator_and_static_tokens_round_trip() {
    let h = Harness::start(|_, _| {}).await;
    // TokenGenerator signs a fresh JWT per request; v1 of the key still verifies.
    for pair in [&h.keys.full_v2, &h.keys.full_v1] {
        let client = h.client(h.generator("full", pair));
        let s = session(&client, 7);
        s.put("hello").key("k").send().await.unwrap();
        let got = s.get("k").send().await.unwrap().expect("stored");
        assert_eq!(&got.payload().await.unwrap()[..], b"hello");
        assert!(s.head("k").send().await.unwrap().is_some());
        s.delete("k").send().await.unwrap();
        assert!(s.get("k").send().await.unwrap().is_none());
    }
    // A static read-only token minted by the client: reads work, writes are refused.
    let writer = h.client(h.generator("full", &h.keys.full_v2));
    session(&writer, 7).put("v1").key("r").send().await.unwrap();
    let static_token = session(&writer, 7)
        .create_token()
        .unwrap()
        .expect("generator")
        .permissions(&[Permission::ObjectRead])
        .sign()
        .unwrap();
    let reader = h.client(static_token);
    let s = session(&reader, 7);
    assert!(s.get("r").send().await.unwrap().is_some());
    assert!(s.put("v2").key("r").send().await.is_err());
    assert!(s.delete("r").send().await.is_err());
    assert_eq!(client_read(&writer, "r").await.as_deref(), Some(&b"v1"[..]));
    // The same token does not open another organization.
    assert!(session(&reader, 8).get("r").send().await.is_err());
    // A key whose max_permissions lack write grants nothing more through the client.
    let limited = h.client(h.generator("readonly", &h.keys.readonly));
    assert!(session(&limited, 7).put("x").key("r").send().await.is_err());
    assert_eq!(client_read(&writer, "r").await.as_deref(), Some(&b"v1"[..]));
    h.server.shutdown().await;
}

/// Every refused credential of api §5.2 on PUT (new key) and DELETE (existing key):
/// documented status and JSON body, nothing written, nothing deleted.
#[tokio::test]
async fn refused_credentials_write_and_delete_nothing() {
    let h = Harness::start(|_, _| {}).await;
    let full = h.keys.full_token("1");
    let put = reqwest::Method::PUT;
    let (status, _) = h
        .send(
            put.clone(),
            &Harness::object_path("1", "keep"),
            Some(&full),
            "original",
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let all = ["object.read", "object.write", "object.delete"];
    let later = now() + 300;
    let k = &h.keys;
    let tampered = {
        let t = k.full_token("1");
        let parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(USECASE, "*", &all, later).to_string());
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let cases: Vec<(&str, Option<String>, StatusCode, &str)> = vec![
        ("missing token", None, StatusCode::BAD_REQUEST, "auth error: bad request"),
        ("malformed", Some("not-a-jwt".into()), StatusCode::UNAUTHORIZED, "auth error"),
        (
            "expired beyond leeway",
            Some(k.token("full", &claims(USECASE, "1", &all, now() - 120))),
            StatusCode::UNAUTHORIZED,
            "auth error",
        ),
        (
            "wrong alg",
            Some(k.full_v2.jwt(
                &json!({"alg": "HS256", "kid": "full"}),
                &claims(USECASE, "1", &all, later),
            )),
            StatusCode::UNAUTHORIZED,
            "auth error",
        ),
        (
            "missing kid",
            Some(k.full_v2.jwt(&json!({"alg": "EdDSA"}), &claims(USECASE, "1", &all, later))),
            StatusCode::BAD_REQUEST,
            "auth error: bad request",
        ),
        (
            "unknown kid",
            Some(k.token("stranger", &claims(USECASE, "1", &all, later))),
            StatusCode::UNAUTHORIZED,
            "auth error",
        ),
        (
            "signed by a key that is not configured",
            Some(k.stranger.jwt(
                &json!({"alg": "EdDSA", "kid": "full"}),
                &claims(USECASE, "1", &all, later),
            )),
            StatusCode::UNAUTHORIZED,
            "auth error",
        ),
        ("tampered claims", Some(tampered), StatusCode::UNAUTHORIZED, "auth error"),
        (
            "numeric scope value",
            Some(k.token(
                "full",
                &json!({"exp": later, "permissions": all, "res": {"os:usecase": USECASE, "org": 1}}),
            )),
            StatusCode::UNAUTHORIZED,
            "auth error",
        ),
        (
            "wrong usecase",
            Some(k.token("full", &claims("other", "1", &all, later))),
            StatusCode::FORBIDDEN,
            "auth error: operation not allowed",
        ),
        (
            "scope escape",
            Some(k.token("full", &claims(USECASE, "2", &all, later))),
            StatusCode::FORBIDDEN,
            "auth error: operation not allowed",
        ),
        (
            "missing permission",
            Some(k.token("full", &claims(USECASE, "1", &["object.read"], later))),
            StatusCode::FORBIDDEN,
            "auth error: operation not allowed",
        ),
        (
            "key max_permissions lacks it",
            Some(k.token("readonly", &claims(USECASE, "1", &all, later))),
            StatusCode::FORBIDDEN,
            "auth error: operation not allowed",
        ),
        (
            "key without max_permissions",
            Some(k.token("none", &claims(USECASE, "*", &all, later))),
            StatusCode::FORBIDDEN,
            "auth error: operation not allowed",
        ),
    ];
    for (name, token, status, detail) in &cases {
        for (method, key) in [(put.clone(), "new"), (reqwest::Method::DELETE, "keep")] {
            let (got, body) = h
                .send(
                    method.clone(),
                    &Harness::object_path("1", key),
                    token.as_deref(),
                    "evil",
                )
                .await;
            assert_eq!(got, *status, "{name} {method}: {body}");
            let json: Value =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: {body}"));
            assert!(
                json["detail"].as_str().unwrap().starts_with(detail),
                "{name}: {body}"
            );
        }
        assert_eq!(h.read_back("1", "new").await, None, "{name} wrote");
        assert_eq!(
            h.read_back("1", "keep").await.as_deref(),
            Some("original"),
            "{name}"
        );
    }
    // Wildcard scope and a shallower path are allowed; the failures were counted.
    let wildcard = k.token("full", &claims(USECASE, "*", &all, later));
    let (status, _) = h
        .send(
            reqwest::Method::GET,
            &Harness::object_path("1", "keep"),
            Some(&wildcard),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let shallow = format!("/v1/objects/{USECASE}/_/x");
    let (status, _) = h.send(put.clone(), &shallow, Some(&full), "ok").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.metric(r#"strata_auth_failures_total{code="400",reason="missing_token"}"#),
        2
    );
    assert_eq!(
        h.metric(r#"strata_auth_failures_total{code="403",reason="scope"}"#),
        2
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn token_sources_follow_the_documented_precedence() {
    let h = Harness::start(|_, _| {}).await;
    let good = h.keys.full_token("1");
    let path = Harness::object_path("1", "k");
    let send = |headers: Vec<(&'static str, String)>, query: &str| {
        let mut req = h.http.put(format!("{}{query}", h.url(&path)));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.body("x").send().await.unwrap().status() }
    };
    assert_eq!(
        send(vec![("authorization", format!("bearer {good}"))], "").await,
        StatusCode::OK
    );
    assert_eq!(
        send(vec![], &format!("?os_auth={good}")).await,
        StatusCode::OK
    );
    // A malformed x-os-auth does not fall back to Authorization.
    assert_eq!(
        send(
            vec![
                ("x-os-auth", good.clone()),
                ("authorization", format!("Bearer {good}"))
            ],
            ""
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(vec![], &format!("?os_auth={good}&os_auth={good}")).await,
        StatusCode::BAD_REQUEST
    );
    h.server.shutdown().await;
}

/// Builds a pre-signed URL path+query for `path` the way the clients do.
fn presign(pair: &KeyPair, kid: &str, method: &str, path: &str, ts: &str, duration: u64) -> String {
    let query = format!("os_kid={kid}&os_timestamp={ts}&os_duration={duration}");
    let canonical = strata_server::auth::presigned::canonical_string(method, path, &query);
    let sig = pair.signing_key().sign(canonical.as_bytes());
    format!(
        "{path}?{query}&os_sig={}",
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    )
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn presigned_urls_are_checked_byte_for_byte() {
    let h = Harness::start(|_, _| {}).await;
    let full = h.keys.full_token("1");
    let path = Harness::object_path("1", "pre");
    h.send(reqwest::Method::PUT, &path, Some(&full), "signed")
        .await;
    let ts = rfc3339(now());
    let k = &h.keys;
    let get = |url: String| {
        let req = h.http.get(h.url(&url));
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let ok = presign(&k.full_v1, "full", "GET", &path, &ts, 600);
    assert_eq!(get(ok.clone()).await, (StatusCode::OK, "signed".to_owned()));
    // One signature covers HEAD too.
    let res = h.http.head(h.url(&ok)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Another path, an added parameter, another method.
    let other = ok.replace("/pre?", "/other?");
    assert_eq!(get(other).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(format!("{ok}&x=1")).await.0, StatusCode::UNAUTHORIZED);
    let res = h.http.delete(h.url(&ok)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = h
        .http
        .put(h.url(&ok))
        .body("overwrite")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.read_back("1", "pre").await.as_deref(), Some("signed"));
    // Outside the window, over the cap, unknown kid, read-less key, bad parameters.
    let old = presign(&k.full_v2, "full", "GET", &path, &rfc3339(now() - 700), 600);
    assert_eq!(get(old).await.0, StatusCode::UNAUTHORIZED);
    let future = presign(&k.full_v2, "full", "GET", &path, &rfc3339(now() + 600), 600);
    assert_eq!(get(future).await.0, StatusCode::UNAUTHORIZED);
    let long = presign(&k.full_v2, "full", "GET", &path, &ts, 604_801);
    assert_eq!(get(long).await.0, StatusCode::BAD_REQUEST);
    let week = presign(&k.full_v2, "full", "GET", &path, &ts, 604_800);
    assert_eq!(get(week).await.0, StatusCode::OK);
    let unknown = presign(&k.stranger, "stranger", "GET", &path, &ts, 60);
    assert_eq!(get(unknown).await.0, StatusCode::UNAUTHORIZED);
    let no_read = presign(&k.none, "none", "GET", &path, &ts, 60);
    assert_eq!(get(no_read).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        get(format!("{path}?os_sig=abc")).await.0,
        StatusCode::BAD_REQUEST
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn not_enforced_verifies_counts_and_lets_through() {
    let h = Harness::start(|c, keys| c.auth = keys.config(false)).await;
    let path = Harness::object_path("1", "k");
    let (status, _) = h
        .send(reqwest::Method::PUT, &path, Some("garbage"), "x")
        .await;
    assert_eq!(status, StatusCode::OK);
    let wrong_org = h
        .keys
        .token("full", &claims(USECASE, "2", &["object.read"], now() + 60));
    let (status, body) = h
        .send(reqwest::Method::GET, &path, Some(&wrong_org), "")
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "x"));
    assert_eq!(
        h.metric(r#"strata_auth_failures_total{code="401",reason="malformed"}"#),
        1
    );
    assert_eq!(
        h.metric(r#"strata_auth_failures_total{code="403",reason="scope"}"#),
        1
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn killswitches_rate_limits_and_usecase_policy() {
    let h = Harness::start(|c, _| {
        c.killswitches = vec![strata_server::limits::KillswitchConfig {
            usecase: Some(USECASE.into()),
            scopes: [("org".to_owned(), "66".to_owned())].into(),
            service: None,
        }];
        c.rate_limits.throughput.rules = vec![strata_server::limits::ThroughputRule {
            scopes: vec![("org".into(), "77".into())],
            rps: Some(1),
            ..Default::default()
        }];
        let mut policy = strata_server::limits::UsecaseConfig::default();
        policy.expiration.manual.allowed = false;
        policy.expiration.ttl.max = Some(std::time::Duration::from_secs(86_400));
        c.usecases.insert(USECASE.into(), policy);
        c.rate_limits.throughput.global_rps = Some(1000);
    })
    .await;
    // /keda reports the configured global throughput limit, and only what is set.
    let keda = h
        .http
        .get(h.url("/keda"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        keda.contains("\nobjectstore_throughput_limit 1000\n"),
        "{keda}"
    );
    assert!(!keda.contains("objectstore_bandwidth_limit"), "{keda}");
    let all = ["object.read", "object.write", "object.delete"];
    let tok = |org: &str| {
        h.keys
            .token("full", &claims(USECASE, org, &all, now() + 60))
    };
    // Killswitch: 403 text, even before auth of the operation; nothing written.
    let (status, body) = h
        .send(
            reqwest::Method::GET,
            &Harness::object_path("66", "k"),
            Some(&tok("66")),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        "Object access is disabled for this scope through killswitches"
    );
    assert_eq!(h.metric("strata_killswitch_hits_total"), 1);
    // Rate-limit rule of 1 rps: the second request in the same second is refused.
    let path = Harness::object_path("77", "k");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            h.send(reqwest::Method::GET, &path, Some(&tok("77")), "")
                .await,
        );
    }
    let limited: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!limited.is_empty(), "{statuses:?}");
    assert_eq!(limited[0].1, "Object access is rate limited");
    assert!(h.metric(r#"strata_rate_limited_total{kind="throughput_rule"}"#) >= 1);
    // Usecase policy: manual objects and long TTLs are refused with 400, not written.
    let path = Harness::object_path("1", "p");
    for (expiration, fragment) in [(None, "not allowed"), (Some("ttl:2d"), "exceeds maximum")] {
        let mut req = h
            .http
            .put(h.url(&path))
            .header("x-os-auth", format!("Bearer {}", tok("1")));
        if let Some(e) = expiration {
            req = req.header("x-sn-expiration", e);
        }
        let res = req.body("x").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body = res.text().await.unwrap();
        assert!(
            body.contains("client error: use case policy violation"),
            "{body}"
        );
        assert!(body.contains(fragment), "{body}");
        assert_eq!(h.read_back("1", "p").await, None);
    }
    let res = h
        .http
        .put(h.url(&path))
        .header("x-os-auth", format!("Bearer {}", tok("1")))
        .header("x-sn-expiration", "ttl:1d")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    h.server.shutdown().await;
}

#[tokio::test]
async fn start_refuses_bad_keys_and_impossible_limits_naming_the_key() {
    let keys = Keys::new();
    let mut config = Config {
        auth: keys.config(true),
        storage: StorageConfig::Memory {},
        ..Config::default()
    };
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    let bad = keys.dir.path().join("bad.pem");
    std::fs::write(&bad, &keys.full_v1.private_pem).unwrap();
    config.auth.keys.get_mut("readonly").unwrap().key_files = vec![bad];
    let err = app::start(config.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("auth.keys.readonly") && err.contains("bad.pem"),
        "{err}"
    );
    config.auth.keys.get_mut("readonly").unwrap().key_files =
        vec![keys.dir.path().join("missing.pem")];
    let err = app::start(config.clone()).await.unwrap_err().to_string();
    assert!(
        err.contains("auth.keys.readonly") && err.contains("missing.pem"),
        "{err}"
    );

    let mut no_keys = config.clone();
    no_keys.auth = AuthConfig::default();
    let err = app::start(no_keys).await.unwrap_err().to_string();
    assert!(err.contains("enforce: false"), "{err}");

    let mut limits = config.clone();
    limits.auth = AuthConfig::disabled();
    limits.rate_limits.throughput.scope_pct = Some(50);
    let err = app::start(limits).await.unwrap_err().to_string();
    assert!(err.contains("rate_limits.throughput.scope_pct"), "{err}");
}

/// Bandwidth is charged while bytes stream: one large upload puts the global bucket in
/// debt and the next request is refused with 429 until it drains.
#[tokio::test]
async fn bandwidth_debt_from_an_upload_refuses_the_next_request() {
    let h = Harness::start(|c, _| {
        c.auth = AuthConfig::disabled();
        c.rate_limits.bandwidth.global_bps = Some(1000);
        c.rate_limits.bandwidth.burst_ms = 1000;
    })
    .await;
    let big: &'static str = Box::leak("x".repeat(100_000).into_boxed_str());
    let path = Harness::object_path("1", "big");
    let (status, _) = h.send(reqwest::Method::PUT, &path, None, big).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h.send(reqwest::Method::GET, &path, None, "").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "Object access is rate limited"
        )
    );
    assert_eq!(
        h.metric(r#"strata_rate_limited_total{kind="bandwidth_global"}"#),
        1
    );
    h.server.shutdown().await;
}
