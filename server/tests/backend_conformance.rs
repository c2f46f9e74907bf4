//! One conformance suite for the `Backend` trait, run against every backend on real
//! services: memory, filesystem, bigtable (the Bigtable emulator), s3compatible
//! (`moto_server`), and tiered over bigtable + s3compatible and bigtable + filesystem.
//! A new backend is proven by adding one `conformance!` line.
//!
//! Each backend gets one test that runs every case against one fresh instance; every
//! case works in its own usecase, so cases cannot see each other's objects.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use strata_server::backend::payload::collect;
use strata_server::backend::{self, Backend, PayloadStream};
use strata_server::config::StorageConfig;
use strata_server::metrics::Metrics;
use strata_server::object::{Compression, ExpirationPolicy, Metadata, ObjectId, Scope, Scopes};
use support::Service;

/// A backend plus whatever keeps it alive (services, directories).
struct Fixture {
    backend: Arc<dyn Backend>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

async fn open(storage: StorageConfig, keep: Vec<Box<dyn std::any::Any>>) -> Fixture {
    let backend = backend::open(&storage, &Metrics::new())
        .await
        .unwrap_or_else(|e| panic!("{} opens: {e}", storage.kind()));
    Fixture {
        backend,
        _keep: keep,
    }
}

async fn memory() -> Fixture {
    open(StorageConfig::Memory {}, vec![]).await
}

async fn filesystem() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Filesystem {
        path: dir.path().join("data"),
    };
    open(storage, vec![Box::new(dir)]).await
}

async fn emulator() -> (Service, StorageConfig) {
    let service = support::bigtable_emulator().await;
    let config = support::bigtable_config(&service.addr, "objects");
    (service, config)
}

async fn s3_service() -> (Service, StorageConfig) {
    support::s3_credentials();
    let service = support::s3_server("strata").await;
    let config = support::s3_config(&service.addr, "strata");
    (service, config)
}

async fn bigtable() -> Fixture {
    let (service, config) = emulator().await;
    open(config, vec![Box::new(service)]).await
}

async fn s3compatible() -> Fixture {
    let (service, config) = s3_service().await;
    open(config, vec![Box::new(service)]).await
}

async fn tiered_bigtable_s3() -> Fixture {
    let (bt, high_volume) = emulator().await;
    let (s3, long_term) = s3_service().await;
    let storage = StorageConfig::Tiered {
        high_volume: Box::new(high_volume),
        long_term: Box::new(long_term),
    };
    open(storage, vec![Box::new(bt), Box::new(s3)]).await
}

async fn tiered_bigtable_filesystem() -> Fixture {
    let (bt, high_volume) = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Tiered {
        high_volume: Box::new(high_volume),
        long_term: Box::new(StorageConfig::Filesystem {
            path: dir.path().join("long-term"),
        }),
    };
    open(storage, vec![Box::new(bt), Box::new(dir)]).await
}

macro_rules! conformance {
    ($name:ident, $fixture:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let fixture = $fixture.await;
            cases::run_all(fixture.backend.clone()).await;
            fixture.backend.shutdown().await;
        }
    };
}

conformance!(memory_backend, memory());
conformance!(filesystem_backend, filesystem());
conformance!(bigtable_backend, bigtable());
conformance!(s3compatible_backend, s3compatible());
conformance!(tiered_bigtable_s3compatible, tiered_bigtable_s3());
conformance!(
    tiered_bigtable_filesystem_backend,
    tiered_bigtable_filesystem()
);

mod cases {
    use super::*;

    /// Runs every case, naming the failing one.
    pub async fn run_all(backend: Arc<dyn Backend>) {
        let b = backend.as_ref();
        round_trips(b).await;
        overwrites(b).await;
        deletes(b).await;
        ranges(b).await;
        expiry(b).await;
        metadata(b).await;
        compare_and_swap(b).await;
        keys_are_distinct(b).await;
        concurrent_writers(backend.clone()).await;
    }

    pub fn id(usecase: &str, key: &str) -> ObjectId {
        let scopes = Scopes(vec![Scope::new("org", "17").unwrap()]);
        ObjectId::new(usecase, scopes, key).unwrap()
    }

    /// `len` bytes derived from `seed`, so different writers differ everywhere.
    pub fn body(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// A stream of 64 KiB chunks.
    pub fn stream(bytes: &[u8]) -> PayloadStream {
        let chunks: Vec<std::io::Result<Bytes>> = bytes
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    pub fn meta() -> Metadata {
        Metadata {
            time_created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            ..Metadata::default()
        }
    }

    pub async fn put(b: &dyn Backend, id: &ObjectId, metadata: &Metadata, bytes: &[u8]) {
        let size = b
            .put(id, metadata, stream(bytes))
            .await
            .unwrap_or_else(|e| panic!("put {}: {e}", id.key));
        assert_eq!(size, bytes.len() as u64, "stored size of {}", id.key);
    }

    pub async fn read(b: &dyn Backend, id: &ObjectId) -> Option<(Metadata, Vec<u8>)> {
        let object = b.get(id).await.expect("get")?;
        let bytes = collect(object.payload.into_stream())
            .await
            .expect("payload");
        Some((object.metadata, bytes))
    }

    /// Sizes on both sides of every threshold: empty, tiny, filesystem log, tiered.
    const SIZES: [usize; 6] = [0, 1, 70_000, 1024 * 1024, 1024 * 1024 + 1, 3_000_000];

    async fn round_trips(b: &dyn Backend) {
        for (i, size) in SIZES.into_iter().enumerate() {
            let id = id("round-trip", &format!("object-{size}"));
            let bytes = body(i as u8, size);
            put(b, &id, &meta(), &bytes).await;
            let (metadata, read) = read(b, &id).await.expect("object exists");
            assert!(read == bytes, "round trip of {size} bytes");
            assert_eq!(metadata.size, Some(size as u64), "get size of {size}");
            let head = b.head(&id).await.unwrap().expect("head finds it");
            assert_eq!(head.size, Some(size as u64), "head size of {size}");
            assert_eq!(head.content_type, "application/octet-stream");
        }
        assert!(b.get(&id("round-trip", "never")).await.unwrap().is_none());
        assert!(b.head(&id("round-trip", "never")).await.unwrap().is_none());
    }

    async fn overwrites(b: &dyn Backend) {
        let id = id("overwrite", "key");
        let sizes = [10, 3_000_000, 20, 2_000_000, 1_500_000, 0, 5];
        for (i, size) in sizes.into_iter().enumerate() {
            let bytes = body(100 + i as u8, size);
            let mut metadata = meta();
            metadata.custom.insert("version".into(), i.to_string());
            put(b, &id, &metadata, &bytes).await;
            let (read_meta, read) = read(b, &id).await.expect("exists");
            assert!(read == bytes, "overwrite {i} ({size} bytes) reads back");
            assert_eq!(read_meta.custom.get("version"), Some(&i.to_string()));
            assert_eq!(b.head(&id).await.unwrap().unwrap().size, Some(size as u64));
        }
    }

    async fn deletes(b: &dyn Backend) {
        b.delete(&id("delete", "missing"))
            .await
            .expect("deleting nothing succeeds");
        for size in [3, 2_000_000] {
            let id = id("delete", &format!("present-{size}"));
            put(b, &id, &meta(), &body(1, size)).await;
            b.delete(&id).await.unwrap();
            assert!(b.get(&id).await.unwrap().is_none(), "deleted {size}");
            assert!(b.head(&id).await.unwrap().is_none());
            b.delete(&id).await.expect("second delete succeeds");
            // The key is reusable after a delete.
            put(b, &id, &meta(), b"again").await;
            assert_eq!(read(b, &id).await.unwrap().1, b"again");
        }
    }

    async fn ranges(b: &dyn Backend) {
        for size in [1000, 3_000_000] {
            let id = id("ranges", &format!("object-{size}"));
            let bytes = body(7, size);
            put(b, &id, &meta(), &bytes).await;
            for (skip, take) in [
                (0, 1),
                (1, 10),
                (size as u64 - 1, 1),
                (size as u64 / 2, 300),
            ] {
                let object = b.get(&id).await.unwrap().unwrap();
                let got = collect(object.payload.slice(skip, take)).await.unwrap();
                let want = &bytes[skip as usize..(skip + take) as usize];
                assert!(got == want, "range {skip}+{take} of {size}");
            }
        }
    }

    async fn expiry(b: &dyn Backend) {
        let now = SystemTime::now();
        for size in [10, 2_000_000] {
            let expired = id("expiry", &format!("expired-{size}"));
            let mut metadata = meta();
            metadata.expiration = ExpirationPolicy::TimeToLive(Duration::from_secs(60));
            metadata.time_expires = Some(now - Duration::from_secs(5));
            put(b, &expired, &metadata, &body(3, size)).await;
            let alive = id("expiry", &format!("alive-{size}"));
            metadata.time_expires = Some(now + Duration::from_secs(3600));
            put(b, &alive, &metadata, &body(4, size)).await;
            // The deadline comes back, so the service can refuse to serve it at once.
            let head = b.head(&expired).await.unwrap();
            assert!(
                head.is_none_or(|m| m.is_expired(now)),
                "expired head {size}"
            );
        }
        // Removed by the sweep (or already by the engine's own garbage collection).
        let removed = b.sweep_expired(now).await.expect("sweep");
        assert!(removed <= 2, "sweep removed {removed} of 2 expired objects");
        for size in [10, 2_000_000] {
            assert!(b
                .head(&id("expiry", &format!("expired-{size}")))
                .await
                .unwrap()
                .is_none());
            let alive = read(b, &id("expiry", &format!("alive-{size}"))).await;
            assert!(
                alive.is_some_and(|(_, bytes)| bytes == body(4, size)),
                "alive {size}"
            );
        }
    }

    async fn metadata(b: &dyn Backend) {
        for size in [5, 2_000_000] {
            let id = id("metadata", &format!("object-{size}"));
            let mut custom = BTreeMap::new();
            custom.insert("team".to_owned(), "storage ☃ 100%".to_owned());
            custom.insert("empty".to_owned(), String::new());
            let metadata = Metadata {
                content_type: "text/plain; charset=utf-8".into(),
                compression: Some(Compression::Zstd),
                expiration: ExpirationPolicy::TimeToIdle(Duration::from_secs(86_400)),
                time_created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
                time_expires: Some(SystemTime::now() + Duration::from_secs(86_400)),
                origin: Some("10.0.0.1".into()),
                filename: Some("résumé \"final\".pdf".into()),
                custom,
                size: None,
            };
            put(b, &id, &metadata, &body(9, size)).await;
            let mut want = metadata.clone();
            want.size = Some(size as u64);
            assert_eq!(b.head(&id).await.unwrap().unwrap(), want, "head {size}");
            assert_eq!(read(b, &id).await.unwrap().0, want, "get {size}");

            // Compare-and-swap of the metadata keeps the payload.
            let mut updated = metadata.clone();
            updated.time_expires = Some(SystemTime::now() + Duration::from_secs(2 * 86_400));
            updated.custom.insert("bumped".into(), "yes".into());
            assert!(b.update_metadata(&id, &want, &updated).await.unwrap());
            let (read_meta, bytes) = read(b, &id).await.unwrap();
            assert!(bytes == body(9, size), "payload kept {size}");
            assert_eq!(
                read_meta.custom.get("bumped").map(String::as_str),
                Some("yes")
            );
            assert_eq!(read_meta.size, Some(size as u64));
            // A stale expectation loses.
            assert!(!b.update_metadata(&id, &want, &metadata).await.unwrap());
            let missing = self::id("metadata", "missing");
            assert!(!b.update_metadata(&missing, &want, &metadata).await.unwrap());
        }
    }

    async fn compare_and_swap(b: &dyn Backend) {
        let id = id("cas", "key");
        let first = meta();
        let mut second = meta();
        second.custom.insert("v".into(), "2".into());
        let small = |s: &'static [u8]| Bytes::from_static(s);
        assert!(b
            .compare_and_swap(&id, None, Some((&first, small(b"one"))))
            .await
            .unwrap());
        assert!(!b
            .compare_and_swap(&id, None, Some((&second, small(b"x"))))
            .await
            .unwrap());
        assert_eq!(read(b, &id).await.unwrap().1, b"one");
        assert!(b
            .compare_and_swap(&id, Some(&first), Some((&second, small(b"two"))))
            .await
            .unwrap());
        assert!(
            !b.compare_and_swap(&id, Some(&first), None).await.unwrap(),
            "stale delete"
        );
        assert_eq!(
            read(b, &id).await.unwrap(),
            (
                {
                    let mut m = second.clone();
                    m.size = Some(3);
                    m
                },
                b"two".to_vec()
            )
        );
        assert!(b.compare_and_swap(&id, Some(&second), None).await.unwrap());
        assert!(b.head(&id).await.unwrap().is_none());
        assert!(
            b.compare_and_swap(&id, None, None).await.unwrap(),
            "absent stays absent"
        );

        // A large object is a version like any other.
        put(b, &id, &first, &body(2, 2_000_000)).await;
        assert!(!b
            .compare_and_swap(&id, None, Some((&second, small(b"x"))))
            .await
            .unwrap());
        assert!(b
            .compare_and_swap(&id, Some(&first), Some((&second, small(b"small"))))
            .await
            .unwrap());
        assert_eq!(read(b, &id).await.unwrap().1, b"small");
    }

    async fn keys_are_distinct(b: &dyn Backend) {
        let keys = [
            "a", "a/b", "a/", "a//a", "a/a", "/a", "%2F", "a b", "ü/☃", ".",
        ];
        for (i, key) in keys.iter().enumerate() {
            put(b, &id("keys", key), &meta(), key.as_bytes()).await;
            assert!(b.head(&id("keys", key)).await.unwrap().is_some(), "key {i}");
        }
        for key in keys {
            let (_, bytes) = read(b, &id("keys", key))
                .await
                .unwrap_or_else(|| panic!("{key} exists"));
            assert_eq!(bytes, key.as_bytes(), "key {key:?} holds its own object");
        }
        // Scopes separate keyspaces too.
        let other =
            ObjectId::new("keys", Scopes(vec![Scope::new("org", "18").unwrap()]), "a").unwrap();
        assert!(b.get(&other).await.unwrap().is_none());
        let unscoped = ObjectId::new("keys", Scopes(vec![]), "a").unwrap();
        assert!(b.get(&unscoped).await.unwrap().is_none());
    }

    /// Writers race on one key, small and large mixed: afterwards exactly one of them
    /// is readable, whole, with its own metadata.
    async fn concurrent_writers(backend: Arc<dyn Backend>) {
        let id = id("concurrent", "key");
        let sizes = [100, 2_000_000, 50, 1_500_000, 7, 1024 * 1024 + 1];
        let writers = sizes.into_iter().enumerate().map(|(i, size)| {
            let backend = backend.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut metadata = meta();
                metadata.custom.insert("writer".into(), i.to_string());
                put(backend.as_ref(), &id, &metadata, &body(i as u8, size)).await;
            })
        });
        for writer in futures::future::join_all(writers).await {
            writer.expect("writer finished");
        }
        let (metadata, bytes) = read(backend.as_ref(), &id).await.expect("one version");
        let winner: usize = metadata.custom["writer"].parse().unwrap();
        assert!(
            bytes == body(winner as u8, sizes[winner]),
            "writer {winner} whole"
        );
        assert_eq!(metadata.size, Some(sizes[winner] as u64));
    }
}

/// Bigtable keeps objects in single rows: beyond its limit a write is refused whole
/// (413 over HTTP) and the previous version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigtable_refuses_objects_beyond_one_row() {
    let fixture = bigtable().await;
    let b = fixture.backend.as_ref();
    let id = cases::id("limits", "big");
    cases::put(b, &id, &cases::meta(), b"small").await;
    let too_big = vec![0u8; backend::bigtable::MAX_OBJECT as usize + 1];
    let err = b
        .put(&id, &cases::meta(), cases::stream(&too_big))
        .await
        .unwrap_err();
    assert!(
        matches!(err, backend::BackendError::TooLarge { .. }),
        "{err}"
    );
    assert_eq!(cases::read(b, &id).await.unwrap().1, b"small");
}

/// A crash between a long-term upload and its tombstone swap leaves an object nothing
/// points at; the tiered sweep removes it once it is older than the grace period (by
/// the later of its key's stamp and its write time), and never a referenced object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_sweep_removes_long_term_orphans_after_the_grace_period() {
    let (bt, high_volume) = emulator().await;
    let (s3, long_term) = s3_service().await;
    let direct = backend::open(&long_term, &Metrics::new()).await.unwrap();
    let tiered = backend::open(
        &StorageConfig::Tiered {
            high_volume: Box::new(high_volume),
            long_term: Box::new(long_term),
        },
        &Metrics::new(),
    )
    .await
    .unwrap();
    let live = cases::id("orphans", "live");
    let big = cases::body(1, 2_000_000);
    cases::put(tiered.as_ref(), &live, &cases::meta(), &big).await;

    let now = SystemTime::now();
    let at = |ago: u64| {
        let t = now - Duration::from_secs(ago);
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            since.as_secs(),
            since.subsec_nanos(),
        ))
    };
    let orphan = |stamp: uuid::Uuid, key: &str| {
        let mut id = cases::id("orphans", key);
        id.key = format!("{stamp}/{key}");
        id
    };
    let old = orphan(at(2 * 3600), "live");
    let stray = orphan(at(2 * 3600), "never-written");
    for id in [&old, &stray] {
        cases::put(direct.as_ref(), id, &cases::meta(), b"orphan").await;
    }
    // Just written: within the grace period by S3's own write time.
    tiered.sweep_expired(now).await.unwrap();
    assert!(
        direct.head(&old).await.unwrap().is_some(),
        "a fresh write is kept"
    );
    // Two hours on, the unreferenced ones go; the referenced target stays.
    tiered
        .sweep_expired(now + Duration::from_secs(2 * 3600))
        .await
        .unwrap();
    assert!(
        direct.head(&old).await.unwrap().is_none(),
        "old orphan removed"
    );
    assert!(
        direct.head(&stray).await.unwrap().is_none(),
        "orphan of a missing key removed"
    );
    assert!(
        cases::read(tiered.as_ref(), &live).await.unwrap().1 == big,
        "live object kept"
    );
    drop((bt, s3));
}
