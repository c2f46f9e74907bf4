//! Opening a root: take its lock, replay the log and reconcile object files with it
//! into a fresh index.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::files::FileId;
use super::index::{Entry, FileMeta, Index};
use super::log::Segment;
use super::log::{Location, Log};
use super::record::{self, Kind, PayloadRef};
use super::store::{digest_of, CacheWeight, Shared, Stripe};
use super::{codec, files, format, Digest, CACHE_BYTES, LOCK_STRIPES};
use crate::backend::{BackendError, IoContext as _};
use crate::metrics::StorageMetrics;
use crate::object::Metadata;

/// What the log says last about a key, while the index is rebuilt.
struct Latest {
    kind: Kind,
    location: Location,
    /// The deadline the record states; `None` when it states none (tombstones, and
    /// `External` markers written before they carried metadata).
    expires: Option<Option<SystemTime>>,
    /// A `Meta` record's metadata and the file id it names.
    meta: Option<(Metadata, FileId)>,
    /// A `MetaRef` record's reference to the `Put` holding its payload.
    reference: Option<PayloadRef>,
}

/// Rebuilds the index: the highest sequence number per key wins; object files are kept
/// when the log's last word on them is `External` or `Meta` (or nothing: files written
/// before the log existed) and removed when a later `Put` or `Delete` superseded them. A
/// `Meta` record outranks the header of the file it names, not of a later one (a write
/// renamed into place whose marker never committed).
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
            let metadata = match record.kind {
                Kind::External if record.metadata_bytes.is_empty() => None,
                Kind::Put | Kind::External | Kind::Meta | Kind::MetaRef => {
                    match codec::decode_metadata(&record.metadata_bytes) {
                        Ok(metadata) => Some(metadata),
                        Err(err) => {
                            bad_metadata.get_or_insert(err);
                            None
                        }
                    }
                }
                Kind::Delete => None,
            };
            let expires = metadata.as_ref().map(|m| m.time_expires);
            let meta = match (record.kind, metadata) {
                (Kind::Meta, Some(metadata)) => match FileId::try_from(&record.payload[..]) {
                    Ok(file_id) => Some((metadata, file_id)),
                    Err(_) => {
                        bad_metadata.get_or_insert("metadata record without a file id".to_owned());
                        None
                    }
                },
                _ => None,
            };
            let reference = match record.kind {
                Kind::MetaRef => {
                    let reference = PayloadRef::decode(&record.payload);
                    if reference.is_none() {
                        bad_metadata
                            .get_or_insert("metadata record without a reference".to_owned());
                    }
                    reference
                }
                _ => None,
            };
            latest.insert(
                digest,
                Latest {
                    kind: record.kind,
                    location,
                    expires,
                    meta,
                    reference,
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
        let header = || {
            File::open(&path)
                .ok()
                .and_then(|mut file| files::read_header(&mut file).ok())
        };
        match latest.get_mut(&digest) {
            Some(Latest {
                kind: Kind::Put | Kind::Delete | Kind::MetaRef,
                ..
            }) => {
                files::remove(&path, false).at("remove superseded object file", &path)?;
            }
            Some(Latest {
                kind: Kind::Meta,
                location,
                meta: meta @ Some(_),
                ..
            }) => {
                let (metadata, file_id) = meta.take().expect("matched Some");
                let entry = match header() {
                    Some((header, _)) if header.file_id == file_id => Entry::File {
                        expires: metadata.time_expires,
                        meta: Some(Arc::new(FileMeta {
                            location: location.clone(),
                            metadata,
                            file_id,
                        })),
                    },
                    // Another file took its place: its own header speaks for it.
                    header => Entry::File {
                        expires: header.and_then(|(h, _)| h.metadata.time_expires),
                        meta: None,
                    },
                };
                index.insert(digest, entry);
            }
            Some(Latest {
                kind: Kind::External,
                expires: Some(expires),
                ..
            }) => {
                index.insert(
                    digest,
                    Entry::File {
                        expires: *expires,
                        meta: None,
                    },
                );
            }
            // No deadline logged (a file older than the marker's metadata): read it once.
            _ => {
                let expires = header().and_then(|(header, _)| header.metadata.time_expires);
                index.insert(
                    digest,
                    Entry::File {
                        expires,
                        meta: None,
                    },
                );
            }
        }
    }
    let segments: HashMap<u64, _> = log.segments().into_iter().map(|s| (s.id, s)).collect();
    for (digest, latest) in latest {
        let payload = match (latest.kind, latest.reference) {
            (Kind::Put, _) => None,
            (Kind::MetaRef, Some(reference)) => Some(resolve(&segments, &reference, &digest)?),
            _ => continue,
        };
        index.insert(
            digest,
            Entry::Logged {
                location: latest.location,
                expires: latest.expires.flatten(),
                payload,
            },
        );
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
        stripes: (0..LOCK_STRIPES).map(|_| Stripe::default()).collect(),
        metrics,
        _lock: lock,
    })
}

/// The location of the `Put` a current `MetaRef` refers to, checked to be that very
/// record of that key: compaction never drops a referenced `Put` before the pair is
/// rewritten as one, so a reference that does not resolve is corruption.
fn resolve(
    segments: &HashMap<u64, Arc<Segment>>,
    reference: &PayloadRef,
    digest: &Digest,
) -> Result<Location, BackendError> {
    let missing = |why: &str| {
        BackendError::Corrupt(format!(
            "metadata record refers to a payload that is {why} (segment {}, offset {})",
            reference.segment, reference.offset
        ))
    };
    let segment = segments
        .get(&reference.segment)
        .ok_or_else(|| missing("in no segment"))?;
    let bytes = segment
        .read(reference.offset, reference.len as usize)
        .map_err(|_| missing("beyond its segment"))?;
    match record::decode(&bytes, &segment.nonce) {
        Ok((held, _))
            if held.kind == Kind::Put
                && held.seq == reference.seq
                && digest_of(&held.id_bytes) == *digest =>
        {
            Ok(Location {
                segment: segment.clone(),
                offset: reference.offset,
                len: reference.len,
                seq: reference.seq,
            })
        }
        _ => Err(missing("not the record it names")),
    }
}
