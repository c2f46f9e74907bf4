//! Multipart uploads (api §2.7, M1–M6) staged in [`Staging`], assembled into one
//! ordinary object by the backend's streaming `put` at completion.
//!
//! Layout under the staging root: `multipart/<upload id>/upload.json` (the object id and
//! the metadata fixed at initiate), `<n>.part` (part bytes) and `<n>.json` (its etag,
//! size and time). Upload ids are UUIDv7 in 32 hex digits; anything else is unknown, so
//! a client-chosen id never becomes a path. An upload only answers for the object it was
//! initiated for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use super::store::Staging;
use crate::backend::{Backend, BackendError, PayloadStream};
use crate::object::{Metadata, ObjectId};

const ROOT: &str = "multipart";

/// Why a multipart call failed.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// No such upload for this object (500, as upstream).
    #[error("unknown multipart upload")]
    UnknownUpload,
    /// A listed part is missing or its etag differs (completion code `InvalidPart`).
    #[error(
        "one or more of the specified parts could not be found or its etag did not match: {0}"
    )]
    InvalidPart(String),
    /// Parts not listed in strictly ascending order (code `InvalidPartOrder`).
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    /// The part body did not match its `Content-MD5` (400, code `BadDigest`).
    #[error("the Content-MD5 you specified did not match what was received")]
    BadDigest,
    /// The client's upload stream broke (400).
    #[error("upload stream failed: {0}")]
    Payload(#[source] std::io::Error),
    /// Staging storage failed.
    #[error("staging i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The backend failed while assembling.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl MultipartError {
    /// The S3-style code reported in a completion error document.
    pub fn code(&self) -> &'static str {
        match self {
            MultipartError::InvalidPart(_) => "InvalidPart",
            MultipartError::InvalidPartOrder => "InvalidPartOrder",
            MultipartError::BadDigest => "BadDigest",
            _ => "internal error",
        }
    }
}

/// What `upload.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct UploadRecord {
    id: ObjectId,
    metadata: Metadata,
}

/// What `<n>.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PartRecord {
    etag: String,
    size: u64,
    modified_secs: u64,
    modified_nanos: u32,
}

/// One listed part (M4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// The part number.
    pub part_number: u32,
    /// Its opaque etag.
    pub etag: String,
    /// When it was (last) uploaded.
    pub last_modified: SystemTime,
    /// Its size in bytes.
    pub size: u64,
}

/// A page of parts (M4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsPage {
    /// Parts in ascending number order.
    pub parts: Vec<PartInfo>,
    /// Whether more parts follow.
    pub is_truncated: bool,
    /// The marker for the next page, when truncated.
    pub next_part_number_marker: Option<u32>,
}

fn dir(upload_id: &str) -> Result<String, MultipartError> {
    let valid = upload_id.len() == 32
        && upload_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(format!("{ROOT}/{upload_id}"))
    } else {
        Err(MultipartError::UnknownUpload)
    }
}

/// Starts an upload for `id`; returns the new upload id.
pub async fn initiate(
    staging: &Staging,
    id: ObjectId,
    metadata: Metadata,
) -> Result<String, MultipartError> {
    let upload_id = uuid::Uuid::now_v7().simple().to_string();
    let record = serde_json::to_vec(&UploadRecord { id, metadata }).expect("serializable");
    staging
        .put_bytes(&format!("{ROOT}/{upload_id}/upload.json"), record)
        .await?;
    Ok(upload_id)
}

async fn load(
    staging: &Staging,
    upload_id: &str,
    id: &ObjectId,
) -> Result<(String, UploadRecord), MultipartError> {
    let dir = dir(upload_id)?;
    let bytes = staging
        .read(&format!("{dir}/upload.json"))
        .await?
        .ok_or(MultipartError::UnknownUpload)?;
    let record: UploadRecord =
        serde_json::from_slice(&bytes).map_err(|_| MultipartError::UnknownUpload)?;
    if &record.id != id {
        return Err(MultipartError::UnknownUpload);
    }
    Ok((dir, record))
}

/// Stores (or replaces) part `part_number`; checks `content_md5` when given. Returns the
/// etag (the quoted hex MD5 of the part).
pub async fn put_part(
    staging: &Staging,
    upload_id: &str,
    id: &ObjectId,
    part_number: u32,
    payload: PayloadStream,
    content_md5: Option<[u8; 16]>,
) -> Result<String, MultipartError> {
    let (dir, _) = load(staging, upload_id, id).await?;
    let hasher = Arc::new(Mutex::new(Md5::new()));
    let mismatch = Arc::new(Mutex::new(false));
    let body = {
        let hasher = hasher.clone();
        let mismatch = mismatch.clone();
        let hashing = payload.inspect_ok({
            let hasher = hasher.clone();
            move |chunk: &Bytes| hasher.lock().expect("hasher").update(chunk)
        });
        // At the end of the body, a wrong digest fails the write so the previous part
        // (if any) stays in place.
        let check = futures::stream::once(async move {
            let digest: [u8; 16] = hasher.lock().expect("hasher").clone().finalize().into();
            match content_md5 {
                Some(expected) if expected != digest => {
                    *mismatch.lock().expect("flag") = true;
                    Err(std::io::Error::other("content-md5 mismatch"))
                }
                _ => Ok(Bytes::new()),
            }
        });
        hashing.chain(check).boxed()
    };
    let size = match staging
        .put(&format!("{dir}/{part_number}.part"), body)
        .await
    {
        Ok(size) => size,
        Err(_) if *mismatch.lock().expect("flag") => return Err(MultipartError::BadDigest),
        Err(err) => return Err(MultipartError::Payload(err)),
    };
    let digest = hasher.lock().expect("hasher").clone().finalize();
    let etag = format!("\"{}\"", hex(&digest));
    let modified = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let record = PartRecord {
        etag: etag.clone(),
        size,
        modified_secs: modified.as_secs(),
        modified_nanos: modified.subsec_nanos(),
    };
    staging
        .put_bytes(
            &format!("{dir}/{part_number}.json"),
            serde_json::to_vec(&record).expect("serializable"),
        )
        .await?;
    Ok(etag)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn parts(staging: &Staging, dir: &str) -> Result<Vec<PartInfo>, MultipartError> {
    let mut out = Vec::new();
    for name in staging.list(dir).await? {
        let Some(number) = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(bytes) = staging.read(&format!("{dir}/{name}")).await? else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<PartRecord>(&bytes) else {
            continue;
        };
        out.push(PartInfo {
            part_number: number,
            etag: record.etag,
            last_modified: UNIX_EPOCH + Duration::new(record.modified_secs, record.modified_nanos),
            size: record.size,
        });
    }
    out.sort_by_key(|p| p.part_number);
    Ok(out)
}

/// Lists parts after `marker` (exclusive), at most `max_parts` of them.
pub async fn list_parts(
    staging: &Staging,
    upload_id: &str,
    id: &ObjectId,
    max_parts: Option<u32>,
    marker: Option<u32>,
) -> Result<PartsPage, MultipartError> {
    let (dir, _) = load(staging, upload_id, id).await?;
    let mut all: Vec<PartInfo> = parts(staging, &dir)
        .await?
        .into_iter()
        .filter(|p| marker.is_none_or(|m| p.part_number > m))
        .collect();
    let limit = max_parts.map_or(usize::MAX, |m| m as usize);
    let is_truncated = all.len() > limit;
    all.truncate(limit);
    let next_part_number_marker = if is_truncated {
        all.last().map(|p| p.part_number)
    } else {
        None
    };
    Ok(PartsPage {
        parts: all,
        is_truncated,
        next_part_number_marker,
    })
}

/// Assembles the listed parts, in order, into the object; the upload is gone afterwards.
pub async fn complete(
    staging: &Staging,
    backend: &dyn Backend,
    upload_id: &str,
    id: &ObjectId,
    listed: Vec<(u32, String)>,
) -> Result<u64, MultipartError> {
    let (dir, record) = load(staging, upload_id, id).await?;
    if listed.is_empty() {
        return Err(MultipartError::InvalidPart("no parts were listed".into()));
    }
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(MultipartError::InvalidPartOrder);
    }
    let stored = parts(staging, &dir).await?;
    let unquote = |s: &str| s.trim_matches('"').to_owned();
    for (number, etag) in &listed {
        match stored.iter().find(|p| p.part_number == *number) {
            Some(part) if unquote(&part.etag) == unquote(etag) => {}
            Some(_) => {
                return Err(MultipartError::InvalidPart(format!(
                    "part {number}: etag does not match"
                )))
            }
            None => {
                return Err(MultipartError::InvalidPart(format!(
                    "part {number} is missing"
                )))
            }
        }
    }
    let names: Vec<String> = listed
        .iter()
        .map(|(n, _)| format!("{dir}/{n}.part"))
        .collect();
    let reader = staging.clone();
    let body = futures::stream::iter(names)
        .then(move |name| {
            let reader = reader.clone();
            async move { reader.open(&name).await }
        })
        .try_flatten()
        .boxed();
    let size = backend.put(id, &record.metadata, body).await?;
    staging.remove_all(&dir).await?;
    Ok(size)
}

/// Drops an upload and its parts.
pub async fn abort(
    staging: &Staging,
    upload_id: &str,
    id: &ObjectId,
) -> Result<(), MultipartError> {
    let (dir, _) = load(staging, upload_id, id).await?;
    staging.remove_all(&dir).await?;
    Ok(())
}

/// Removes uploads untouched for longer than `max_age`; returns how many.
pub async fn collect_garbage(
    staging: &Staging,
    max_age: Duration,
    now: SystemTime,
) -> Result<u64, MultipartError> {
    Ok(staging
        .remove_untouched(ROOT, max_age, now, |_| false)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::object::Scopes;

    fn body(data: &'static [u8]) -> PayloadStream {
        futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed()
    }

    fn id(key: &str) -> ObjectId {
        ObjectId::new("mp", Scopes::parse("org=1").unwrap(), key).unwrap()
    }

    #[tokio::test]
    async fn full_cycle_with_replacement_paging_and_checks() {
        let staging = Staging::memory();
        let backend = MemoryBackend::default();
        let upload = initiate(&staging, id("k"), Metadata::default())
            .await
            .unwrap();
        let e1 = put_part(&staging, &upload, &id("k"), 1, body(b"old"), None)
            .await
            .unwrap();
        let e1b = put_part(&staging, &upload, &id("k"), 1, body(b"one-"), None)
            .await
            .unwrap();
        assert_ne!(e1, e1b);
        let md5: [u8; 16] = Md5::digest(b"two-").into();
        let e2 = put_part(&staging, &upload, &id("k"), 2, body(b"two-"), Some(md5))
            .await
            .unwrap();
        let bad = put_part(&staging, &upload, &id("k"), 3, body(b"x"), Some(md5)).await;
        assert!(matches!(bad, Err(MultipartError::BadDigest)));
        let e3 = put_part(&staging, &upload, &id("k"), 3, body(b"three"), None)
            .await
            .unwrap();
        // Another object cannot use this upload.
        assert!(matches!(
            put_part(&staging, &upload, &id("other"), 4, body(b"x"), None).await,
            Err(MultipartError::UnknownUpload)
        ));
        let page = list_parts(&staging, &upload, &id("k"), Some(2), None)
            .await
            .unwrap();
        assert_eq!(
            page.parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(page.is_truncated);
        assert_eq!(page.next_part_number_marker, Some(2));
        let page = list_parts(&staging, &upload, &id("k"), None, Some(2))
            .await
            .unwrap();
        assert_eq!(page.parts.len(), 1);
        assert_eq!(page.parts[0].size, 5);
        assert!(!page.is_truncated);

        let wrong = vec![(1, e1.clone()), (2, e2.clone())];
        assert!(matches!(
            complete(&staging, &backend, &upload, &id("k"), wrong).await,
            Err(MultipartError::InvalidPart(_))
        ));
        let missing = vec![(1, e1b.clone()), (7, e2.clone())];
        assert!(matches!(
            complete(&staging, &backend, &upload, &id("k"), missing).await,
            Err(MultipartError::InvalidPart(_))
        ));
        let ok = vec![(1, e1b), (2, e2), (3, e3)];
        let size = complete(&staging, &backend, &upload, &id("k"), ok)
            .await
            .unwrap();
        assert_eq!(size, 13);
        let stored = backend.get(&id("k")).await.unwrap().unwrap();
        let bytes: Vec<Bytes> = stored.payload.into_stream().try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"one-two-three");
        assert!(matches!(
            abort(&staging, &upload, &id("k")).await,
            Err(MultipartError::UnknownUpload)
        ));
    }

    #[tokio::test]
    async fn ids_that_are_not_ours_are_unknown_and_old_uploads_are_collected() {
        let staging = Staging::memory();
        for bad in ["../x", "x", "0123456789abcdef0123456789ABCDEF"] {
            assert!(matches!(
                abort(&staging, bad, &id("k")).await,
                Err(MultipartError::UnknownUpload)
            ));
        }
        let upload = initiate(&staging, id("k"), Metadata::default())
            .await
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(
            collect_garbage(&staging, Duration::from_secs(60), now)
                .await
                .unwrap(),
            0
        );
        let later = now + Duration::from_secs(120);
        assert_eq!(
            collect_garbage(&staging, Duration::from_secs(60), later)
                .await
                .unwrap(),
            1
        );
        assert!(matches!(
            abort(&staging, &upload, &id("k")).await,
            Err(MultipartError::UnknownUpload)
        ));
    }
}
