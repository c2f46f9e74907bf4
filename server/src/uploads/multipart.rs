//! Multipart uploads (api §2.7, M1–M6) staged in [`Staging`] and assembled into one
//! ordinary object at completion.
//!
//! Layout under the staging root: `multipart/<upload id>/upload.json` (the object id and
//! the metadata fixed at initiate), `<n>.part` (part bytes) and `<n>.json` (its etag,
//! size and time). Upload ids are UUIDv7 in 32 hex digits; anything else is unknown, so
//! a client-chosen id never becomes a path. An upload only answers for the object it was
//! initiated for.
//!
//! On a backend with its own multipart upload (S3), a part its limits take streams
//! straight into that upload, started on the first such part and recorded in
//! `native.json`, so any server continues it. Completion then lets the backend assemble
//! the object ([`super::assembly`]), streaming only the staged parts once more; an
//! upload whose listed parts are all staged is published through `put` as elsewhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{FutureExt, StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use super::assembly::{self, Listed, Piece, PlanError};
use super::store::Staging;
use crate::backend::{Backend, BackendError, NativeMultipart, NativeUpload, PayloadStream};
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
    /// The listed parts cannot be laid out as the backend's native parts.
    #[error(transparent)]
    Plan(#[from] PlanError),
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
    pub fn code(&self) -> &str {
        match self {
            MultipartError::InvalidPart(_) => "InvalidPart",
            MultipartError::InvalidPartOrder => "InvalidPartOrder",
            MultipartError::BadDigest => "BadDigest",
            MultipartError::Plan(err) => err.code(),
            MultipartError::Backend(BackendError::Rejected { code, .. }) => code,
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
    /// The backend's etag when the part went up natively (its bytes are not staged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    native: Option<String>,
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

/// What the body check learned once the part's body has streamed through.
#[derive(Clone, Default)]
struct BodyCheck {
    digest: Arc<Mutex<Option<[u8; 16]>>>,
    mismatch: Arc<AtomicBool>,
}

impl BodyCheck {
    fn mismatch(&self) -> bool {
        self.mismatch.load(Ordering::Relaxed)
    }

    fn digest(&self) -> Option<[u8; 16]> {
        *self.digest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The part body as it streams on, hashed, with its last chunk held back until the
/// digest is known: a body that fails `content_md5` ends in an error before its last
/// byte, so neither staging nor a native upload ever takes it for complete.
fn verified(payload: PayloadStream, content_md5: Option<[u8; 16]>) -> (PayloadStream, BodyCheck) {
    let check = BodyCheck::default();
    let state = Some((payload, None::<Bytes>, Md5::new()));
    let out = check.clone();
    let stream = futures::stream::unfold(state, move |state| {
        let out = out.clone();
        async move {
            let (mut payload, mut held, mut hasher) = state?;
            loop {
                match payload.next().await {
                    Some(Ok(chunk)) => {
                        hasher.update(&chunk);
                        if let Some(previous) = held.replace(chunk) {
                            return Some((Ok(previous), Some((payload, held, hasher))));
                        }
                    }
                    Some(Err(err)) => return Some((Err(err), None)),
                    None => {
                        let digest: [u8; 16] = hasher.finalize().into();
                        *out.digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
                        if content_md5.is_some_and(|expected| expected != digest) {
                            out.mismatch.store(true, Ordering::Relaxed);
                            let err = std::io::Error::other("content-md5 mismatch");
                            return Some((Err(err), None));
                        }
                        return held.map(|last| (Ok(last), None));
                    }
                }
            }
        }
    });
    (stream.boxed(), check)
}

/// The backend's native upload for this API upload, started (and recorded for every
/// server) on first use; of two servers starting it at once, one upload is kept.
async fn native_upload(
    staging: &Staging,
    native: &dyn NativeMultipart,
    dir: &str,
    record: &UploadRecord,
) -> Result<NativeUpload, MultipartError> {
    if let Some(upload) = recorded_native(staging, dir).await? {
        return Ok(upload);
    }
    let ours = native.create(&record.id, &record.metadata).await?;
    let bytes = serde_json::to_vec(&ours).expect("serializable");
    let stored = staging
        .put_if_absent(&format!("{dir}/native.json"), bytes)
        .await?;
    let kept: NativeUpload =
        serde_json::from_slice(&stored).map_err(|_| MultipartError::UnknownUpload)?;
    if kept != ours {
        native.abort(&ours).await?;
    }
    Ok(kept)
}

async fn recorded_native(
    staging: &Staging,
    dir: &str,
) -> Result<Option<NativeUpload>, MultipartError> {
    let Some(bytes) = staging.read(&format!("{dir}/native.json")).await? else {
        return Ok(None);
    };
    Ok(Some(
        serde_json::from_slice(&bytes).map_err(|_| MultipartError::UnknownUpload)?,
    ))
}

/// Drops the native upload an API upload recorded, if any.
async fn abort_native(
    staging: &Staging,
    backend: &dyn Backend,
    dir: &str,
) -> Result<(), MultipartError> {
    if let (Some(upload), Some(native)) = (
        recorded_native(staging, dir).await?,
        backend.native_multipart(),
    ) {
        native.abort(&upload).await?;
    }
    Ok(())
}

fn native_error(err: BackendError) -> MultipartError {
    match err {
        BackendError::Payload(err) => MultipartError::Payload(err),
        BackendError::Rejected { code, .. } if code == "NoSuchUpload" => {
            MultipartError::UnknownUpload
        }
        err => MultipartError::Backend(err),
    }
}

/// Stores (or replaces) part `part_number` of `length` bytes (the request's
/// `Content-Length`); checks `content_md5` when given. A part the backend's native
/// limits take streams into its native upload, any other is staged. Returns the etag
/// (the quoted hex MD5 of the part).
#[allow(clippy::too_many_arguments)]
pub async fn put_part(
    staging: &Staging,
    backend: &dyn Backend,
    upload_id: &str,
    id: &ObjectId,
    part_number: u32,
    length: u64,
    payload: PayloadStream,
    content_md5: Option<[u8; 16]>,
) -> Result<String, MultipartError> {
    let (dir, record) = load(staging, upload_id, id).await?;
    let (body, check) = verified(payload, content_md5);
    let native = backend
        .native_multipart()
        .filter(|native| native.part_limits().takes(part_number, length));
    let stored = match native {
        Some(native) => {
            let upload = native_upload(staging, native, &dir, &record).await?;
            native
                .upload_part(&upload, part_number, length, content_md5, body)
                .await
                .map(|etag| (length, Some(etag)))
                .map_err(native_error)
        }
        None => staging
            .put(&format!("{dir}/{part_number}.part"), body)
            .await
            .map(|size| (size, None))
            .map_err(MultipartError::Payload),
    };
    let (size, native) = match stored {
        Err(_) if check.mismatch() => return Err(MultipartError::BadDigest),
        other => other?,
    };
    let digest = check.digest().ok_or_else(|| {
        MultipartError::Payload(std::io::Error::other("the part body did not end"))
    })?;
    let etag = format!("\"{}\"", hex(&digest));
    let modified = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let uploaded_natively = native.is_some();
    let record = PartRecord {
        etag: etag.clone(),
        size,
        modified_secs: modified.as_secs(),
        modified_nanos: modified.subsec_nanos(),
        native,
    };
    staging
        .put_bytes(
            &format!("{dir}/{part_number}.json"),
            serde_json::to_vec(&record).expect("serializable"),
        )
        .await?;
    if uploaded_natively {
        // Bytes of an earlier, staged upload of this number are no longer the part.
        staging.remove(&format!("{dir}/{part_number}.part")).await?;
    }
    Ok(etag)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Part records read at once (each is one small request on a bucket).
const RECORD_READS: usize = 16;

/// Every part's record, by ascending part number.
async fn records(staging: &Staging, dir: &str) -> Result<Vec<(u32, PartRecord)>, MultipartError> {
    let numbers = staging.list(dir).await?.into_iter().filter_map(|name| {
        name.strip_suffix(".json")
            .and_then(|n| n.parse::<u32>().ok())
    });
    let read = futures::stream::iter(numbers)
        .map(|number| async move {
            let bytes = staging.read(&format!("{dir}/{number}.json")).await?;
            let record = bytes.and_then(|b| serde_json::from_slice::<PartRecord>(&b).ok());
            Ok::<_, std::io::Error>(record.map(|record| (number, record)))
        })
        .buffer_unordered(RECORD_READS);
    let mut out: Vec<(u32, PartRecord)> = read
        .try_filter_map(|r| async move { Ok(r) })
        .try_collect()
        .await?;
    out.sort_by_key(|(number, _)| *number);
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
    let mut all: Vec<PartInfo> = records(staging, &dir)
        .await?
        .into_iter()
        .filter(|(number, _)| marker.is_none_or(|m| *number > m))
        .map(|(number, record)| PartInfo {
            part_number: number,
            etag: record.etag,
            last_modified: UNIX_EPOCH + Duration::new(record.modified_secs, record.modified_nanos),
            size: record.size,
        })
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

/// The staged bytes of `numbers`, one after another.
fn staged_parts(staging: &Staging, dir: &str, numbers: &[u32]) -> PayloadStream {
    let names: Vec<String> = numbers.iter().map(|n| format!("{dir}/{n}.part")).collect();
    let reader = staging.clone();
    futures::stream::iter(names)
        .then(move |name| {
            let reader = reader.clone();
            async move { reader.open(&name).await }
        })
        .try_flatten()
        .boxed()
}

/// Lets the backend assemble its native upload from the listed parts, streaming each
/// run of staged parts up as one native part first.
async fn complete_natively(
    staging: &Staging,
    native: &dyn NativeMultipart,
    dir: &str,
    record: &UploadRecord,
    listed: &[Listed],
) -> Result<u64, MultipartError> {
    let upload = recorded_native(staging, dir)
        .await?
        .ok_or(MultipartError::UnknownUpload)?;
    let mut parts = Vec::new();
    for piece in assembly::plan(listed, &native.part_limits())? {
        match piece {
            Piece::Native { number, etag } => parts.push((number, etag)),
            Piece::Staged {
                number,
                members,
                size,
            } => {
                let body = staged_parts(staging, dir, &members);
                let etag = native
                    .upload_part(&upload, number, size, None, body)
                    .await
                    .map_err(native_error)?;
                parts.push((number, etag));
            }
        }
    }
    let size = listed.iter().map(|part| part.size).sum();
    native
        .complete(&record.id, &record.metadata, &upload, parts, size)
        .await
        .map_err(native_error)?;
    Ok(size)
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
    let stored = records(staging, &dir).await?;
    let unquote = |s: &str| s.trim_matches('"').to_owned();
    let mut parts = Vec::with_capacity(listed.len());
    for (number, etag) in &listed {
        match stored.iter().find(|(n, _)| n == number) {
            Some((_, part)) if unquote(&part.etag) == unquote(etag) => parts.push(Listed {
                number: *number,
                size: part.size,
                native_etag: part.native.clone(),
            }),
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
    let native = backend.native_multipart();
    let size = match native {
        Some(native) if parts.iter().any(|part| part.native_etag.is_some()) => {
            complete_natively(staging, native, &dir, &record, &parts).await?
        }
        _ => {
            let numbers: Vec<u32> = parts.iter().map(|part| part.number).collect();
            let body = staged_parts(staging, &dir, &numbers);
            let size = backend.put(id, &record.metadata, body).await?;
            // A native upload started by parts that were replaced or left out.
            if let Err(err) = abort_native(staging, backend, &dir).await {
                tracing::warn!(%err, "cannot abort an unused native multipart upload");
            }
            size
        }
    };
    staging.remove_all(&dir).await?;
    Ok(size)
}

/// Drops an upload and its parts.
pub async fn abort(
    staging: &Staging,
    backend: &dyn Backend,
    upload_id: &str,
    id: &ObjectId,
) -> Result<(), MultipartError> {
    let (dir, _) = load(staging, upload_id, id).await?;
    abort_native(staging, backend, &dir).await?;
    staging.remove_all(&dir).await?;
    Ok(())
}

/// Removes uploads untouched for longer than `max_age`, native uploads included;
/// returns how many. One whose native upload cannot be dropped now stays for the
/// next round.
pub async fn collect_garbage(
    staging: &Staging,
    backend: Arc<dyn Backend>,
    max_age: Duration,
    now: SystemTime,
) -> Result<u64, MultipartError> {
    let release = |name: String| {
        let (staging, backend) = (staging.clone(), backend.clone());
        async move {
            let dir = format!("{ROOT}/{name}");
            match abort_native(&staging, backend.as_ref(), &dir).await {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(%err, upload = dir, "cannot abort an abandoned native upload");
                    false
                }
            }
        }
        .boxed()
    };
    Ok(staging
        .remove_untouched(ROOT, max_age, now, release)
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

    async fn part(
        staging: &Staging,
        backend: &dyn Backend,
        upload: &str,
        id: &ObjectId,
        number: u32,
        data: &'static [u8],
        md5: Option<[u8; 16]>,
    ) -> Result<String, MultipartError> {
        let length = data.len() as u64;
        put_part(
            staging,
            backend,
            upload,
            id,
            number,
            length,
            body(data),
            md5,
        )
        .await
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
        let e1 = part(&staging, &backend, &upload, &id("k"), 1, b"old", None)
            .await
            .unwrap();
        let e1b = part(&staging, &backend, &upload, &id("k"), 1, b"one-", None)
            .await
            .unwrap();
        assert_ne!(e1, e1b);
        let md5: [u8; 16] = Md5::digest(b"two-").into();
        let e2 = part(&staging, &backend, &upload, &id("k"), 2, b"two-", Some(md5))
            .await
            .unwrap();
        let bad = part(&staging, &backend, &upload, &id("k"), 3, b"x", Some(md5)).await;
        assert!(matches!(bad, Err(MultipartError::BadDigest)));
        let e3 = part(&staging, &backend, &upload, &id("k"), 3, b"three", None)
            .await
            .unwrap();
        // Another object cannot use this upload.
        assert!(matches!(
            part(&staging, &backend, &upload, &id("other"), 4, b"x", None).await,
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
            abort(&staging, &backend, &upload, &id("k")).await,
            Err(MultipartError::UnknownUpload)
        ));
    }

    #[tokio::test]
    async fn ids_that_are_not_ours_are_unknown_and_old_uploads_are_collected() {
        let staging = Staging::memory();
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        for bad in ["../x", "x", "0123456789abcdef0123456789ABCDEF"] {
            assert!(matches!(
                abort(&staging, backend.as_ref(), bad, &id("k")).await,
                Err(MultipartError::UnknownUpload)
            ));
        }
        let upload = initiate(&staging, id("k"), Metadata::default())
            .await
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(
            collect_garbage(&staging, backend.clone(), Duration::from_secs(60), now)
                .await
                .unwrap(),
            0
        );
        let later = now + Duration::from_secs(120);
        assert_eq!(
            collect_garbage(&staging, backend.clone(), Duration::from_secs(60), later)
                .await
                .unwrap(),
            1
        );
        assert!(matches!(
            abort(&staging, backend.as_ref(), &upload, &id("k")).await,
            Err(MultipartError::UnknownUpload)
        ));
    }
}
