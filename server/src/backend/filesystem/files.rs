//! Object files: one file per large object, `<root>/objects/<xx>/<sha256>`, with the
//! metadata in a header inside the same file so payload and metadata change together.
//!
//! Header (format v1, little-endian), then the payload:
//!
//! ```text
//! "STRATAOB" | format version u8 | file id [u8; 16] | id_len u32 | meta_len u32 | id
//! | metadata
//! ```
//!
//! `id` is the id's canonical bytes (whose SHA-256 names the file) and `metadata` its
//! stored form ([`super::codec`]). The file id is random per written file: a metadata
//! change is a log record naming it (the payload is never copied), so after a crash a
//! record meant for a file that has since been replaced does not apply to its successor.
//!
//! Crash safety: a write goes to a fresh temp file beside the object's file, which is
//! fsynced, renamed over the object's file and followed by an fsync of the directory.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::backend::{BackendError, Payload};
use crate::object::{Metadata, ObjectId};

use super::codec::{self, FORMAT_VERSION};
use super::Digest;

const MAGIC: &[u8; 8] = b"STRATAOB";
/// Bytes of a file id.
pub(super) const FILE_ID: usize = 16;
/// Magic, version, file id and the two lengths.
const HEADER_PREFIX: usize = 8 + 1 + FILE_ID + 4 + 4;

/// Identifies one written object file (see the module documentation).
pub(super) type FileId = [u8; FILE_ID];
/// Upper bound on a header, so a corrupt length cannot make us allocate gigabytes.
const MAX_HEADER: u32 = 16 * 1024 * 1024;
const TEMP_SUFFIX: &str = ".tmp";
/// Files up to this size are read whole by one blocking call.
const READ_WHOLE: u64 = 128 * 1024;

/// A decoded object-file header.
pub(super) struct Header {
    pub(super) file_id: FileId,
    /// The id's canonical bytes.
    pub(super) id: Vec<u8>,
    pub(super) metadata: Metadata,
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest an object file is named after, or `None` for any other file name.
pub(super) fn parse_digest(name: &str) -> Option<Digest> {
    if name.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// Where the object with `digest` lives when it has a file of its own.
pub(super) fn object_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = hex(digest);
    root.join("objects").join(&hex[..2]).join(hex)
}

/// A fresh temp file beside `target`, so the rename stays within one directory.
pub(super) fn temp_path(target: &Path) -> PathBuf {
    target
        .parent()
        .expect("object paths have a parent")
        .join(format!(".{}{TEMP_SUFFIX}", uuid::Uuid::new_v4()))
}

fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
}

/// Creates the shard directories, removes temp files left by a crash (they were never
/// acknowledged) and returns the digest of every object file.
pub(super) fn init_objects(root: &Path) -> io::Result<Vec<Digest>> {
    let objects = root.join("objects");
    std::fs::create_dir_all(&objects)?;
    let mut digests = Vec::new();
    for i in 0..=255u8 {
        let shard = objects.join(format!("{i:02x}"));
        std::fs::create_dir_all(&shard)?;
        for entry in std::fs::read_dir(&shard)? {
            let path = entry?.path();
            if is_temp(&path) {
                let _ = std::fs::remove_file(path);
            } else if let Some(digest) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_digest)
            {
                digests.push(digest);
            }
        }
    }
    fsync_dir(&objects)?;
    fsync_dir(root)?;
    Ok(digests)
}

pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The header bytes that start an object file.
pub(super) fn encode_header(id: &ObjectId, metadata: &Metadata) -> Vec<u8> {
    let id = codec::encode_id(id);
    let metadata = codec::encode_metadata(metadata);
    let mut out = Vec::with_capacity(HEADER_PREFIX + id.len() + metadata.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&id);
    out.extend_from_slice(&metadata);
    out
}

/// Reads the header at the start of an object; returns it and the payload offset.
pub(super) fn read_header(file: &mut impl Read) -> Result<(Header, u64), BackendError> {
    let mut prefix = [0u8; HEADER_PREFIX];
    file.read_exact(&mut prefix)
        .map_err(|e| BackendError::Corrupt(format!("short header: {e}")))?;
    if &prefix[..8] != MAGIC {
        return Err(BackendError::Corrupt("bad magic".to_owned()));
    }
    if prefix[8] != FORMAT_VERSION {
        return Err(BackendError::Corrupt(format!(
            "object file of format version {}",
            prefix[8]
        )));
    }
    let file_id: FileId = prefix[9..9 + FILE_ID].try_into().expect("file id bytes");
    let at = 9 + FILE_ID;
    let id_len = u32::from_le_bytes(prefix[at..at + 4].try_into().expect("4 bytes"));
    let meta_len = u32::from_le_bytes(prefix[at + 4..at + 8].try_into().expect("4 bytes"));
    let len = u64::from(id_len) + u64::from(meta_len);
    if len > u64::from(MAX_HEADER) {
        return Err(BackendError::Corrupt(format!("header of {len} bytes")));
    }
    let mut id = vec![0u8; id_len as usize];
    let mut metadata = vec![0u8; meta_len as usize];
    file.read_exact(&mut id)
        .and_then(|()| file.read_exact(&mut metadata))
        .map_err(|e| BackendError::Corrupt(format!("short header: {e}")))?;
    let metadata = codec::decode_metadata(&metadata)
        .map_err(|e| BackendError::Corrupt(format!("bad header: {e}")))?;
    Ok((
        Header {
            file_id,
            id,
            metadata,
        },
        HEADER_PREFIX as u64 + len,
    ))
}

/// Opens an object file and reads its header (metadata as written there, payload offset
/// and file id); `None` when the file does not exist.
pub(super) fn open_object(
    path: &Path,
    id: &ObjectId,
) -> Result<Option<(File, Metadata, u64, FileId)>, BackendError> {
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
    Ok(Some((file, metadata, offset, header.file_id)))
}

/// Opens an object for reading in one blocking call: small files are read whole, large
/// ones are handed out open, to be streamed from wherever a range starts.
pub(super) fn read_object(
    path: &Path,
    id: &ObjectId,
) -> Result<Option<(Metadata, Payload, FileId)>, BackendError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len <= READ_WHOLE {
        let mut whole = Vec::with_capacity(len as usize);
        file.read_to_end(&mut whole)?;
        let (header, offset) = read_header(&mut whole.as_slice())?;
        check_id(&header, id)?;
        let mut metadata = header.metadata;
        let payload = bytes::Bytes::from(whole).slice(offset as usize..);
        metadata.size = Some(payload.len() as u64);
        return Ok(Some((metadata, Payload::Bytes(payload), header.file_id)));
    }
    let (header, offset) = read_header(&mut file)?;
    check_id(&header, id)?;
    let mut metadata = header.metadata;
    let size = len.saturating_sub(offset);
    metadata.size = Some(size);
    Ok(Some((
        metadata,
        Payload::File {
            file,
            offset,
            len: size,
        },
        header.file_id,
    )))
}

fn check_id(header: &Header, id: &ObjectId) -> Result<(), BackendError> {
    if header.id != codec::encode_id(id) {
        return Err(BackendError::Corrupt(
            "digest collision or misplaced file".to_owned(),
        ));
    }
    Ok(())
}

/// Moves a finished temp file into place durably.
pub(super) fn publish(temp: &Path, target: &Path) -> io::Result<()> {
    std::fs::rename(temp, target)?;
    fsync_dir(target.parent().expect("object paths have a parent"))
}

/// Why a staged file cannot be adopted, so the caller copies it instead.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotAdoptable {
    /// Staging and objects are on different filesystems (a hard link cannot cross).
    #[error("staged file is on another filesystem")]
    OtherFilesystem,
    /// The staged file's header is not this object's (another id, other metadata, or
    /// written by a release whose header encoding differs).
    #[error("staged file's header does not match the object: {0}")]
    Header(String),
}

/// Makes a staged upload's file, laid out as an object file (header first) since its
/// session was created, the object's file without copying it: checks the header, hard
/// links the file beside `target`, renames the link over `target` and fsyncs the
/// directory. The staged name is left in place, so until the caller has committed the
/// `External` marker a crash leaves the session's bytes where the session finds them
/// (recovery may remove `target` as superseded; the inode lives on under the staged
/// name). Neither name is ever written again: a complete session takes no more bytes and
/// object files are never modified in place. Returns the payload size.
pub(super) fn adopt(
    staged: &Path,
    target: &Path,
    id: &ObjectId,
    metadata: &Metadata,
    header_len: u64,
) -> Result<Result<u64, NotAdoptable>, BackendError> {
    use std::os::unix::fs::MetadataExt as _;
    let mut file = File::open(staged)?;
    // The header is synced with the session's first chunk, not at create: bytes lost
    // in a crash before then are not an object header, and the payload is copied.
    let (header, offset) = match read_header(&mut file) {
        Ok(read) => read,
        Err(err) => return Ok(Err(NotAdoptable::Header(err.to_string()))),
    };
    if header.id != codec::encode_id(id) {
        return Ok(Err(NotAdoptable::Header("another object id".to_owned())));
    }
    if offset != header_len {
        return Ok(Err(NotAdoptable::Header(format!(
            "{offset} header bytes, the session recorded {header_len}"
        ))));
    }
    if codec::encode_metadata(&header.metadata) != codec::encode_metadata(metadata) {
        return Ok(Err(NotAdoptable::Header("other metadata".to_owned())));
    }
    let stat = file.metadata()?;
    let size = stat.len() - offset;
    drop(file);
    let dir = target.parent().expect("object paths have a parent");
    // A retry after a crash that came after the rename: already in place.
    if let Ok(current) = std::fs::metadata(target) {
        if (current.dev(), current.ino()) == (stat.dev(), stat.ino()) {
            fsync_dir(dir)?;
            return Ok(Ok(size));
        }
    }
    let temp = temp_path(target);
    match std::fs::hard_link(staged, &temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            return Ok(Err(NotAdoptable::OtherFilesystem))
        }
        Err(e) => return Err(e.into()),
    }
    let mut guard = TempGuard(Some(temp.clone()));
    publish(&temp, target)?;
    guard.0 = None;
    Ok(Ok(size))
}

/// Removes an object file; a missing file is fine.
pub(super) fn remove(path: &Path, durable: bool) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) if durable => fsync_dir(path.parent().expect("object paths have a parent")),
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a temp file when a write did not complete.
pub(super) struct TempGuard(pub(super) Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names_round_trip_and_other_names_are_ignored() {
        let digest: Digest = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(parse_digest(&hex(&digest)), Some(digest));
        assert_eq!(parse_digest("LOCK"), None);
        assert_eq!(parse_digest(&"zz".repeat(32)), None);
        assert_eq!(parse_digest(&format!(".{}", &hex(&digest)[1..])), None);
    }
}
