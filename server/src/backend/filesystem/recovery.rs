//! Opening a root: take its lock, replay the log and reconcile object files with it
//! into a fresh index.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use tokio::sync::Mutex;

use super::index::{Entry, Index};
use super::log::{Kind, Location, Log};
use super::store::{digest_of, CacheWeight, Shared};
use super::{codec, files, format, Digest, CACHE_BYTES, LOCK_STRIPES};
use crate::backend::{BackendError, IoContext as _};
use crate::metrics::StorageMetrics;

/// What the log says last about a key, while the index is rebuilt.
struct Latest {
    kind: Kind,
    location: Location,
    /// The deadline the record states; `None` when it states none (tombstones, and
    /// `External` markers written before they carried metadata).
    expires: Option<Option<SystemTime>>,
}

/// Rebuilds the index: the highest sequence number per key wins; object files are kept
/// when the log's last word on them is `External` (or nothing: files written before the
/// log existed) and removed when a later `Put` or `Delete` superseded them.
pub(super) fn recover(
    root: PathBuf,
    segment_bytes: u64,
    metrics: StorageMetrics,
) -> Result<Shared, BackendError> {
    std::fs::create_dir_all(&root).map_err(|e| super::access::root_error(&root, e))?;
    let lock_path = root.join("LOCK");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| super::access::root_error(&root, e))?;
    lock.try_lock().map_err(|_| {
        BackendError::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "storage path {} is in use by another strata-server",
                root.display()
            ),
        ))
    })?;
    format::check_or_init(&root)?;
    let file_digests = files::init_objects(&root).at("scan object files under", &root)?;

    let mut latest: HashMap<Digest, Latest> = HashMap::new();
    let mut bad_metadata = None;
    let log = Log::open(
        root.join("log"),
        segment_bytes,
        metrics.clone(),
        |record, location| {
            let digest = digest_of(&record.id_bytes);
            if latest
                .get(&digest)
                .is_some_and(|l| l.location.seq > record.seq)
            {
                return;
            }
            let expires = match record.kind {
                Kind::External if record.metadata_bytes.is_empty() => None,
                Kind::Put | Kind::External => {
                    match codec::decode_metadata(&record.metadata_bytes) {
                        Ok(metadata) => Some(metadata.time_expires),
                        Err(err) => {
                            bad_metadata.get_or_insert(err);
                            None
                        }
                    }
                }
                Kind::Delete => None,
            };
            latest.insert(
                digest,
                Latest {
                    kind: record.kind,
                    location,
                    expires,
                },
            );
        },
    )
    .at("open log under", &root.join("log"))?;
    if let Some(err) = bad_metadata {
        return Err(BackendError::Corrupt(format!("logged metadata: {err}")));
    }

    let index = Index::new(metrics.clone());
    for digest in file_digests {
        let path = files::object_path(&root, &digest);
        match latest.get(&digest).map(|l| (l.kind, l.expires)) {
            Some((Kind::Put | Kind::Delete, _)) => {
                files::remove(&path, false).at("remove superseded object file", &path)?;
            }
            Some((Kind::External, Some(expires))) => {
                index.insert(digest, Entry::File { expires });
            }
            // No deadline logged (a file older than the marker's metadata): read it once.
            Some((Kind::External, None)) | None => {
                let expires = File::open(&path)
                    .ok()
                    .and_then(|mut file| files::read_header(&mut file).ok())
                    .and_then(|(header, _)| header.metadata.time_expires);
                index.insert(digest, Entry::File { expires });
            }
        }
    }
    for (digest, latest) in latest {
        if latest.kind == Kind::Put {
            index.insert(
                digest,
                Entry::Logged {
                    location: latest.location,
                    expires: latest.expires.flatten(),
                },
            );
        }
    }
    Ok(Shared {
        root,
        log,
        index,
        cache: quick_cache::sync::Cache::with_weighter(
            (CACHE_BYTES / 4096) as usize,
            CACHE_BYTES,
            CacheWeight,
        ),
        stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        metrics,
        _lock: lock,
    })
}
