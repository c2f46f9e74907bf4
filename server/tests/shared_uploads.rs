//! Multipart uploads (api §2.7 M1–M6) and resumable sessions (api-newest §2.9) on shared
//! storage: `s3compatible` (a real S3 server, `moto_server`) and `tiered` (Bigtable
//! emulator + S3). Two server instances share one bucket, as the pods of a
//! StorageService do: an upload started on one continues and completes on the other, a
//! session survives a restart, and an abandoned upload's staged objects leave the bucket.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_server::app::{self, RunningServer};
use strata_server::backend::s3::STAGING_PREFIX;
use strata_server::backend::NativeUpload;
use strata_server::config::{Config, StorageConfig};
use support::multipart::Multipart;
use support::Service;
use tempfile::TempDir;

const BUCKET: &str = "uploads";

/// Declares the tests that run `scenario(tiered)` on `s3compatible` and on `tiered`.
macro_rules! on_both {
    ($s3compatible:ident, $tiered:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $s3compatible() {
            $scenario(false).await;
        }

        #[tokio::test]
        async fn $tiered() {
            $scenario(true).await;
        }
    };
}

/// The shared services and the storage section every server instance uses.
struct Shared {
    s3: Service,
    _bigtable: Option<Service>,
    storage: StorageConfig,
}

async fn shared(tiered: bool) -> Shared {
    support::s3_credentials();
    let s3 = support::s3_server(BUCKET).await;
    let s3_section = support::s3_config(&s3.addr, BUCKET);
    if !tiered {
        return Shared {
            storage: s3_section,
            s3,
            _bigtable: None,
        };
    }
    let bigtable = support::bigtable_emulator().await;
    Shared {
        storage: StorageConfig::Tiered {
            high_volume: Box::new(support::bigtable_config(&bigtable.addr, "objects")),
            long_term: Box::new(s3_section),
        },
        s3,
        _bigtable: Some(bigtable),
    }
}

async fn start(shared: &Shared, dir: &TempDir, adjust: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::default();
    config.auth = strata_server::config::AuthConfig::disabled();
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.http.drain_file = dir
        .path()
        .join(format!("down-{}", uuid::Uuid::new_v4().simple()));
    config.storage = shared.storage.clone();
    adjust(&mut config);
    app::start(config).await.expect("server starts")
}

/// A client of the shared bucket, to look at it straight from S3.
fn bucket(shared: &Shared) -> AmazonS3 {
    AmazonS3Builder::from_env()
        .with_endpoint(format!("http://{}", shared.s3.addr))
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_allow_http(true)
        .build()
        .unwrap()
}

/// Object names under the staging prefix of the bucket, read straight from S3.
async fn staged(shared: &Shared) -> Vec<String> {
    let listed: Vec<_> = bucket(shared)
        .list(Some(&Path::from(STAGING_PREFIX)))
        .try_collect()
        .await
        .unwrap();
    listed
        .into_iter()
        .map(|meta| meta.location.to_string())
        .collect()
}

/// The S3 objects of the bucket outside staging (for `tiered`, the long-term ones).
async fn s3_objects(shared: &Shared) -> Vec<object_store::ObjectMeta> {
    let staging = Path::from(STAGING_PREFIX);
    let listed: Vec<object_store::ObjectMeta> =
        bucket(shared).list(None).try_collect().await.unwrap();
    listed
        .into_iter()
        .filter(|meta| !meta.location.prefix_matches(&staging))
        .collect()
}

/// The one S3 object holding `len` bytes; its ETag ends in `-<parts>` when S3 assembled
/// it from that many parts of a multipart upload.
async fn s3_parts_of(shared: &Shared, len: usize) -> Option<String> {
    let objects = s3_objects(shared).await;
    let object = objects
        .iter()
        .find(|meta| meta.size == len as u64)
        .unwrap_or_else(|| panic!("no S3 object of {len} bytes in {objects:?}"));
    let etag = object.e_tag.as_deref().unwrap().trim_matches('"');
    etag.split_once('-').map(|(_, parts)| parts.to_owned())
}

/// The S3 multipart upload an API upload started, as recorded in staging.
async fn native_of(shared: &Shared, upload: &str) -> NativeUpload {
    let path = Path::from(format!("{STAGING_PREFIX}/multipart/{upload}/native.json"));
    let bytes = bucket(shared)
        .get(&path)
        .await
        .expect("the upload has a native upload")
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Whether S3 still takes parts for a native upload (an aborted one is gone).
async fn native_alive(shared: &Shared, native: &NativeUpload) -> bool {
    let path = strata_server::backend::s3::path_of(&native.target);
    let payload = object_store::PutPayload::from_static(b"probe");
    bucket(shared)
        .put_part(&path, &native.upload_id, 9_998, payload)
        .await
        .is_ok()
}

/// Staged names of uploads and sessions (the resumable token secret is not one).
async fn staged_uploads(shared: &Shared) -> Vec<String> {
    staged(shared)
        .await
        .into_iter()
        .filter(|name| !name.ends_with("resumable/secret"))
        .collect()
}

/// Where every object of these tests lives.
const PATH: &str = "up/org=1";

fn url(server: &RunningServer, route: &str, key: &str, query: &str) -> String {
    format!("http://{}/v1/{route}/{PATH}/{key}{query}", server.addr())
}

fn noise(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn initiate(http: &reqwest::Client, server: &RunningServer, key: &str) -> String {
    let headers = [
        ("content-type", "application/x-test"),
        ("x-snme-tag", "shared"),
    ];
    let body = Multipart::new(http, server, PATH)
        .initiate(key, &headers)
        .await;
    body["upload_id"].as_str().unwrap().to_owned()
}

async fn part(
    http: &reqwest::Client,
    server: &RunningServer,
    key: &str,
    upload: &str,
    n: u32,
    body: Vec<u8>,
) -> String {
    Multipart::new(http, server, PATH)
        .part(key, upload, n, body)
        .await
}

async fn list(
    http: &reqwest::Client,
    server: &RunningServer,
    key: &str,
    query: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let r = http
        .get(url(server, "objects:multipart:parts", key, query))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn complete(
    http: &reqwest::Client,
    server: &RunningServer,
    key: &str,
    upload: &str,
    parts: &[(u32, &str)],
) -> serde_json::Value {
    let r = Multipart::new(http, server, PATH)
        .complete(key, upload, parts)
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    serde_json::from_str(text.trim_start_matches(' ')).unwrap()
}

async fn abort(
    http: &reqwest::Client,
    server: &RunningServer,
    key: &str,
    upload: &str,
) -> reqwest::StatusCode {
    let query = format!("?upload_id={upload}");
    let r = http.delete(url(server, "objects:multipart", key, &query));
    r.send().await.unwrap().status()
}

async fn get(http: &reqwest::Client, server: &RunningServer, key: &str) -> reqwest::Response {
    http.get(url(server, "objects", key, ""))
        .send()
        .await
        .unwrap()
}

async fn multipart_across_two_servers(tiered: bool) {
    let shared = shared(tiered).await;
    let dir = tempfile::tempdir().unwrap();
    let one = start(&shared, &dir, |_| {}).await;
    let two = start(&shared, &dir, |_| {}).await;
    let http = reqwest::Client::new();
    let key = "big/object";

    // M1 on one server; parts on both. Parts of S3's minimum part size and more stream
    // into S3's own multipart upload of the object; a smaller one is staged.
    let upload = initiate(&http, &one, key).await;
    let first = noise(5 * 1024 * 1024 + 5, 1);
    let second = noise(9 * 1024 * 1024 + 17, 2);
    let e1 = part(&http, &one, key, &upload, 1, b"stale".to_vec()).await;
    let e1b = part(&http, &two, key, &upload, 1, first.clone()).await;
    assert_ne!(e1, e1b, "a re-uploaded part replaces the old one");
    let e2 = part(&http, &two, key, &upload, 2, second.clone()).await;
    let e3 = part(&http, &one, key, &upload, 3, b"tail".to_vec()).await;
    let parts_dir = format!("multipart/{upload}/");
    let staged_parts: Vec<String> = staged(&shared)
        .await
        .into_iter()
        .filter_map(|name| Some(name.split_once(&parts_dir)?.1.to_owned()))
        .filter(|name| name.ends_with(".part"))
        .collect();
    assert_eq!(
        staged_parts,
        ["3.part"],
        "large parts are not staged (the replaced small part 1 is gone too)"
    );
    assert!(native_alive(&shared, &native_of(&shared, &upload).await).await);
    // A wrong Content-MD5 fails a native part before its last byte and keeps the part
    // it would have replaced.
    let r = http
        .put(url(
            &two,
            "objects:multipart:parts",
            key,
            &format!("?upload_id={upload}&part_number=2"),
        ))
        .header("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(noise(9 * 1024 * 1024, 9))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let refused: serde_json::Value = r.json().await.unwrap();
    assert!(
        refused["detail"].as_str().unwrap().contains("Content-MD5"),
        "{refused}"
    );

    // M4 paging, answered by the other server.
    let (status, page) = list(
        &http,
        &two,
        key,
        &format!("?upload_id={upload}&max_parts=2"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["is_truncated"], true);
    assert_eq!(page["next_part_number_marker"], 2);
    assert_eq!(page["parts"][0]["etag"], e1b);
    assert_eq!(page["parts"][1]["size"], second.len());
    let (_, rest) = list(
        &http,
        &one,
        key,
        &format!("?upload_id={upload}&part_number_marker=2"),
    )
    .await;
    assert_eq!(rest["is_truncated"], false);
    assert_eq!(rest["parts"].as_array().unwrap().len(), 1);
    assert_eq!(rest["parts"][0]["part_number"], 3);

    // M5: a stale etag is InvalidPart; the right list publishes the concatenation.
    let wrong = complete(&http, &one, key, &upload, &[(1, &e1), (2, &e2)]).await;
    assert_eq!(wrong["error"]["code"], "InvalidPart", "{wrong}");
    let missing = complete(&http, &two, key, &upload, &[(1, &e1b), (9, &e2)]).await;
    assert_eq!(missing["error"]["code"], "InvalidPart", "{missing}");
    let done = complete(&http, &two, key, &upload, &[(1, &e1b), (2, &e2), (3, &e3)]).await;
    assert_eq!(done, serde_json::json!({ "key": key }));
    let got = get(&http, &one, key).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/x-test");
    assert_eq!(got.headers()["x-snme-tag"], "shared");
    let body = got.bytes().await.unwrap();
    let total = first.len() + second.len() + 4;
    assert_eq!(body.len(), total);
    assert!(body == [first, second, b"tail".to_vec()].concat());
    assert_eq!(
        s3_parts_of(&shared, total).await.as_deref(),
        Some("3"),
        "S3 assembled the object from the three API parts"
    );
    assert!(
        staged_uploads(&shared).await.is_empty(),
        "completion removes the staged parts"
    );
    let after = complete(&http, &one, key, &upload, &[(1, &e1b)]).await;
    assert_eq!(
        after["error"]["code"], "internal error",
        "the upload is gone"
    );

    // M6 on the other server than the one that started it.
    let aborted = initiate(&http, &two, "gone").await;
    part(&http, &two, "gone", &aborted, 1, b"x".to_vec()).await;
    assert_eq!(abort(&http, &one, "gone", &aborted).await, 204);
    let (status, _) = list(&http, &two, "gone", &format!("?upload_id={aborted}")).await;
    assert!(!status.is_success(), "an aborted upload is unknown");
    assert!(staged_uploads(&shared).await.is_empty());
    // Staging never shows up as objects to a sweep.
    assert_eq!(get(&http, &two, "gone").await.status(), 404);
    one.shutdown().await;
    two.shutdown().await;
}

on_both!(
    s3compatible_multipart_started_on_one_server_completes_on_another,
    tiered_multipart_started_on_one_server_completes_on_another,
    multipart_across_two_servers
);

/// Staged parts between native ones join into one S3 part each; a listing S3 cannot
/// assemble (a small part before a native one) is refused with S3's code and leaves
/// the upload usable; an abort drops the S3 upload too.
async fn native_assembly(tiered: bool) {
    let shared = shared(tiered).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&shared, &dir, |_| {}).await;
    let http = reqwest::Client::new();
    let mib = 1024 * 1024;

    let key = "joined";
    let upload = initiate(&http, &server, key).await;
    let bodies = [
        noise(3 * mib, 1),
        noise(2 * mib + 1, 2),
        noise(5 * mib, 3),
        b"end".to_vec(),
    ];
    // Part 4 goes up natively first, then is replaced by a small, staged one.
    part(&http, &server, key, &upload, 4, noise(5 * mib, 9)).await;
    let mut listed = Vec::new();
    for (n, body) in (1..).zip(&bodies) {
        listed.push((n, part(&http, &server, key, &upload, n, body.clone()).await));
    }
    let listed: Vec<(u32, &str)> = listed.iter().map(|(n, e)| (*n, e.as_str())).collect();
    let done = complete(&http, &server, key, &upload, &listed).await;
    assert_eq!(done, serde_json::json!({ "key": key }));
    let whole = bodies.concat();
    let got = get(&http, &server, key).await.bytes().await.unwrap();
    assert!(got == whole, "the object is the concatenation of its parts");
    assert_eq!(
        s3_parts_of(&shared, whole.len()).await.as_deref(),
        Some("3"),
        "parts 1 and 2 joined into one S3 part, then part 3, then part 4"
    );

    let key = "refused";
    let upload = initiate(&http, &server, key).await;
    let small = part(&http, &server, key, &upload, 1, noise(1024, 4)).await;
    let large_body = noise(5 * mib + 3, 5);
    let large = part(&http, &server, key, &upload, 2, large_body.clone()).await;
    let refused = complete(&http, &server, key, &upload, &[(1, &small), (2, &large)]).await;
    assert_eq!(refused["error"]["code"], "EntityTooSmall", "{refused}");
    assert_eq!(get(&http, &server, key).await.status(), 404);
    let done = complete(&http, &server, key, &upload, &[(2, &large)]).await;
    assert_eq!(
        done,
        serde_json::json!({ "key": key }),
        "the upload survived"
    );
    let got = get(&http, &server, key).await.bytes().await.unwrap();
    assert!(got == large_body);

    let key = "dropped";
    let upload = initiate(&http, &server, key).await;
    part(&http, &server, key, &upload, 1, noise(5 * mib, 6)).await;
    let native = native_of(&shared, &upload).await;
    assert!(native_alive(&shared, &native).await);
    assert_eq!(abort(&http, &server, key, &upload).await, 204);
    assert!(
        !native_alive(&shared, &native).await,
        "abort drops the S3 upload"
    );
    assert!(staged_uploads(&shared).await.is_empty());
    server.shutdown().await;
}

/// Two servers taking the first large parts of one upload at once end up in one S3
/// upload; a client hanging up inside a large part leaves nothing that a later upload
/// of the part or the completion would pick up.
async fn native_races_and_hang_ups(tiered: bool) {
    let shared = shared(tiered).await;
    let dir = tempfile::tempdir().unwrap();
    let one = start(&shared, &dir, |_| {}).await;
    let two = start(&shared, &dir, |_| {}).await;
    let http = reqwest::Client::new();
    let key = "raced";
    let upload = initiate(&http, &one, key).await;
    let (b1, b2, b3) = (noise(5 << 20, 1), noise(5 << 20, 2), noise(5 << 20, 3));
    let (e1, e2) = tokio::join!(
        part(&http, &one, key, &upload, 1, b1.clone()),
        part(&http, &two, key, &upload, 2, b2.clone()),
    );

    // Headers for a whole part, a fifth of its body, then gone.
    let mut socket = tokio::net::TcpStream::connect(two.addr()).await.unwrap();
    let head = format!(
        "PUT /v1/objects:multipart:parts/up/org=1/{key}?upload_id={upload}&part_number=3 \
         HTTP/1.1\r\nhost: strata\r\ncontent-length: {}\r\n\r\n",
        b3.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut socket, head.as_bytes())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut socket, &b3[..1 << 20])
        .await
        .unwrap();
    drop(socket);
    let (_, page) = list(&http, &one, key, &format!("?upload_id={upload}")).await;
    assert_eq!(page["parts"].as_array().unwrap().len(), 2, "{page}");

    let e3 = part(&http, &one, key, &upload, 3, b3.clone()).await;
    let done = complete(&http, &two, key, &upload, &[(1, &e1), (2, &e2), (3, &e3)]).await;
    assert_eq!(done, serde_json::json!({ "key": key }));
    let whole = [b1, b2, b3].concat();
    let got = get(&http, &one, key).await.bytes().await.unwrap();
    assert!(got == whole, "both racing parts are in the one S3 upload");
    assert_eq!(
        s3_parts_of(&shared, whole.len()).await.as_deref(),
        Some("3")
    );
    one.shutdown().await;
    two.shutdown().await;
}

on_both!(
    s3compatible_native_parts_race_and_hang_ups,
    tiered_native_parts_race_and_hang_ups,
    native_races_and_hang_ups
);

on_both!(
    s3compatible_native_assembly_joins_staged_runs_and_refuses_what_s3_cannot_hold,
    tiered_native_assembly_joins_staged_runs_and_refuses_what_s3_cannot_hold,
    native_assembly
);

async fn chunk(
    http: &reqwest::Client,
    server: &RunningServer,
    key: &str,
    token: &str,
    offset: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    http.put(url(server, "objects", key, &format!("?session={token}")))
        .header("upload-offset", offset)
        .header("content-length", body.len())
        .body(body)
        .send()
        .await
        .unwrap()
}

/// R1: a session of `length` bytes at object URL `object` (with `content_type` when
/// given); asserts 200 and returns its token.
async fn create_session(
    http: &reqwest::Client,
    object: String,
    length: u64,
    content_type: Option<&str>,
) -> String {
    let request = http
        .put(format!("{object}?upload_type=resumable"))
        .header("upload-length", length);
    let request = match content_type {
        Some(value) => request.header("content-type", value),
        None => request,
    };
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let created: serde_json::Value = r.json().await.unwrap();
    created["session"].as_str().unwrap().to_owned()
}

async fn resumable_across_servers_and_a_restart(tiered: bool) {
    let shared = shared(tiered).await;
    let dir = tempfile::tempdir().unwrap();
    let one = start(&shared, &dir, |_| {}).await;
    let two = start(&shared, &dir, |_| {}).await;
    let http = reqwest::Client::new();
    let key = "resumed";
    let data = noise(2 * 1024 * 1024 + 5, 7);

    let object = url(&one, "objects", key, "");
    let token = create_session(
        &http,
        object,
        data.len() as u64,
        Some("application/x-resumed"),
    )
    .await;

    // First chunk on the other server; a wrong offset there is 409 with the real one.
    let split = 1024 * 1024 + 3;
    let r = chunk(&http, &two, key, &token, "0", data[..split].to_vec()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], split.to_string());
    let r = chunk(&http, &one, key, &token, "5", b"xx".to_vec()).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["upload-offset"], split.to_string());

    // Server one restarts; the session and every acknowledged byte survive it.
    one.shutdown().await;
    let one = start(&shared, &dir, |_| {}).await;
    let r = chunk(&http, &one, key, &token, "*", Vec::new()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], split.to_string());
    let r = chunk(
        &http,
        &one,
        key,
        &token,
        &split.to_string(),
        data[split..].to_vec(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let got = get(&http, &two, key).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/x-resumed");
    assert!(got.bytes().await.unwrap() == data);
    assert!(
        staged_uploads(&shared)
            .await
            .iter()
            .all(|name| name.ends_with("/done") || name.ends_with("/publishing")),
        "publishing drops the staged bytes"
    );
    let r = chunk(
        &http,
        &two,
        key,
        &token,
        &data.len().to_string(),
        Vec::new(),
    )
    .await;
    assert_eq!(r.status(), 410, "a completed session is gone");

    // Cancel on one server; the session is unknown to both and its bytes are gone.
    let object = url(&two, "objects", "cancelled", "");
    let token = create_session(&http, object, 10, None).await;
    let r = chunk(&http, &two, "cancelled", &token, "0", b"01234".to_vec()).await;
    assert_eq!(r.status(), 204);
    let r = http
        .delete(url(
            &one,
            "objects",
            "cancelled",
            &format!("?session={token}"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = chunk(&http, &two, "cancelled", &token, "*", Vec::new()).await;
    assert_eq!(r.status(), 404);
    assert!(
        !staged(&shared)
            .await
            .iter()
            .any(|name| name.contains("/data/")),
        "cancelling drops the staged bytes"
    );
    assert_eq!(get(&http, &one, "cancelled").await.status(), 404);
    one.shutdown().await;
    two.shutdown().await;
}

on_both!(
    s3compatible_resumable_session_continues_across_servers_and_a_restart,
    tiered_resumable_session_continues_across_servers_and_a_restart,
    resumable_across_servers_and_a_restart
);

/// A client that lost the answer to its last chunk asks another pod for the offset while
/// the first pod is still publishing (slowed by fault injection). The second pod waits
/// for that publication instead of publishing the session again, so a write of the key
/// acknowledged in between is not undone by a late second copy.
async fn one_publication_per_session(tiered: bool) {
    let shared = shared(tiered).await;
    let dir = tempfile::tempdir().unwrap();
    let slow = |c: &mut Config| {
        c.faults.delay_key_prefix = Some("slow/".into());
        c.faults.delay = Duration::from_secs(3);
    };
    let one = start(&shared, &dir, slow).await;
    let two = start(&shared, &dir, slow).await;
    let three = start(&shared, &dir, |_| {}).await;
    let http = reqwest::Client::new();
    let key = "slow/once";
    let data = noise(200 * 1024, 7);
    let object = url(&one, "objects", key, "");
    let token = create_session(&http, object, data.len() as u64, None).await;
    let half = data.len() / 2;
    let r = chunk(&http, &one, key, &token, "0", data[..half].to_vec()).await;
    assert_eq!(r.status(), 204);

    // The last chunk publishes on server one, 3 s late.
    let last = {
        let (http, token, tail) = (http.clone(), token.clone(), data[half..].to_vec());
        let at = url(&one, "objects", key, &format!("?session={token}"));
        tokio::spawn(async move {
            let r = http.put(at).header("upload-offset", half).body(tail);
            r.send().await.unwrap().status()
        })
    };
    // A second later, server two finds the session fully received.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = {
        let (http, token) = (http.clone(), token.clone());
        let at = url(&two, "objects", key, &format!("?session={token}"));
        tokio::spawn(async move {
            let r = http
                .put(at)
                .header("upload-offset", "*")
                .header("content-length", 0);
            r.send().await.unwrap().status()
        })
    };
    assert_eq!(last.await.unwrap(), 201);
    // Right after the publication, a newer write of the key (server three has no delay).
    let r = http
        .put(url(&three, "objects", key, ""))
        .body(b"newer".to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        asked.await.unwrap(),
        201,
        "the offset query reports completion"
    );
    // Had server two published too, its copy (3 s after it asked) would have landed now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = get(&http, &three, key).await.bytes().await.unwrap();
    assert_eq!(&got[..], b"newer", "the newer write stands");
    one.shutdown().await;
    two.shutdown().await;
    three.shutdown().await;
}

on_both!(
    s3compatible_a_session_is_published_once,
    tiered_a_session_is_published_once,
    one_publication_per_session
);

/// Two servers (two pods behind a round-robin Service) receive a chunk at the same offset
/// at once, with different lengths, round after round: a client retrying a chunk whose
/// response it lost while the first request is still being written. Exactly one is
/// acknowledged, the other is 409 with the acknowledged end, the bucket still holds every
/// acknowledged offset, and the object is the acknowledged bytes.
async fn racing_writes_of_one_chunk(tiered: bool) {
    let shared = shared(tiered).await;
    let dir = tempfile::tempdir().unwrap();
    let one = start(&shared, &dir, |_| {}).await;
    let two = start(&shared, &dir, |_| {}).await;
    let http = reqwest::Client::new();
    let key = "raced";
    let rounds = 24;
    let data = noise(rounds * 90 * 1024, 5);
    let object = url(&one, "objects", key, "");
    let token = create_session(&http, object, data.len() as u64, None).await;
    let offset_of = |r: &reqwest::Response| -> usize {
        r.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };

    let mut at = 0usize;
    for round in 0..rounds {
        let long = 40 * 1024 + round * 1031;
        let short = 8 * 1024 + round * 517;
        assert!(at + long < data.len());
        let (first, second) = if round % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let offset = at.to_string();
        let (a, b) = tokio::join!(
            chunk(
                &http,
                first,
                key,
                &token,
                &offset,
                data[at..at + long].to_vec()
            ),
            chunk(
                &http,
                second,
                key,
                &token,
                &offset,
                data[at..at + short].to_vec()
            ),
        );
        let (acked, refused) = match (a.status().as_u16(), b.status().as_u16()) {
            (204, 409) => (a, b),
            (409, 204) => (b, a),
            other => panic!("round {round}: one write must win, got {other:?}"),
        };
        let end = offset_of(&acked);
        assert!(
            end == at + long || end == at + short,
            "round {round}: {end}"
        );
        assert_eq!(offset_of(&refused), end, "the loser learns the real offset");
        for server in [&one, &two] {
            let r = chunk(&http, server, key, &token, "*", Vec::new()).await;
            assert_eq!(r.status(), 204);
            assert_eq!(
                offset_of(&r),
                end,
                "round {round}: acknowledged offset lost"
            );
        }
        at = end;
    }
    let r = chunk(
        &http,
        &two,
        key,
        &token,
        &at.to_string(),
        data[at..].to_vec(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let got = get(&http, &one, key).await;
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap() == data);
    assert!(
        staged_uploads(&shared)
            .await
            .iter()
            .all(|name| name.ends_with("/done") || name.ends_with("/publishing")),
        "no chunk body is left behind"
    );
    one.shutdown().await;
    two.shutdown().await;
}

on_both!(
    s3compatible_racing_writes_of_one_chunk_keep_every_acknowledged_offset,
    tiered_racing_writes_of_one_chunk_keep_every_acknowledged_offset,
    racing_writes_of_one_chunk
);

fn client_session(server: &RunningServer) -> objectstore_client::Session {
    let client = objectstore_client::Client::builder(format!("http://{}", server.addr()))
        .build()
        .unwrap();
    objectstore_client::Usecase::new("upload")
        .unwrap()
        .for_organization(1)
        .session(&client)
        .unwrap()
}

/// The real Rust client's resumable API: created through one server, resumed by token
/// through the other, cancelled through the first.
#[tokio::test]
async fn rust_client_resumes_a_session_through_another_server() {
    use objectstore_client::UploadProgress;
    let shared = shared(true).await;
    let dir = tempfile::tempdir().unwrap();
    let one = start(&shared, &dir, |_| {}).await;
    let two = start(&shared, &dir, |_| {}).await;
    let (s1, s2) = (client_session(&one), client_session(&two));
    let data = noise(1536 * 1024, 4);
    let upload = s1
        .create_upload(data.len() as u64)
        .key("client")
        .content_type("text/x-client")
        .send()
        .await
        .unwrap()
        .expect("supported, not 501");
    assert_eq!(
        upload.put(0, data[..1000].to_vec()).send().await.unwrap(),
        UploadProgress::Incomplete { offset: 1000 }
    );
    let resumed = s2.resume_upload("client", upload.token().clone());
    assert_eq!(
        resumed.progress().send().await.unwrap(),
        UploadProgress::Incomplete { offset: 1000 }
    );
    assert_eq!(
        resumed
            .put(1000, data[1000..].to_vec())
            .send()
            .await
            .unwrap(),
        UploadProgress::Complete
    );
    let got = s1.get("client").send().await.unwrap().unwrap();
    assert_eq!(got.metadata.content_type, "text/x-client");
    assert!(got.payload().await.unwrap() == data);

    let doomed = s2
        .create_upload(10)
        .key("doomed")
        .send()
        .await
        .unwrap()
        .unwrap();
    doomed.put(0, b"0123".to_vec()).send().await.unwrap();
    s1.resume_upload("doomed", doomed.token().clone())
        .cancel()
        .send()
        .await
        .unwrap();
    assert!(
        doomed.progress().send().await.is_err(),
        "cancelled everywhere"
    );
    one.shutdown().await;
    two.shutdown().await;
}

/// An upload and a session left behind by one server are collected by another whose
/// `upload_max_age` they exceed; the cleanup runs when that server starts.
async fn abandoned_uploads_are_collected(tiered: bool) {
    let shared = shared(tiered).await;
    let dir = tempfile::tempdir().unwrap();
    let one = start(&shared, &dir, |_| {}).await;
    let http = reqwest::Client::new();
    let upload = initiate(&http, &one, "abandoned").await;
    part(&http, &one, "abandoned", &upload, 1, noise(1000, 3)).await;
    part(
        &http,
        &one,
        "abandoned",
        &upload,
        2,
        noise(5 * 1024 * 1024, 4),
    )
    .await;
    let native = native_of(&shared, &upload).await;
    let object = url(&one, "objects", "left", "");
    let token = create_session(&http, object, 10, None).await;
    let r = chunk(&http, &one, "left", &token, "0", b"0123".to_vec()).await;
    assert_eq!(r.status(), 204);
    one.shutdown().await;
    assert!(!staged_uploads(&shared).await.is_empty());

    // S3 times have whole seconds: let the staged objects age past the limit.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let two = start(&shared, &dir, |c| {
        c.service.upload_max_age = Duration::from_secs(1)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !staged_uploads(&shared).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "abandoned uploads were not collected: {:?}",
            staged_uploads(&shared).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        staged(&shared)
            .await
            .iter()
            .any(|n| n.ends_with("resumable/secret")),
        "the token secret is never collected"
    );
    let (status, _) = list(&http, &two, "abandoned", &format!("?upload_id={upload}")).await;
    assert!(!status.is_success());
    assert!(
        !native_alive(&shared, &native).await,
        "the S3 upload of an abandoned upload is aborted"
    );
    let r = chunk(&http, &two, "left", &token, "*", Vec::new()).await;
    assert_eq!(r.status(), 404);
    two.shutdown().await;
}

on_both!(
    s3compatible_abandoned_uploads_are_collected_from_the_bucket,
    tiered_abandoned_uploads_are_collected_from_the_bucket,
    abandoned_uploads_are_collected
);

/// Staged objects are not objects: a sweep and the orphan reconciliation skip them.
#[tokio::test]
async fn sweeps_and_listings_skip_the_staging_prefix() {
    let shared = shared(false).await;
    let backend = strata_server::backend::s3::S3Backend::open(&shared.storage)
        .await
        .unwrap();
    let staging = strata_server::backend::Backend::upload_staging(&backend).unwrap();
    let id = strata_server::object::ObjectId::new(
        "up",
        strata_server::object::Scopes::parse("org=1").unwrap(),
        "k",
    )
    .unwrap();
    strata_server::uploads::multipart::initiate(&staging, id, Default::default())
        .await
        .unwrap();
    assert!(!staged(&shared).await.is_empty());
    let ids = strata_server::backend::Backend::list_ids(&backend)
        .await
        .unwrap()
        .unwrap();
    assert!(ids.is_empty(), "{ids:?}");
    let removed = strata_server::backend::Backend::sweep_expired(
        &backend,
        std::time::SystemTime::now() + Duration::from_secs(86400 * 365),
    )
    .await
    .unwrap();
    assert_eq!(removed, 0);
    assert!(!staged(&shared).await.is_empty());
}

/// Bytes per generated piece of a benchmark body; each piece starts with its index.
const PIECE: usize = 1024 * 1024;

/// Piece `index` of a generated body: a fixed pattern stamped with its index, so bytes
/// out of order or from another piece do not compare equal.
fn piece(base: &[u8], index: u64) -> bytes::Bytes {
    let mut piece = base.to_vec();
    piece[..8].copy_from_slice(&index.to_le_bytes());
    bytes::Bytes::from(piece)
}

/// A request body of pieces `from..to`, generated as it is sent (about one piece in
/// memory), with its exact `content-length`.
fn generated(base: &std::sync::Arc<Vec<u8>>, from: u64, to: u64) -> (reqwest::Body, u64) {
    let base = base.clone();
    let stream = futures::stream::iter(from..to)
        .map(move |index| Ok::<_, std::io::Error>(piece(&base, index)));
    (
        reqwest::Body::wrap_stream(stream),
        (to - from) * PIECE as u64,
    )
}

/// Streams object `key` back and checks it is pieces `0..pieces` in order.
async fn check_generated(
    http: &reqwest::Client,
    base_url: &str,
    key: &str,
    base: &[u8],
    pieces: u64,
) {
    let r = http
        .get(format!("{base_url}/v1/objects/up/org=1/{key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut pos = 0u64;
    let mut expected = piece(base, 0);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.unwrap();
        while !chunk.is_empty() {
            let index = pos / PIECE as u64;
            assert!(index < pieces, "{key}: longer than {pieces} pieces");
            let at = (pos % PIECE as u64) as usize;
            if at == 0 {
                expected = piece(base, index);
            }
            let n = chunk.len().min(PIECE - at);
            assert!(
                chunk[..n] == expected[at..at + n],
                "{key}: differs at {pos}"
            );
            pos += n as u64;
            let _ = chunk.split_to(n);
        }
    }
    assert_eq!(pos, pieces * PIECE as u64, "{key}: length");
}

/// The peak resident set (`VmHWM`) of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib / 1024.0
}

/// Benchmark, not a CI test: a 1 GiB multipart upload (8 × 128 MiB parts, native S3
/// parts) and then a 1 GiB resumable session (4 × 256 MiB chunks, staged) in the
/// `s3compatible` bucket (moto) through a separate `strata-server` process (`STRATA_SERVER_BIN`, default: this build's), bodies
/// generated as they are sent; prints the server's peak RSS after each step, checks it
/// stays below one chunk's size, and checks both objects byte for byte. Figures: BENCHMARKS.md. Run with
/// `cargo nextest run -p strata-server --test shared_uploads --run-ignored only --no-capture`.
#[tokio::test]
#[ignore = "benchmark: streams 2 GiB through moto"]
async fn s3compatible_1gib_staged_uploads_peak_memory() {
    use std::io::BufRead;
    let s3 = support::s3_server(BUCKET).await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "http: {{addr: \"127.0.0.1:0\", drain_file: {}}}\nauth: {{enforce: false}}\n\
             storage: {{type: s3compatible, endpoint: \"http://{}\", bucket: {BUCKET}}}\n\
             logging: {{level: warn}}\n",
            work.path().join("down").display(),
            s3.addr,
        ),
    )
    .unwrap();
    let bin = std::env::var("STRATA_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_strata-server").to_owned());
    let mut child = std::process::Command::new(&bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", support::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", support::SECRET_KEY)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    // Reads the address, then keeps draining the server's stdout.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server prints its address");
    let base_url = format!("http://{addr}");
    let pid = child.id();
    let http = reqwest::Client::new();
    let base = std::sync::Arc::new(noise(PIECE, 11));
    let gib = 1024u64;
    let started_at = Instant::now();
    let mut report = vec![format!("at start: {:.1} MiB", peak_rss_mib(pid))];

    // Multipart first (its peak is not hidden by the session's): eight 128 MiB parts,
    // each streamed into S3's own multipart upload of the object.
    let mp = |route: &str, query: &str| format!("{base_url}/v1/{route}/up/org=1/multipart{query}");
    let r = http.put(mp("objects:multipart", "")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let initiated: serde_json::Value = r.json().await.unwrap();
    let upload = initiated["upload_id"].as_str().unwrap().to_owned();
    let mut parts = Vec::new();
    for n in 0..8u64 {
        let (body, len) = generated(&base, n * 128, (n + 1) * 128);
        let r = http
            .put(mp(
                "objects:multipart:parts",
                &format!("?upload_id={upload}&part_number={}", n + 1),
            ))
            .header("content-length", len)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let part: serde_json::Value = r.json().await.unwrap();
        parts.push(serde_json::json!({"part_number": n + 1, "etag": part["etag"]}));
        if n == 7 {
            report.push(format!(
                "after all 8 parts (native, not staged): {:.1} MiB",
                peak_rss_mib(pid)
            ));
        }
    }
    let r = http
        .post(mp(
            "objects:multipart:complete",
            &format!("?upload_id={upload}"),
        ))
        .json(&serde_json::json!({ "parts": parts }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = r.text().await.unwrap();
    assert!(done.contains("\"key\""), "{done}");
    report.push(format!(
        "after 1 GiB multipart (8 x 128 MiB parts): {:.1} MiB ({:.0} s)",
        peak_rss_mib(pid),
        started_at.elapsed().as_secs_f64()
    ));

    // Resumable: one session, four 256 MiB chunks.
    let object = format!("{base_url}/v1/objects/up/org=1/resumable");
    let token = create_session(&http, object, gib * PIECE as u64, None).await;
    for n in 0..4u64 {
        let (body, len) = generated(&base, n * 256, (n + 1) * 256);
        let r = http
            .put(format!(
                "{base_url}/v1/objects/up/org=1/resumable?session={token}"
            ))
            .header("upload-offset", n * 256 * PIECE as u64)
            .header("content-length", len)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), if n == 3 { 201 } else { 204 });
        if n == 0 {
            report.push(format!(
                "after the first 256 MiB chunk (staged only): {:.1} MiB",
                peak_rss_mib(pid)
            ));
        }
    }
    report.push(format!(
        "after 1 GiB resumable (4 x 256 MiB chunks): {:.1} MiB ({:.0} s)",
        peak_rss_mib(pid),
        started_at.elapsed().as_secs_f64()
    ));

    check_generated(&http, &base_url, "resumable", &base, gib).await;
    check_generated(&http, &base_url, "multipart", &base, gib).await;
    report.push(format!(
        "after downloading both: {:.1} MiB ({:.0} s)",
        peak_rss_mib(pid),
        started_at.elapsed().as_secs_f64()
    ));
    let peak = peak_rss_mib(pid);
    let _ = child.kill();
    let _ = child.wait();
    println!("strata-server peak RSS (VmHWM), {bin}:");
    for line in report {
        println!("  {line}");
    }
    // Holding one whole 256 MiB chunk, let alone 1 GiB, would pass this.
    assert!(
        peak < 256.0,
        "peak RSS {peak:.1} MiB: bodies are not streamed"
    );
}
