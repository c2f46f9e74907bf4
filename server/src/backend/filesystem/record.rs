//! The object log's record codec: segment headers, record framing and checksums (the
//! layout is described in [`super::log`]). Pure bytes in, bytes out, so it is tested and
//! fuzzed without files.

use bytes::Bytes;

use super::codec::FORMAT_VERSION;

pub(super) const MAGIC: u32 = u32::from_le_bytes(*b"SLG1");
/// Magic, body length and checksum.
pub(super) const PREFIX: usize = 12;
/// Sequence number, kind, id and metadata lengths.
pub(super) const BODY_HEADER: usize = 8 + 1 + 1 + 4 + 4;
/// No record is larger than this; a longer length is corruption, not a reason to allocate.
pub(super) const MAX_BODY: usize = 64 << 20;
/// Set in the kind byte of the first record of a commit.
pub(super) const COMMIT_START: u8 = 0x80;
/// Offset of the kind byte in an encoded record.
pub(super) const KIND_AT: usize = PREFIX + 9;
/// The start of every segment written with a nonce.
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"STRSEG\x00\x01";
/// Bytes of a segment's random nonce, mixed into every record checksum.
pub(super) const NONCE: usize = 16;
/// Segment magic and nonce.
pub(super) const SEGMENT_HEADER: usize = SEGMENT_MAGIC.len() + NONCE;

/// A segment's checksum key: `None` for a segment from before nonces.
pub(super) type Nonce = Option<[u8; NONCE]>;

/// The checksum of a record body in a segment with `nonce`.
pub(super) fn checksum(nonce: &Nonce, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if let Some(nonce) = nonce {
        hasher.update(nonce);
    }
    hasher.update(body);
    hasher.finalize()
}

/// The nonce in a segment's first bytes and where its records start: a segment from
/// before nonces (or a header torn while the segment was created) has none.
pub(super) fn parse_header(bytes: &[u8]) -> (Nonce, usize) {
    match bytes.get(..SEGMENT_HEADER) {
        Some(header) if header.starts_with(SEGMENT_MAGIC) => (
            Some(
                header[SEGMENT_MAGIC.len()..]
                    .try_into()
                    .expect("nonce bytes"),
            ),
            SEGMENT_HEADER,
        ),
        _ => (None, 0),
    }
}

/// Decodes a whole segment file (header, then records up to the end) and returns how
/// many records it holds: the entry point of the record-decoder fuzz target. Never
/// panics, whatever the bytes.
pub fn decode_segment(bytes: &[u8]) -> Result<usize, String> {
    let bytes = Bytes::copy_from_slice(bytes);
    let (nonce, start) = parse_header(&bytes);
    let scan = scan(&bytes, start, &nonce, false);
    match scan.end {
        ScanEnd::Clean => Ok(scan.records.len()),
        ScanEnd::Torn { at, error } | ScanEnd::Corrupt { at, error } => {
            Err(format!("record at offset {at}: {error:?}"))
        }
    }
}

/// A record found by [`scan`], with where it sits in the segment.
#[derive(Debug)]
pub(super) struct Scanned {
    pub(super) record: Record,
    pub(super) offset: usize,
    pub(super) len: usize,
}

/// How a segment's records ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ScanEnd {
    /// Every byte up to the end was a record.
    Clean,
    /// The newest segment ends in bytes of a commit that never completed (a crash
    /// mid-write): nothing after `at` was acknowledged, so it may be cut off.
    Torn { at: usize, error: DecodeError },
    /// Bad bytes at `at` that a crash cannot explain: an older segment, or a valid later
    /// commit follows them, so acknowledged data would be lost by cutting there.
    Corrupt { at: usize, error: DecodeError },
}

/// The records of one segment from `start`, and how they ended: what recovery reads.
/// Only the newest segment (`newest`) can end torn, and only when no valid commit start
/// (sealed with this segment's nonce, so payload bytes cannot pose as one) follows the
/// damage.
pub(super) fn scan(bytes: &Bytes, start: usize, nonce: &Nonce, newest: bool) -> Scan {
    let mut records = Vec::new();
    let mut offset = start;
    while offset < bytes.len() {
        match decode(&bytes.slice(offset..), nonce) {
            Ok((record, len)) => {
                records.push(Scanned {
                    record,
                    offset,
                    len,
                });
                offset += len;
            }
            Err(error) => {
                let end = if newest && !later_commit(bytes, offset + 1, nonce) {
                    ScanEnd::Torn { at: offset, error }
                } else {
                    ScanEnd::Corrupt { at: offset, error }
                };
                return Scan { records, end };
            }
        }
    }
    Scan {
        records,
        end: ScanEnd::Clean,
    }
}

/// The outcome of [`scan`].
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) records: Vec<Scanned>,
    pub(super) end: ScanEnd,
}

/// Whether a valid record that began a commit starts at or after `from`: proof that
/// whatever is damaged before it had already been acknowledged.
fn later_commit(bytes: &Bytes, from: usize, nonce: &Nonce) -> bool {
    let magic = MAGIC.to_le_bytes();
    (from..bytes.len().saturating_sub(PREFIX)).any(|at| {
        bytes[at..at + 4] == magic
            && matches!(decode(&bytes.slice(at..), nonce), Ok((record, _)) if record.commit_start)
    })
}

/// What a record says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The object, with metadata and payload, lives in this record.
    Put = 1,
    /// The object was deleted.
    Delete = 2,
    /// The object lives in its own file (too large for the log).
    External = 3,
    /// New metadata for the object in its own file whose file id is the payload; it
    /// outranks the file's header, so a metadata change never copies the file.
    Meta = 4,
    /// New metadata for a logged object whose payload stays where it is: the payload
    /// field is a [`PayloadRef`] to the `Put` record that holds it, so a metadata change
    /// (a PATCH, a TTI bump) never copies the payload. Compaction turns the pair back
    /// into one `Put` (with this record's sequence number) when it moves either.
    MetaRef = 5,
}

impl Kind {
    fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Put),
            2 => Some(Self::Delete),
            3 => Some(Self::External),
            4 => Some(Self::Meta),
            5 => Some(Self::MetaRef),
            _ => None,
        }
    }
}

/// Where a `MetaRef` record's payload is: the `Put` record holding it, by segment id,
/// offset and length, and its sequence number (checked when it is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PayloadRef {
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) seq: u64,
}

impl PayloadRef {
    /// Encoded size: segment u64 | offset u64 | len u32 | seq u64, little-endian.
    pub(super) const BYTES: usize = 8 + 8 + 4 + 8;

    pub(super) fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0; Self::BYTES];
        out[..8].copy_from_slice(&self.segment.to_le_bytes());
        out[8..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..20].copy_from_slice(&self.len.to_le_bytes());
        out[20..].copy_from_slice(&self.seq.to_le_bytes());
        out
    }

    /// `None` unless `bytes` is exactly one encoded reference.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::BYTES] = bytes.try_into().ok()?;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        Some(Self {
            segment: u64_at(0),
            offset: u64_at(8),
            len: u32_at(bytes, 16),
            seq: u64_at(20),
        })
    }
}

/// A record decoded from the log; byte fields share the buffer it was read into.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) seq: u64,
    pub(super) kind: Kind,
    /// Whether this record began a commit.
    pub(super) commit_start: bool,
    /// The object id's canonical bytes, exactly as hashed for its digest.
    pub(super) id_bytes: Bytes,
    /// The stored metadata (`Put` and `External`).
    pub(super) metadata_bytes: Bytes,
    /// The payload (`Put` only).
    pub(super) payload: Bytes,
}

/// Why bytes did not decode as a record.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DecodeError {
    /// The buffer ends inside the record (a torn tail).
    Incomplete,
    /// The bytes are not a valid record.
    Corrupt(String),
}

/// Encodes a record whose sequence number the log assigns when it commits it.
pub(super) fn encode(
    kind: Kind,
    id_bytes: &[u8],
    metadata_bytes: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let body_len = BODY_HEADER + id_bytes.len() + metadata_bytes.len() + payload.len();
    let mut out = Vec::with_capacity(PREFIX + body_len);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&0u64.to_le_bytes());
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&(id_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&(metadata_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(id_bytes);
    out.extend_from_slice(metadata_bytes);
    out.extend_from_slice(payload);
    out
}

/// Sets the sequence number and commit-start mark of an encoded record and seals it with
/// its checksum for a segment with `nonce`.
pub(super) fn seal(record: &mut [u8], seq: u64, commit_start: bool, nonce: &Nonce) {
    record[PREFIX..PREFIX + 8].copy_from_slice(&seq.to_le_bytes());
    if commit_start {
        record[KIND_AT] |= COMMIT_START;
    } else {
        record[KIND_AT] &= !COMMIT_START;
    }
    let crc = checksum(nonce, &record[PREFIX..]);
    record[8..12].copy_from_slice(&crc.to_le_bytes());
}

pub(super) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes the record at the start of `buf`, from a segment with `nonce`; returns it and
/// its encoded length.
pub(super) fn decode(buf: &Bytes, nonce: &Nonce) -> Result<(Record, usize), DecodeError> {
    if buf.len() < PREFIX {
        return Err(DecodeError::Incomplete);
    }
    if u32_at(buf, 0) != MAGIC {
        return Err(DecodeError::Corrupt("bad record magic".to_owned()));
    }
    let body_len = u32_at(buf, 4) as usize;
    if !(BODY_HEADER..=MAX_BODY).contains(&body_len) {
        return Err(DecodeError::Corrupt(format!(
            "record body of {body_len} bytes"
        )));
    }
    let total = PREFIX + body_len;
    if buf.len() < total {
        return Err(DecodeError::Incomplete);
    }
    let body = &buf[PREFIX..total];
    if checksum(nonce, body) != u32_at(buf, 8) {
        return Err(DecodeError::Corrupt("record checksum mismatch".to_owned()));
    }
    let seq = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
    if body[8] != FORMAT_VERSION {
        return Err(DecodeError::Corrupt(format!(
            "record of format version {}",
            body[8]
        )));
    }
    let kind = Kind::from_u8(body[9] & !COMMIT_START)
        .ok_or_else(|| DecodeError::Corrupt(format!("record kind {}", body[9])))?;
    let commit_start = body[9] & COMMIT_START != 0;
    let id_len = u32_at(body, 10) as usize;
    let meta_len = u32_at(body, 14) as usize;
    if BODY_HEADER + id_len + meta_len > body_len {
        return Err(DecodeError::Corrupt(
            "record field lengths overrun".to_owned(),
        ));
    }
    let id_start = PREFIX + BODY_HEADER;
    let meta_start = id_start + id_len;
    let payload_start = meta_start + meta_len;
    Ok((
        Record {
            seq,
            kind,
            commit_start,
            id_bytes: buf.slice(id_start..meta_start),
            metadata_bytes: buf.slice(meta_start..payload_start),
            payload: buf.slice(payload_start..total),
        },
        total,
    ))
}
