//! A write that the disk refuses (here: the file-size limit, standing in for a full disk)
//! fails that request only: nothing of it is kept, the object log stays writable once
//! there is room again, and every acknowledged write survives a reopen.
//!
//! Its own test binary because the file-size limit applies to the whole process.

use bytes::Bytes;
use futures::StreamExt;
use strata_server::backend::filesystem::FilesystemBackend;
use strata_server::backend::{payload, Backend, PayloadStream};
use strata_server::metrics::StorageMetrics;
use strata_server::object::{Metadata, ObjectId};

fn id(key: &str) -> ObjectId {
    ObjectId::from_raw_segments("attachments", "org=1", key).unwrap()
}

fn body(byte: u8) -> PayloadStream {
    futures::stream::once(async move { Ok(Bytes::from(vec![byte; 4096])) }).boxed()
}

async fn read(backend: &FilesystemBackend, key: &str) -> Option<Vec<u8>> {
    let object = backend.get(&id(key)).await.unwrap()?;
    Some(
        payload::collect(object.payload.into_stream())
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn a_refused_write_fails_alone_and_the_log_recovers() {
    // Exceeding the limit raises SIGXFSZ, which would end the process; with a handler
    // installed the write fails with EFBIG instead.
    let _sigxfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25))
        .expect("SIGXFSZ handler");
    let (_, hard) = rlimit::Resource::FSIZE.get().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = StorageMetrics::unregistered();
    let backend = FilesystemBackend::open_with_metrics(dir.path().into(), metrics.clone())
        .await
        .unwrap();

    let mut acked = Vec::new();
    for n in 0..4u8 {
        let key = format!("before{n}");
        backend
            .put(&id(&key), &Metadata::default(), body(n))
            .await
            .unwrap();
        acked.push((key, n));
    }
    // Room for about two more records in the segment file.
    let used = std::fs::metadata(dir.path().join("log").join("0000000000000001.seg"))
        .unwrap()
        .len();
    rlimit::Resource::FSIZE.set(used + 9000, hard).unwrap();
    let mut refused = None;
    for n in 10..20u8 {
        let key = format!("during{n}");
        match backend.put(&id(&key), &Metadata::default(), body(n)).await {
            Ok(_) => acked.push((key, n)),
            Err(err) => {
                assert!(err.to_string().contains("i/o error"), "{err}");
                refused = Some(key);
                break;
            }
        }
    }
    let refused = refused.expect("the size limit refused a write");
    assert_eq!(read(&backend, &refused).await, None);
    assert_eq!(
        metrics.log_read_only.get(),
        0,
        "a refused write is not a failed sync"
    );

    // Room again: the log takes writes without a restart.
    rlimit::Resource::FSIZE.set(hard, hard).unwrap();
    backend
        .put(&id("after"), &Metadata::default(), body(99))
        .await
        .unwrap();
    acked.push(("after".to_owned(), 99));

    drop(backend);
    let backend = FilesystemBackend::open(dir.path().into()).await.unwrap();
    for (key, byte) in &acked {
        assert_eq!(read(&backend, key).await, Some(vec![*byte; 4096]), "{key}");
    }
    assert_eq!(
        read(&backend, &refused).await,
        None,
        "nothing of {refused} was kept"
    );
}
