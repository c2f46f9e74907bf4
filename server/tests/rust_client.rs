//! The published Rust client (crate `objectstore-client` 0.3.0) against an in-process
//! server on the filesystem backend: inserts with and without key, every compression mode,
//! metadata with UTF-8 values and multi-day expiration, expiry extension, deletes, a large
//! streamed object, and keys that stress the path mapping. Batch (`Session::many`) is in
//! `tests/batch.rs`, the resumable upload API in `tests/resumable.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use objectstore_client::{
    Client, Compression, ExpirationPolicy, ExpiryExtension, ExtendExpiryResponse, Session, Usecase,
};
use strata_server::app::{self, RunningServer};
use strata_server::config::{Config, StorageConfig};
use tempfile::TempDir;

mod support;

const DAY: u64 = 86_400;
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// A server on 127.0.0.1:0 with its own data directory, plus a client for it.
///
/// With `STRATA_TEST_PAIR=1` the suite runs against two servers on one Bigtable emulator
/// and one S3 server (tiered storage) behind a round-robin balancer, and the clients
/// open a new connection per request, so consecutive requests alternate between the two
/// servers as they would behind a Kubernetes Service.
struct Harness {
    server: RunningServer,
    pair: Option<Pair>,
    base: String,
    client: Client,
    http: reqwest::Client,
    _dir: TempDir,
}

/// The second server of pair mode and the services both share.
struct Pair {
    peer: RunningServer,
    balancer: support::RoundRobin,
    _services: (support::Service, support::Service),
}

fn pair_mode() -> bool {
    std::env::var("STRATA_TEST_PAIR").is_ok_and(|v| v == "1")
}

impl Harness {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            // Access control is off here; tests/auth.rs signs with TokenGenerator.
            auth: strata_server::auth::AuthConfig::disabled(),
            ..Config::default()
        };
        config.http.addr = "127.0.0.1:0".parse().expect("address");
        config.http.drain_file = dir.path().join("strata.down");
        config.storage = StorageConfig::Filesystem {
            path: dir.path().join("data"),
        };
        if !pair_mode() {
            let server = app::start(config).await.expect("server starts");
            let base = format!("http://{}", server.addr());
            let client = Client::builder(base.as_str())
                .build()
                .expect("client builds");
            return Self {
                server,
                pair: None,
                base,
                client,
                http: reqwest::Client::new(),
                _dir: dir,
            };
        }
        support::s3_credentials();
        let bigtable = support::bigtable_emulator().await;
        let s3 = support::s3_server("strata").await;
        config.storage = StorageConfig::Tiered {
            high_volume: Box::new(support::bigtable_config(&bigtable.addr, "objects")),
            long_term: Box::new(support::s3_config(&s3.addr, "strata")),
        };
        let server = app::start(config.clone()).await.expect("server starts");
        config.http.drain_file = dir.path().join("peer.down");
        let peer = app::start(config).await.expect("peer starts");
        let balancer = support::RoundRobin::start(vec![server.addr(), peer.addr()]).await;
        let base = format!("http://{}", balancer.addr);
        let client = Client::builder(base.as_str())
            .configure_reqwest(|b| b.pool_max_idle_per_host(0))
            .build()
            .expect("client builds");
        Self {
            server,
            pair: Some(Pair {
                peer,
                balancer,
                _services: (bigtable, s3),
            }),
            base,
            client,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
            _dir: dir,
        }
    }

    fn session(&self, org: u64) -> Session {
        Usecase::new("rust-client")
            .expect("valid usecase")
            .for_organization(org)
            .session(&self.client)
            .expect("session")
    }

    fn object_url(&self, org: u64, encoded_key: &str) -> String {
        format!(
            "{}/v1/objects/rust-client/org={org}/{encoded_key}",
            self.base
        )
    }

    async fn stop(self) {
        if let Some(pair) = self.pair {
            let connections = pair.balancer.connections();
            assert!(
                connections.iter().all(|n| *n > 0),
                "both servers served requests: {connections:?}"
            );
            pair.peer.shutdown().await;
        }
        self.server.shutdown().await;
    }
}

async fn read(session: &Session, key: &str) -> Bytes {
    session
        .get(key)
        .send()
        .await
        .expect("get succeeds")
        .unwrap_or_else(|| panic!("{key:?} not found"))
        .payload()
        .await
        .expect("payload readable")
}

/// Sends one expiry extension and returns the server's verdict.
async fn extend(session: &Session, key: &str, extension: ExpiryExtension) -> ExtendExpiryResponse {
    session
        .extend_expiry(key, extension)
        .send()
        .await
        .expect("extension request succeeds")
}

async fn read_stored(session: &Session, key: &str) -> Bytes {
    session
        .get(key)
        .decompress(false)
        .send()
        .await
        .expect("get succeeds")
        .unwrap_or_else(|| panic!("{key:?} not found"))
        .payload()
        .await
        .expect("payload readable")
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

#[tokio::test]
async fn put_with_key_and_without_key() {
    let h = Harness::start().await;
    let s = h.session(1);

    let put = s.put("with key").key("named").send().await.unwrap();
    assert_eq!(put.key, "named");
    assert_eq!(&read(&s, "named").await[..], b"with key");

    let generated = s.put("no key").send().await.unwrap().key;
    assert_eq!(generated.len(), 36, "{generated}");
    assert_eq!(
        generated.as_bytes()[14],
        b'4',
        "UUIDv4 expected: {generated}"
    );
    assert_eq!(&read(&s, &generated).await[..], b"no key");

    // An empty key is "no key" too.
    let generated2 = s.put("empty key").key("").send().await.unwrap().key;
    assert_ne!(generated2, generated);
    assert_eq!(&read(&s, &generated2).await[..], b"empty key");
    h.stop().await;
}

#[tokio::test]
async fn compression_modes_round_trip() {
    let h = Harness::start().await;
    let s = h.session(2);
    let payload = b"squeeze me ".repeat(4000);

    // Default: zstd, compressed by the client, stored verbatim.
    s.put(payload.clone()).key("zstd").send().await.unwrap();
    let stored = read_stored(&s, "zstd").await;
    assert!(stored.starts_with(ZSTD_MAGIC));
    assert!(stored.len() < payload.len());
    assert_eq!(&read(&s, "zstd").await[..], &payload[..]);
    let meta = s.head("zstd").send().await.unwrap().expect("exists");
    assert_eq!(meta.compression, Some(Compression::Zstd));
    assert_eq!(meta.size, Some(stored.len()));

    // gzip.
    s.put(payload.clone())
        .key("gzip")
        .compress(Compression::Gzip)
        .send()
        .await
        .unwrap();
    let gz = read_stored(&s, "gzip").await;
    assert!(gz.starts_with(GZIP_MAGIC));
    assert_eq!(&read(&s, "gzip").await[..], &payload[..]);
    let meta = s.head("gzip").send().await.unwrap().expect("exists");
    assert_eq!(meta.compression, Some(Compression::Gzip));
    let wire = h.http.get(h.object_url(2, "gzip")).send().await.unwrap();
    assert_eq!(wire.headers()["content-encoding"], "gzip");
    assert_eq!(wire.bytes().await.unwrap(), gz);

    // None.
    s.put(payload.clone())
        .key("none")
        .compress(None)
        .send()
        .await
        .unwrap();
    assert_eq!(&read_stored(&s, "none").await[..], &payload[..]);
    let meta = s.head("none").send().await.unwrap().expect("exists");
    assert_eq!(meta.compression, None);
    assert_eq!(meta.size, Some(payload.len()));
    let wire = h.http.get(h.object_url(2, "none")).send().await.unwrap();
    assert!(wire.headers().get("content-encoding").is_none());

    // Precompressed: upload the stored bytes of the compressed objects verbatim.
    s.put(stored.clone())
        .key("pre-zstd")
        .precompressed(Compression::Zstd)
        .send()
        .await
        .unwrap();
    assert_eq!(read_stored(&s, "pre-zstd").await, stored);
    assert_eq!(&read(&s, "pre-zstd").await[..], &payload[..]);
    s.put(gz.clone())
        .key("pre-gzip")
        .precompressed(Compression::Gzip)
        .send()
        .await
        .unwrap();
    assert_eq!(read_stored(&s, "pre-gzip").await, gz);
    assert_eq!(&read(&s, "pre-gzip").await[..], &payload[..]);

    // Multi-frame zstd (two independent frames) decodes as one payload.
    let mut frames = stored.to_vec();
    frames.extend_from_slice(&stored);
    s.put(frames)
        .key("frames")
        .precompressed(Compression::Zstd)
        .send()
        .await
        .unwrap();
    let mut twice = payload.clone();
    twice.extend_from_slice(&payload);
    assert_eq!(&read(&s, "frames").await[..], &twice[..]);

    // accept_encoding passes the stored encoding through.
    let raw = s
        .get("zstd")
        .accept_encoding([Compression::Zstd])
        .send()
        .await
        .unwrap()
        .expect("exists");
    assert_eq!(raw.metadata.compression, Some(Compression::Zstd));
    assert_eq!(raw.payload().await.unwrap(), stored);
    h.stop().await;
}

#[tokio::test]
async fn head_metadata_with_utf8_values_and_multi_day_expiration() {
    let h = Harness::start().await;
    let s = h.session(3);
    let custom: BTreeMap<String, String> = [
        ("release", "100% vérsion"),
        ("tab", "a\tb"),
        ("emoji", "🦀 crab"),
        ("plain", "ascii"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let ttl = ExpirationPolicy::TimeToLive(Duration::from_secs(90 * DAY));
    s.put("meta")
        .key("m")
        .content_type("text/plain; charset=utf-8")
        .origin("Ünknown-源")
        .filename("rápport 📄.pdf")
        .set_metadata(custom.clone())
        .expiration_policy(ttl)
        .send()
        .await
        .unwrap();

    let meta = s.head("m").send().await.unwrap().expect("exists");
    assert_eq!(meta.content_type, "text/plain; charset=utf-8");
    assert_eq!(meta.origin.as_deref(), Some("Ünknown-源"));
    assert_eq!(meta.filename.as_deref(), Some("rápport 📄.pdf"));
    assert_eq!(meta.custom, custom);
    assert_eq!(meta.expiration_policy, ttl);
    assert_eq!(meta.compression, Some(Compression::Zstd));
    let created = meta.time_created.expect("time_created").as_secs();
    let expires = meta.time_expires.expect("time_expires").as_secs();
    assert!(
        (expires as i64 - (created + 90 * DAY) as i64).abs() <= 1,
        "{created} {expires}"
    );

    let got = s.get("m").send().await.unwrap().expect("exists");
    assert_eq!(got.metadata.custom, custom);
    assert_eq!(got.metadata.filename.as_deref(), Some("rápport 📄.pdf"));
    assert_eq!(got.metadata.expiration_policy, ttl);

    let wire = h.http.head(h.object_url(3, "m")).send().await.unwrap();
    assert!(
        wire.status() == 200 || wire.status() == 204,
        "{}",
        wire.status()
    );
    let headers = wire.headers();
    assert_eq!(headers["x-sn-expiration"], "ttl:90d");
    assert_eq!(headers["x-sn-filename"], "r%C3%A1pport %F0%9F%93%84.pdf");
    assert_eq!(headers["x-snme-release"], "100%25 v%C3%A9rsion");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.contains("filename*=UTF-8''r%C3%A1pport%20%F0%9F%93%84.pdf"),
        "{disposition}"
    );

    for (policy, wire_form) in [
        (
            ExpirationPolicy::TimeToIdle(Duration::from_secs(DAY + 3600)),
            "tti:1d 1h",
        ),
        (
            ExpirationPolicy::TimeToLive(Duration::from_secs(400 * DAY)),
            "ttl:400d",
        ),
        (
            ExpirationPolicy::TimeToLive(Duration::from_secs(90_061)),
            "ttl:1d 1h 1m 1s",
        ),
        (
            ExpirationPolicy::TimeToIdle(Duration::from_secs(30)),
            "tti:30s",
        ),
    ] {
        s.put("p")
            .key("policy")
            .expiration_policy(policy)
            .send()
            .await
            .unwrap();
        let meta = s.head("policy").send().await.unwrap().expect("exists");
        assert_eq!(meta.expiration_policy, policy, "{wire_form}");
        let wire = h.http.head(h.object_url(3, "policy")).send().await.unwrap();
        assert_eq!(wire.headers()["x-sn-expiration"], wire_form);
    }

    // Manual objects carry no expiration headers.
    s.put("x").key("manual").send().await.unwrap();
    let meta = s.head("manual").send().await.unwrap().expect("exists");
    assert_eq!(meta.expiration_policy, ExpirationPolicy::Manual);
    assert!(meta.time_expires.is_none());
    assert!(meta.time_created.is_some());
    h.stop().await;
}

#[tokio::test]
async fn extend_expiry() {
    let h = Harness::start().await;
    let s = h.session(4);

    s.put("x")
        .key("ttl")
        .expiration_policy(ExpirationPolicy::TimeToLive(Duration::from_secs(DAY)))
        .send()
        .await
        .unwrap();
    let before = s.head("ttl").send().await.unwrap().expect("exists");
    let created = before.time_created.expect("created").as_secs();

    let outcome = extend(
        &s,
        "ttl",
        ExpiryExtension::FromCreation(Duration::from_secs(3 * DAY)),
    )
    .await;
    assert_eq!(outcome, ExtendExpiryResponse::Satisfied);
    let after = s.head("ttl").send().await.unwrap().expect("exists");
    assert_eq!(after.time_expires.unwrap().as_secs(), created + 3 * DAY);
    assert_eq!(
        after.expiration_policy,
        ExpirationPolicy::TimeToLive(Duration::from_secs(3 * DAY))
    );

    // Never shortened.
    let outcome = extend(
        &s,
        "ttl",
        ExpiryExtension::FromCreation(Duration::from_secs(DAY)),
    )
    .await;
    assert_eq!(outcome, ExtendExpiryResponse::Satisfied);
    let same = s.head("ttl").send().await.unwrap().expect("exists");
    assert_eq!(same.time_expires, after.time_expires);

    // From now.
    let outcome = extend(
        &s,
        "ttl",
        ExpiryExtension::FromNow(Duration::from_secs(30 * DAY)),
    )
    .await;
    assert_eq!(outcome, ExtendExpiryResponse::Satisfied);
    let now_ext = s.head("ttl").send().await.unwrap().expect("exists");
    let expires = now_ext.time_expires.unwrap().as_secs();
    assert!(expires >= created + 30 * DAY, "{expires} vs {created}");
    assert_eq!(
        now_ext.expiration_policy,
        ExpirationPolicy::TimeToLive(Duration::from_secs(expires - created))
    );

    // At an absolute time (fractional seconds round up).
    let at = SystemTime::now() + Duration::from_secs(60 * DAY) + Duration::from_millis(1500);
    let outcome = extend(&s, "ttl", ExpiryExtension::At(at)).await;
    assert_eq!(outcome, ExtendExpiryResponse::Satisfied);
    let at_secs = at.duration_since(UNIX_EPOCH).unwrap();
    let ceil = at_secs.as_secs() + u64::from(at_secs.subsec_nanos() > 0);
    let at_ext = s.head("ttl").send().await.unwrap().expect("exists");
    assert_eq!(at_ext.time_expires.unwrap().as_secs(), ceil);
    assert_eq!(&read(&s, "ttl").await[..], b"x");

    // TTI keeps its duration.
    let tti = ExpirationPolicy::TimeToIdle(Duration::from_secs(DAY));
    s.put("y")
        .key("tti")
        .expiration_policy(tti)
        .send()
        .await
        .unwrap();
    let outcome = extend(
        &s,
        "tti",
        ExpiryExtension::FromCreation(Duration::from_secs(5 * DAY)),
    )
    .await;
    assert_eq!(outcome, ExtendExpiryResponse::Satisfied);
    let meta = s.head("tti").send().await.unwrap().expect("exists");
    assert_eq!(meta.expiration_policy, tti);
    assert_eq!(
        meta.time_expires.unwrap().as_secs(),
        meta.time_created.unwrap().as_secs() + 5 * DAY
    );

    // Missing and manual.
    let outcome = extend(
        &s,
        "absent",
        ExpiryExtension::FromNow(Duration::from_secs(DAY)),
    )
    .await;
    assert_eq!(outcome, ExtendExpiryResponse::NotFound);
    s.put("z").key("manual").send().await.unwrap();
    let outcome = extend(
        &s,
        "manual",
        ExpiryExtension::FromNow(Duration::from_secs(DAY)),
    )
    .await;
    assert_eq!(outcome, ExtendExpiryResponse::Rejected);
    let meta = s.head("manual").send().await.unwrap().expect("exists");
    assert_eq!(meta.expiration_policy, ExpirationPolicy::Manual);
    h.stop().await;
}

#[tokio::test]
async fn delete_existing_and_missing() {
    let h = Harness::start().await;
    let s = h.session(5);
    s.put("bye").key("d").send().await.unwrap();
    s.delete("d").send().await.unwrap();
    assert!(s.get("d").send().await.unwrap().is_none());
    assert!(s.head("d").send().await.unwrap().is_none());
    // Missing keys delete fine (204), repeatedly.
    s.delete("d").send().await.unwrap();
    s.delete("never").send().await.unwrap();
    let wire = h
        .http
        .delete(h.object_url(5, "never"))
        .send()
        .await
        .unwrap();
    assert_eq!(wire.status(), 204);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_streamed() {
    let h = Harness::start().await;
    let s = h.session(6);
    let payload = Bytes::from(noise(9 * 1024 * 1024 + 123, 7));
    let chunks: Vec<Bytes> = payload
        .chunks(64 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();

    for (key, compression) in [("big/zstd", Some(Compression::Zstd)), ("big/raw", None)] {
        let stream = futures::stream::iter(chunks.clone().into_iter().map(Ok)).boxed();
        s.put_stream(stream)
            .key(key)
            .compress(compression)
            .send()
            .await
            .unwrap();
        let got = s.get(key).send().await.unwrap().expect("exists");
        let mut stream = got.stream;
        let mut received = Vec::with_capacity(payload.len());
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(received.len(), payload.len(), "{key}");
        assert!(received == payload, "{key}: payload differs");
    }
    let meta = s.head("big/raw").send().await.unwrap().expect("exists");
    assert_eq!(meta.size, Some(payload.len()));
    h.stop().await;
}

/// Keys with slashes in every position, prefixes of each other, unicode and `%`.
const KEYS: &[&str] = &[
    "a",
    "a/b",
    "a/",
    "a//a",
    "a//",
    "a/b/c",
    "/leading",
    "trailing//",
    "dir/sub/file.txt",
    "ünïcødé/ключ/键.bin",
    "emoji-🦀",
    "100%",
    "%2F",
    "a%2Fb",
    "%25",
    "sp ace",
    "semi;colon=eq,comma",
    "q?mark#hash",
    "plus+and&at@dollar$!'()*",
    "pipe|caret^[brackets]{braces}",
    "back\\slash",
];

#[tokio::test]
async fn special_keys_are_distinct() {
    let h = Harness::start().await;
    let s = h.session(7);
    // Collect every mismatch so one failing key does not hide the others.
    let mut problems = Vec::new();
    for key in KEYS {
        let put = s
            .put(format!("payload of {key}"))
            .key(*key)
            .compress(None)
            .send()
            .await
            .unwrap();
        if put.key != *key {
            problems.push(format!("PUT {key:?} answered key {:?}", put.key));
        }
    }
    for key in KEYS {
        let expected = format!("payload of {key}");
        match s.get(key).send().await.unwrap() {
            None => problems.push(format!("GET {key:?}: 404")),
            Some(got) => {
                let body = got.payload().await.unwrap();
                if body != expected.as_bytes() {
                    problems.push(format!("GET {key:?}: got {body:?}"));
                }
            }
        }
        let size = s.head(key).send().await.unwrap().and_then(|m| m.size);
        if size != Some(expected.len()) {
            problems.push(format!("HEAD {key:?}: size {size:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Deleting a key leaves its prefixes and extensions alone.
    s.delete("a/").send().await.unwrap();
    s.delete("a").send().await.unwrap();
    assert!(s.get("a").send().await.unwrap().is_none());
    assert!(s.get("a/").send().await.unwrap().is_none());
    for key in ["a/b", "a//a", "a//", "a/b/c"] {
        assert_eq!(
            &read(&s, key).await[..],
            format!("payload of {key}").as_bytes(),
            "{key:?}"
        );
    }
    h.stop().await;
}
