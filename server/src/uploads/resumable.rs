//! Resumable upload sessions (api-newest §2.9) staged in [`Staging`].
//!
//! A session is `resumable/<sid>/session.json` (object id, metadata fixed at create,
//! declared length) plus `resumable/<sid>/data`, the bytes received so far (in a bucket,
//! one segment object per chunk), each append synced or committed before it is
//! acknowledged, so a crash or restart keeps every acknowledged byte.
//! When the last byte arrives the data is published through the backend's `put_staged`
//! (by default a copy through `put`) and the session is finished: writes to it answer
//! 410 and offset queries report completion again, until it is collected. A session
//! without a header is marked by a `done` file; one with a header is finished once its
//! `data` is gone (`session.json` stays as the record of it).
//!
//! A backend may ask for a header at the start of `data` ([`Backend::staged_header`],
//! written at create: metadata is fixed then), so that the finished file is already one
//! of its object files and is adopted rather than copied. Offsets then count from the
//! end of that header (`SessionRecord::header`). Such a backend removes `data` only once
//! the object is committed, so `data` missing from such a session means it finished.
//!
//! The token handed to clients is canonical unpadded base64url of
//! `version ‖ sid ‖ HMAC-SHA256(secret, version ‖ sid ‖ object id)[..16]`: it names no
//! path, cannot be forged or altered, and only ever addresses the object it was created
//! for. The secret is generated once per staging root (`resumable/secret`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::publication::{self, Turn};
use super::store::{AppendError, Staging};
use super::StagedUpload;
use crate::backend::{Backend, BackendError, PayloadStream};
use crate::object::{Metadata, ObjectId};

const ROOT: &str = "resumable";
const SECRET: &str = "resumable/secret";
const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
const TOKEN_LEN: usize = 1 + 16 + MAC_LEN;

/// Why a session call failed (mapped to HTTP in `http::error`).
#[derive(Debug, thiserror::Error)]
pub enum ResumableError {
    /// The token is not canonical unpadded base64url (400).
    #[error("session token must use unpadded base64url encoding")]
    NonCanonicalToken,
    /// Unknown, cancelled or expired session, or a token for another object (404).
    #[error("unknown upload session")]
    UnknownSession,
    /// The session already completed (410).
    #[error("upload session is gone: it already completed")]
    Gone,
    /// The chunk starts elsewhere than the server's offset (409 + `upload-offset`).
    #[error("chunk offset {sent} does not match the upload offset {expected}")]
    OffsetMismatch {
        /// The offset the client sent.
        sent: u64,
        /// The offset the server holds.
        expected: u64,
    },
    /// offset + length beyond `Upload-Length` (400).
    #[error("chunk exceeds the declared upload length {0}")]
    ChunkExceedsUploadLength(u64),
    /// The client's chunk stream broke; the bytes before the break were kept (400).
    #[error("upload stream failed: {0}")]
    Payload(#[source] std::io::Error),
    /// Staging storage failed.
    #[error("staging i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The backend failed to publish the object.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Another server is still publishing the fully received session (503; ask again).
    #[error("another server is still publishing this session; ask for the offset again")]
    Busy,
}

/// What `session.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SessionRecord {
    id: ObjectId,
    metadata: Metadata,
    length: u64,
    /// Bytes of backend header at the start of `data` (0 for sessions created without
    /// one, including those from before headers existed).
    #[serde(default)]
    header: u64,
}

/// A freshly created session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The token for `?session=`.
    pub token: String,
}

/// Where a session stands after a chunk or an offset query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Incomplete; the server holds this many bytes (204 + `upload-offset`).
    Incomplete(u64),
    /// The object was published (201 + `{key}`).
    Complete,
}

/// A session lock's key: the staging's lock scope and the session directory.
type LockKey = (usize, String);

/// Per-session write locks, so concurrent chunks for one session never interleave within
/// one server. Servers sharing a bucket (pods) are kept apart by the bucket's conditional
/// chunk claims instead ([`super::bucket`]); each keys its locks by its own store, so two
/// servers in one process race as two pods would.
static LOCKS: LazyLock<Mutex<HashMap<LockKey, Weak<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

fn session_lock(staging: &Staging, sid: &str) -> Arc<tokio::sync::Mutex<()>> {
    let key = (staging.lock_scope(), sid.to_owned());
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks.retain(|_, weak| weak.strong_count() > 0);
    if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(key, Arc::downgrade(&lock));
    lock
}

async fn secret(staging: &Staging) -> Result<Vec<u8>, ResumableError> {
    let fresh: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| *u.as_bytes())
        .collect();
    Ok(staging.put_once(SECRET, fresh).await?)
}

fn mac(secret: &[u8], sid: &[u8], id: &ObjectId) -> [u8; MAC_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(&[VERSION]);
    mac.update(sid);
    mac.update(&serde_json::to_vec(id).expect("serializable"));
    let full = mac.finalize().into_bytes();
    full[..MAC_LEN].try_into().expect("length")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the token's form (400 when not canonical) and its seal for `id` (404 when it
/// does not verify); returns the session's directory.
async fn open_token(
    staging: &Staging,
    token: &str,
    id: &ObjectId,
) -> Result<String, ResumableError> {
    let raw = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ResumableError::NonCanonicalToken)?;
    if URL_SAFE_NO_PAD.encode(&raw) != token {
        return Err(ResumableError::NonCanonicalToken);
    }
    if raw.len() != TOKEN_LEN || raw[0] != VERSION {
        return Err(ResumableError::UnknownSession);
    }
    let sid = &raw[1..17];
    let expected = mac(&secret(staging).await?, sid, id);
    // Constant-time comparison through the MAC API.
    let mut check = Hmac::<Sha256>::new_from_slice(&expected).expect("any key length");
    check.update(b"compare");
    let mut other = Hmac::<Sha256>::new_from_slice(&raw[17..]).expect("any key length");
    other.update(b"compare");
    if check.verify_slice(&other.finalize().into_bytes()).is_err() {
        return Err(ResumableError::UnknownSession);
    }
    Ok(format!("{ROOT}/{}", hex(sid)))
}

async fn load(
    staging: &Staging,
    dir: &str,
    id: &ObjectId,
) -> Result<SessionRecord, ResumableError> {
    if staging.read(&format!("{dir}/done")).await?.is_some() {
        return Err(ResumableError::Gone);
    }
    let bytes = staging
        .read(&format!("{dir}/session.json"))
        .await?
        .ok_or(ResumableError::UnknownSession)?;
    let record: SessionRecord =
        serde_json::from_slice(&bytes).map_err(|_| ResumableError::UnknownSession)?;
    if &record.id != id {
        return Err(ResumableError::UnknownSession);
    }
    Ok(record)
}

/// R1/R2: creates a session for `length` stored bytes, its data laid out as `backend`
/// asks ([`Backend::staged_header`]).
pub async fn create(
    staging: &Staging,
    backend: &dyn Backend,
    id: ObjectId,
    metadata: Metadata,
    length: u64,
) -> Result<Created, ResumableError> {
    let sid = *uuid::Uuid::new_v4().as_bytes();
    let tag = mac(&secret(staging).await?, &sid, &id);
    let dir = format!("{ROOT}/{}", hex(&sid));
    let header = backend.staged_header(&id, &metadata, length);
    let record = SessionRecord {
        id,
        metadata,
        length,
        header: header.as_ref().map_or(0, |h| h.len() as u64),
    };
    // Both names (and `session.json`'s bytes) are durable before the token is handed
    // out; the header's bytes are synced by the first chunk's append (see `current`).
    staging
        .create_dir_with(
            &dir,
            "data",
            header,
            "session.json",
            serde_json::to_vec(&record).expect("serializable"),
        )
        .await?;
    let mut raw = Vec::with_capacity(TOKEN_LEN);
    raw.push(VERSION);
    raw.extend_from_slice(&sid);
    raw.extend_from_slice(&tag);
    Ok(Created {
        token: URL_SAFE_NO_PAD.encode(raw),
    })
}

/// Publishes a fully received session and marks it finished: a session staged with a
/// header is finished once its `data` is gone (an adopting backend removes it durably
/// under the key's lock, otherwise it is removed here with one sync of the session
/// directory); any other session gets a `done` marker and loses `session.json`.
async fn publish(
    staging: &Staging,
    backend: &dyn Backend,
    dir: &str,
    record: &SessionRecord,
) -> Result<Progress, ResumableError> {
    // Servers sharing the staging publish a session once (see `publication`).
    let turn = if staging.is_shared() {
        Some(publication::take_turn(staging, dir, publication::WAIT).await?)
    } else {
        None
    };
    let release = match turn {
        None => None,
        Some(Turn::Publish(release)) => Some(release),
        Some(Turn::Published) => return Ok(Progress::Complete),
        Some(Turn::Busy) => return Err(ResumableError::Busy),
    };
    let data = StagedUpload::new(staging.clone(), format!("{dir}/data"), record.header);
    backend
        .put_staged(&record.id, &record.metadata, &data)
        .await?;
    if record.header > 0 {
        // An adopting backend removed `data` durably; after a copy it is removed here.
        let name = format!("{dir}/data");
        if staging.len(&name).await?.is_some() {
            staging.remove_appended(&name).await?;
            staging.sync_dir(dir).await?;
        }
        return Ok(Progress::Complete);
    }
    staging
        .put_bytes(&format!("{dir}/done"), Vec::new())
        .await?;
    if let Some(release) = release {
        release.published();
    }
    staging.remove_appended(&format!("{dir}/data")).await?;
    staging.remove(&format!("{dir}/session.json")).await?;
    Ok(Progress::Complete)
}

/// The payload bytes received; `None` when a header-carrying session's data is gone,
/// which means the session finished (its data was adopted or removed after a copy).
/// `data` shorter than its header (a crash after create, before the first chunk's sync
/// covered the header) gets its header again: no byte of it was acknowledged. A header
/// whose bytes were lost but whose length survived is caught when the backend checks it
/// at publication (and the payload is copied instead).
async fn current(
    staging: &Staging,
    backend: &dyn Backend,
    dir: &str,
    record: &SessionRecord,
) -> Result<Option<u64>, ResumableError> {
    let name = format!("{dir}/data");
    if record.header == 0 {
        return Ok(Some(staging.appended_len(&name).await?));
    }
    match staging.len(&name).await? {
        None => Ok(None),
        Some(len) if len < record.header => {
            let header = backend
                .staged_header(&record.id, &record.metadata, record.length)
                .filter(|h| h.len() as u64 == record.header)
                // Never adopted (the backend's check fails), only skipped when copying.
                .unwrap_or_else(|| vec![0; record.header as usize]);
            staging.put_bytes(&name, header).await?;
            Ok(Some(0))
        }
        Some(len) => Ok(Some(len - record.header)),
    }
}

/// R3: appends `len` bytes at `offset`. A zero-length chunk never conflicts: it reports
/// the offset (and publishes a session whose last chunk's response was lost).
pub async fn put_chunk(
    staging: &Staging,
    backend: &dyn Backend,
    token: &str,
    id: &ObjectId,
    offset: u64,
    len: u64,
    payload: PayloadStream,
) -> Result<Progress, ResumableError> {
    let dir = open_token(staging, token, id).await?;
    let lock = session_lock(staging, &dir);
    let _held = lock.lock().await;
    let record = load(staging, &dir, id).await?;
    let end = offset
        .checked_add(len)
        .filter(|end| *end <= record.length)
        .ok_or(ResumableError::ChunkExceedsUploadLength(record.length))?;
    let Some(have) = current(staging, backend, &dir, &record).await? else {
        return Err(ResumableError::Gone);
    };
    if len == 0 || have == record.length {
        return if have == record.length {
            publish(staging, backend, &dir, &record).await
        } else {
            Ok(Progress::Incomplete(have))
        };
    }
    if have != offset {
        return Err(ResumableError::OffsetMismatch {
            sent: offset,
            expected: have,
        });
    }
    let header = record.header;
    match staging
        .append(&format!("{dir}/data"), header + offset, payload, len)
        .await?
        .map(|now| now - header)
    {
        Ok(now) if now == record.length => publish(staging, backend, &dir, &record).await,
        Ok(now) if now == end => Ok(Progress::Incomplete(now)),
        // Fewer bytes than announced: the body ended early.
        Ok(_) => Err(ResumableError::Payload(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "chunk shorter than its content-length",
        ))),
        // Another server claimed this offset first. If that completed the session, its
        // bytes may already be going away: the session is gone rather than at `expected`.
        Err(AppendError::Offset(_)) if staging.read(&format!("{dir}/done")).await?.is_some() => {
            Err(ResumableError::Gone)
        }
        Err(AppendError::Offset(expected)) => Err(ResumableError::OffsetMismatch {
            sent: offset,
            expected: expected.saturating_sub(header),
        }),
        Err(AppendError::TooLong) => Err(ResumableError::ChunkExceedsUploadLength(record.length)),
        Err(AppendError::Stream(err)) => Err(ResumableError::Payload(err)),
    }
}

/// R4: reports the offset (publishing a fully received session). A session that
/// already completed reports completion again, so a client whose final chunk response
/// was lost learns that its object exists; writes to it are refused as gone.
pub async fn query_offset(
    staging: &Staging,
    backend: &dyn Backend,
    token: &str,
    id: &ObjectId,
) -> Result<Progress, ResumableError> {
    let empty: PayloadStream = Box::pin(futures::stream::empty());
    // An offset query is a zero-length chunk at offset 0, except on a completed session.
    match put_chunk(staging, backend, token, id, 0, 0, empty).await {
        Err(ResumableError::Gone) => Ok(Progress::Complete),
        other => other,
    }
}

/// R5: cancels a session and drops its bytes.
pub async fn cancel(staging: &Staging, token: &str, id: &ObjectId) -> Result<(), ResumableError> {
    let dir = open_token(staging, token, id).await?;
    let lock = session_lock(staging, &dir);
    let _held = lock.lock().await;
    let record = load(staging, &dir, id).await?;
    if record.header > 0 && staging.len(&format!("{dir}/data")).await?.is_none() {
        return Err(ResumableError::Gone);
    }
    staging.remove_all(&dir).await?;
    Ok(())
}

/// Removes sessions (open or done) untouched for longer than `max_age`, and unclaimed
/// chunk leftovers of that age inside open ones; returns how many sessions it removed.
pub async fn collect_garbage(
    staging: &Staging,
    max_age: Duration,
    now: SystemTime,
) -> Result<u64, ResumableError> {
    // The token-signing secret lives beside the sessions and is never swept.
    let sessions = staging
        .remove_untouched(ROOT, max_age, now, |name| {
            Box::pin(futures::future::ready(name != "secret"))
        })
        .await?;
    // Chunk bodies of open sessions that lost a claim race or were never claimed.
    staging.remove_unclaimed(ROOT, max_age, now).await?;
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::object::Scopes;
    use bytes::Bytes;
    use futures::{StreamExt, TryStreamExt};

    fn body(data: &'static [u8]) -> PayloadStream {
        futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed()
    }

    fn id(key: &str) -> ObjectId {
        ObjectId::new("rs", Scopes::parse("org=1").unwrap(), key).unwrap()
    }

    #[tokio::test]
    async fn chunks_offsets_completion_and_binding() {
        let staging = Staging::memory();
        let backend = MemoryBackend::default();
        let s = create(&staging, &backend, id("k"), Metadata::default(), 10)
            .await
            .unwrap();
        let t = &s.token;
        assert!(!t.contains('=') && !t.contains('+') && !t.contains('/'));
        assert_eq!(
            put_chunk(&staging, &backend, t, &id("k"), 0, 4, body(b"0123"))
                .await
                .unwrap(),
            Progress::Incomplete(4)
        );
        assert!(matches!(
            put_chunk(&staging, &backend, t, &id("k"), 2, 2, body(b"xx")).await,
            Err(ResumableError::OffsetMismatch {
                sent: 2,
                expected: 4
            })
        ));
        assert_eq!(
            put_chunk(&staging, &backend, t, &id("k"), 9, 0, body(b""))
                .await
                .unwrap(),
            Progress::Incomplete(4)
        );
        assert!(matches!(
            put_chunk(&staging, &backend, t, &id("k"), 4, 7, body(b"4567890")).await,
            Err(ResumableError::ChunkExceedsUploadLength(10))
        ));
        // Another object, a tampered or a non-canonical token.
        assert!(matches!(
            query_offset(&staging, &backend, t, &id("other")).await,
            Err(ResumableError::UnknownSession)
        ));
        let mut raw = URL_SAFE_NO_PAD.decode(t).unwrap();
        raw[5] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(&raw);
        assert!(matches!(
            query_offset(&staging, &backend, &tampered, &id("k")).await,
            Err(ResumableError::UnknownSession)
        ));
        assert!(matches!(
            query_offset(&staging, &backend, &format!("{t}="), &id("k")).await,
            Err(ResumableError::NonCanonicalToken)
        ));
        assert_eq!(
            put_chunk(&staging, &backend, t, &id("k"), 4, 6, body(b"456789"))
                .await
                .unwrap(),
            Progress::Complete
        );
        let stored = backend.get(&id("k")).await.unwrap().unwrap();
        let bytes: Vec<Bytes> = stored.payload.into_stream().try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"0123456789");
        assert_eq!(
            query_offset(&staging, &backend, t, &id("k")).await.unwrap(),
            Progress::Complete
        );
        assert!(matches!(
            put_chunk(&staging, &backend, t, &id("k"), 10, 0, body(b"")).await,
            Err(ResumableError::Gone)
        ));
        assert!(matches!(
            cancel(&staging, t, &id("k")).await,
            Err(ResumableError::Gone)
        ));
    }

    #[tokio::test]
    async fn cancel_and_garbage_collection() {
        let staging = Staging::memory();
        let backend = MemoryBackend::default();
        let a = create(&staging, &backend, id("a"), Metadata::default(), 5)
            .await
            .unwrap();
        let _b = create(&staging, &backend, id("b"), Metadata::default(), 5)
            .await
            .unwrap();
        cancel(&staging, &a.token, &id("a")).await.unwrap();
        assert!(matches!(
            cancel(&staging, &a.token, &id("a")).await,
            Err(ResumableError::UnknownSession)
        ));
        let later = SystemTime::now() + Duration::from_secs(120);
        assert_eq!(
            collect_garbage(&staging, Duration::from_secs(60), later)
                .await
                .unwrap(),
            1
        );
    }
}
