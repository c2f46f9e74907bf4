//! The embedded default backend: one file per object on a local filesystem.
//!
//! Crash safety: every write goes to a fresh temp file beside the object's file, which is
//! fsynced, renamed over the object's file and followed by an fsync of the directory, so an acknowledged write
//! survives `kill -9` and a reader sees the old object or the new one, never a torn one.
//! Metadata lives in a header inside the same file, so payload and metadata change
//! together in one rename.
//!
//! Keys never become directory paths: the file name is a SHA-256 digest of the full
//! object id, so `a`, `a/`, `a/b`, `a//a` and `../x` are distinct objects and no key can
//! escape the storage root.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{same_version, Backend, BackendError, PayloadStream, StoredObject};
use crate::object::{Metadata, ObjectId};

const MAGIC: &[u8; 8] = b"STRATA\x00\x01";
/// Upper bound on a header, so a corrupt length cannot make us allocate gigabytes.
const MAX_HEADER: u32 = 16 * 1024 * 1024;
const LOCK_STRIPES: usize = 64;
const READ_CHUNK: usize = 64 * 1024;
/// Objects up to this size are written and read in one blocking call each, whole.
const SMALL_OBJECT: usize = 64 * 1024;
const TEMP_SUFFIX: &str = ".tmp";

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    id: ObjectId,
    metadata: Metadata,
}

/// Objects stored as `<root>/objects/<xx>/<sha256>` files with an embedded header.
#[derive(Debug)]
pub struct FilesystemBackend {
    root: PathBuf,
    /// Serialises replacing renames per stripe so metadata updates are compare-and-swap.
    stripes: Arc<Vec<Mutex<()>>>,
}

impl FilesystemBackend {
    /// Opens (creating when missing) a storage root and removes temp files left by a crash.
    pub async fn open(root: PathBuf) -> Result<Self, BackendError> {
        let root_for_init = root.clone();
        tokio::task::spawn_blocking(move || init_root(&root_for_init))
            .await
            .map_err(|e| io::Error::other(e.to_string()))??;
        Ok(Self {
            root,
            stripes: Arc::new((0..LOCK_STRIPES).map(|_| Mutex::new(())).collect()),
        })
    }

    /// The storage root (for logs and the start-up line).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn digest(id: &ObjectId) -> [u8; 32] {
        let encoded = serde_json::to_vec(id).expect("object ids always serialize");
        Sha256::digest(&encoded).into()
    }

    fn object_path(&self, digest: &[u8; 32]) -> PathBuf {
        let hex = hex(digest);
        self.root.join("objects").join(&hex[..2]).join(hex)
    }

    /// A fresh temp file beside `target`, so the rename stays within one directory.
    fn temp_path(target: &Path) -> PathBuf {
        target
            .parent()
            .expect("object paths have a parent")
            .join(format!(".{}{TEMP_SUFFIX}", uuid::Uuid::new_v4()))
    }

    fn stripe(&self, digest: &[u8; 32]) -> &Mutex<()> {
        &self.stripes[digest[0] as usize % LOCK_STRIPES]
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
}

fn init_root(root: &Path) -> io::Result<()> {
    std::fs::create_dir_all(root.join("objects"))?;
    for i in 0..=255u8 {
        let shard = root.join("objects").join(format!("{i:02x}"));
        std::fs::create_dir_all(&shard)?;
        // Writes interrupted by a crash leave temp files; they were never acknowledged.
        for entry in std::fs::read_dir(&shard)? {
            let path = entry?.path();
            if is_temp(&path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    fsync_dir(&root.join("objects"))?;
    fsync_dir(root)?;
    Ok(())
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Io(io::Error::other(e.to_string())))?
}

fn encode_header(id: &ObjectId, metadata: &Metadata) -> Vec<u8> {
    let mut metadata = metadata.clone();
    metadata.size = None;
    let json = serde_json::to_vec(&Header {
        id: id.clone(),
        metadata,
    })
    .expect("metadata always serializes");
    let mut out = Vec::with_capacity(12 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Reads the header at the start of an object; returns it and the payload offset.
fn read_header(file: &mut impl Read) -> Result<(Header, u64), BackendError> {
    let mut prefix = [0u8; 12];
    file.read_exact(&mut prefix)
        .map_err(|e| BackendError::Corrupt(format!("short header: {e}")))?;
    if &prefix[..8] != MAGIC {
        return Err(BackendError::Corrupt("bad magic".to_owned()));
    }
    let len = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes"));
    if len > MAX_HEADER {
        return Err(BackendError::Corrupt(format!("header of {len} bytes")));
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json)
        .map_err(|e| BackendError::Corrupt(format!("short header: {e}")))?;
    let header: Header = serde_json::from_slice(&json)
        .map_err(|e| BackendError::Corrupt(format!("bad header: {e}")))?;
    Ok((header, 12 + len as u64))
}

/// Opens an object file and reads its header; `None` when the file does not exist.
fn open_object(path: &Path, id: &ObjectId) -> Result<Option<(File, Metadata, u64)>, BackendError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (header, offset) = read_header(&mut file)?;
    check_id(&header, id)?;
    let len = file.metadata()?.len();
    let mut metadata = header.metadata;
    metadata.size = Some(len.saturating_sub(offset));
    Ok(Some((file, metadata, offset)))
}

/// A payload as read from disk: small objects whole, large ones as an open file.
enum Payload {
    Whole(bytes::Bytes),
    File(File),
}

/// Opens an object for reading in one blocking call: small objects are read whole (one
/// `read`, no further blocking hops), large ones are positioned at their payload.
fn read_object(path: &Path, id: &ObjectId) -> Result<Option<(Metadata, Payload)>, BackendError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len <= (SMALL_OBJECT + 4096) as u64 {
        let mut whole = Vec::with_capacity(len as usize);
        file.read_to_end(&mut whole)?;
        let (header, offset) = read_header(&mut whole.as_slice())?;
        check_id(&header, id)?;
        let mut metadata = header.metadata;
        let payload = bytes::Bytes::from(whole).slice(offset as usize..);
        metadata.size = Some(payload.len() as u64);
        return Ok(Some((metadata, Payload::Whole(payload))));
    }
    let (header, offset) = read_header(&mut file)?;
    check_id(&header, id)?;
    let mut metadata = header.metadata;
    metadata.size = Some(len.saturating_sub(offset));
    file.seek(SeekFrom::Start(offset))?;
    Ok(Some((metadata, Payload::File(file))))
}

fn check_id(header: &Header, id: &ObjectId) -> Result<(), BackendError> {
    if &header.id != id {
        return Err(BackendError::Corrupt(
            "digest collision or misplaced file".to_owned(),
        ));
    }
    Ok(())
}

/// Moves a finished temp file into place durably.
fn publish(temp: &Path, target: &Path) -> io::Result<()> {
    std::fs::rename(temp, target)?;
    fsync_dir(target.parent().expect("object paths have a parent"))
}

/// Removes a temp file when a write did not complete.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait]
impl Backend for FilesystemBackend {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        mut payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        let digest = Self::digest(id);
        let target = self.object_path(&digest);
        let temp = Self::temp_path(&target);
        let mut guard = TempGuard(Some(temp.clone()));

        // Buffer the start of the body: a small object is written by one blocking call.
        let mut buffer = encode_header(id, metadata);
        let header_len = buffer.len();
        let mut rest = None;
        while let Some(chunk) = payload.next().await {
            buffer.extend_from_slice(&chunk.map_err(BackendError::Payload)?);
            if buffer.len() - header_len > SMALL_OBJECT {
                rest = Some(payload);
                break;
            }
        }
        let size = match rest {
            None => {
                let size = (buffer.len() - header_len) as u64;
                let temp = temp.clone();
                blocking(move || {
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&temp)?;
                    file.write_all(&buffer)?;
                    file.sync_data()?;
                    Ok(())
                })
                .await?;
                size
            }
            Some(mut payload) => {
                let mut file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)
                    .await?;
                let mut size = (buffer.len() - header_len) as u64;
                file.write_all(&buffer).await?;
                buffer.clear();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(BackendError::Payload)?;
                    size += chunk.len() as u64;
                    buffer.extend_from_slice(&chunk);
                    if buffer.len() >= READ_CHUNK {
                        file.write_all(&buffer).await?;
                        buffer.clear();
                    }
                }
                file.write_all(&buffer).await?;
                file.flush().await?;
                file.sync_data().await?;
                size
            }
        };

        let _lock = self.stripe(&digest).lock().await;
        let published = temp.clone();
        blocking(move || {
            publish(&published, &target)?;
            Ok(())
        })
        .await?;
        guard.0 = None;
        Ok(size)
    }

    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        let path = self.object_path(&Self::digest(id));
        let id = id.clone();
        let opened = blocking(move || read_object(&path, &id)).await?;
        Ok(opened.map(|(metadata, payload)| StoredObject {
            metadata,
            payload: match payload {
                Payload::Whole(bytes) => futures::stream::once(async move { Ok(bytes) }).boxed(),
                Payload::File(file) => tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(file),
                    READ_CHUNK,
                )
                .boxed(),
            },
        }))
    }

    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        let path = self.object_path(&Self::digest(id));
        let id = id.clone();
        blocking(move || Ok(open_object(&path, &id)?.map(|(_, metadata, _)| metadata))).await
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        let digest = Self::digest(id);
        let path = self.object_path(&digest);
        let _lock = self.stripe(&digest).lock().await;
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => fsync_dir(path.parent().expect("object paths have a parent"))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            Ok(())
        })
        .await
    }

    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let digest = Self::digest(id);
        let path = self.object_path(&digest);
        let temp = Self::temp_path(&path);
        let id = id.clone();
        let expected = expected.clone();
        let metadata = metadata.clone();
        let _lock = self.stripe(&digest).lock().await;
        blocking(move || {
            let Some((mut file, current, offset)) = open_object(&path, &id)? else {
                return Ok(false);
            };
            if !same_version(&current, &expected) {
                return Ok(false);
            }
            let guard = TempGuard(Some(temp.clone()));
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            out.write_all(&encode_header(&id, &metadata))?;
            file.seek(SeekFrom::Start(offset))?;
            io::copy(&mut file, &mut out)?;
            out.sync_all()?;
            drop(out);
            publish(&temp, &path)?;
            std::mem::forget(guard);
            Ok(true)
        })
        .await
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        let mut removed = 0;
        for shard in 0..=255u8 {
            let dir = self.root.join("objects").join(format!("{shard:02x}"));
            let expired: Vec<(PathBuf, ObjectId)> = blocking(move || {
                let mut expired = Vec::new();
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(expired),
                    Err(e) => return Err(e.into()),
                };
                for entry in entries.flatten() {
                    if is_temp(&entry.path()) {
                        continue;
                    }
                    let Ok(mut file) = File::open(entry.path()) else {
                        continue;
                    };
                    if let Ok((header, _)) = read_header(&mut file) {
                        if header.metadata.is_expired(now) {
                            expired.push((entry.path(), header.id));
                        }
                    }
                }
                Ok(expired)
            })
            .await?;
            for (path, id) in expired {
                // Re-check under the lock: the object may have been overwritten meanwhile.
                let digest = Self::digest(&id);
                let _lock = self.stripe(&digest).lock().await;
                let gone = blocking(move || match open_object(&path, &id)? {
                    Some((_, meta, _)) if meta.is_expired(now) => {
                        std::fs::remove_file(&path)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                })
                .await?;
                removed += u64::from(gone);
            }
        }
        Ok(removed)
    }
}
