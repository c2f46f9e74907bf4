//! The object log: small objects, tombstones and markers appended to segment files, made
//! durable by group commit.
//!
//! Why a log: a small write that creates, fsyncs and renames a file of its own pays a
//! journal commit and several metadata updates per object, which dominates the cost of a
//! 4 KiB PUT. Appending records to one open file and syncing once for every write that
//! arrived in the meantime makes a batch of concurrent writes durable at the cost of one.
//!
//! Segment and record layout (little-endian), self-checking so a torn tail is detected:
//!
//! ```text
//! segment: "STRSEG\0\x01" | nonce [u8; 16] | record*
//! record:  magic u32 | body_len u32 | crc32(nonce | body) u32 | body:
//!   seq u64 | format version u8 | kind u8 | id_len u32 | meta_len u32 | id | metadata
//!   | payload
//! ```
//!
//! `id` is the id's canonical bytes and `metadata` its stored form ([`super::codec`],
//! format v1; `docs/storage-format.md`).
//!
//! The top bit of `kind` marks the first record of each commit. After a crash only the
//! last commit can be torn, so a bad record followed by the start of a later commit is
//! corruption of acknowledged data (the server refuses to start), while a bad record
//! with no later commit is a torn tail (cut off). Finding that later commit means
//! scanning raw bytes, payloads included; the checksum covers the segment's random
//! nonce, which no client ever sees, so a record forged inside a payload does not pass
//! for a commit and cannot make the server refuse to start. A segment without the header
//! (its creation was torn) decodes with a plain `crc32(body)`; new records always go to
//! a segment with a nonce.
//!
//! Every record carries a sequence number, unique and increasing in commit order; a copy
//! made by compaction keeps the original's. For each key the record with the highest
//! sequence number is the truth, wherever it sits in the log (on a tie, which only a
//! `MetaRef` and its rewrite by compaction share, the later one).

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use parking_lot::RwLock;

use super::record::*;
use super::store::digest_of;
use super::Digest;
use crate::metrics::StorageMetrics;

/// Most bytes one commit writes, so one sync never waits behind an unbounded batch.
const MAX_BATCH: usize = 8 << 20;
const SEGMENT_SUFFIX: &str = ".seg";

/// One segment file; records are immutable once committed, so readers need no locks.
#[derive(Debug)]
pub(super) struct Segment {
    /// Position in the log; later segments have larger ids.
    pub(super) id: u64,
    path: PathBuf,
    file: File,
    /// Mixed into every record checksum of this segment.
    pub(super) nonce: Nonce,
    /// Where the first record starts (after the header).
    pub(super) start: u64,
    /// Bytes of records that are the current version of their object.
    pub(super) live: AtomicU64,
    /// Bytes committed so far (final once the segment is sealed).
    pub(super) size: AtomicU64,
    /// The lowest sequence number of any record in the segment.
    pub(super) min_seq: AtomicU64,
    /// The first 8 bytes of the digest of every key with a record here, so compaction
    /// can tell whether a tombstone still shadows an older record (a false positive only
    /// keeps a tombstone longer).
    keys: parking_lot::Mutex<HashSet<u64>>,
}

impl Segment {
    /// Opens a segment; a created one gets a fresh random nonce in its header (the
    /// caller syncs it).
    fn open(path: PathBuf, id: u64, create: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(&path)?;
        let (nonce, start) = if create {
            let nonce = *uuid::Uuid::new_v4().as_bytes();
            let mut header = SEGMENT_MAGIC.to_vec();
            header.extend_from_slice(&nonce);
            file.write_all_at(&header, 0)?;
            (Some(nonce), SEGMENT_HEADER)
        } else {
            let mut header = [0; SEGMENT_HEADER];
            let len = file.metadata()?.len();
            if len >= SEGMENT_HEADER as u64 {
                file.read_exact_at(&mut header, 0)?;
            }
            parse_header(&header)
        };
        let size = file.metadata()?.len();
        Ok(Self {
            id,
            path,
            file,
            nonce,
            start: start as u64,
            live: AtomicU64::new(0),
            size: AtomicU64::new(size),
            min_seq: AtomicU64::new(u64::MAX),
            keys: parking_lot::Mutex::new(HashSet::new()),
        })
    }

    /// Whether this segment may hold a record for `digest`.
    pub(super) fn may_hold(&self, digest: &Digest) -> bool {
        self.keys.lock().contains(&key_of(digest))
    }

    fn note(&self, digests: impl IntoIterator<Item = u64>) {
        self.keys.lock().extend(digests);
    }

    /// Reads `len` committed bytes at `offset`.
    pub(super) fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }

    /// Reads the whole segment (for recovery and compaction).
    pub(super) fn read_all(&self) -> io::Result<Bytes> {
        let len = self.file.metadata()?.len() as usize;
        self.read(0, len)
    }

    /// Counts `bytes` of this segment as no longer current.
    pub(super) fn release(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes that compaction would reclaim.
    pub(super) fn dead(&self) -> u64 {
        self.size
            .load(Ordering::Relaxed)
            .saturating_sub(self.live.load(Ordering::Relaxed))
    }
}

/// Where a committed record lives.
#[derive(Debug, Clone)]
pub(super) struct Location {
    pub(super) segment: Arc<Segment>,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) seq: u64,
}

/// The segments of a log, oldest first.
pub(super) type Segments = Arc<RwLock<BTreeMap<u64, Arc<Segment>>>>;

/// What the writer thread is asked to do.
enum Message {
    Append(Append),
    /// Makes the writer thread panic (tests of a dead writer).
    #[cfg(test)]
    Panic,
}

struct Append {
    record: Vec<u8>,
    /// A copy keeps its sequence number and checksum; a fresh record gets both.
    fresh: bool,
    reply: tokio::sync::oneshot::Sender<io::Result<Vec<Location>>>,
    /// Boundaries of the records inside `record` (one entry for a single record).
    lengths: Vec<usize>,
}

/// The append side of the log: a thread that commits batches of records.
#[derive(Debug)]
pub(super) struct Log {
    tx: mpsc::Sender<Message>,
    segments: Segments,
    /// False once the writer thread has exited (a panic): no write can commit any more.
    alive: Arc<AtomicBool>,
    dir: PathBuf,
    metrics: StorageMetrics,
}

fn key_of(digest: &Digest) -> u64 {
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The key of the record at the start of `record` (already checked to be well formed).
fn record_key(record: &[u8]) -> u64 {
    let id_len = u32_at(record, PREFIX + 10) as usize;
    let id = &record[PREFIX + BODY_HEADER..PREFIX + BODY_HEADER + id_len];
    key_of(&digest_of(id))
}

/// Segment file name for `id`.
fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}{SEGMENT_SUFFIX}"))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Opens the log in `dir` (creating it), hands every record in log order to `visit`
    /// and truncates a torn tail of the newest segment; corruption anywhere else is an
    /// error. Segments are read one at a time, so memory stays bounded by one segment.
    pub(super) fn open(
        dir: PathBuf,
        segment_bytes: u64,
        metrics: StorageMetrics,
        mut visit: impl FnMut(Record, Location),
    ) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
                continue;
            };
            if let Ok(id) = u64::from_str_radix(hex, 16) {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut segments = BTreeMap::new();
        let mut next_seq = 1;
        for (n, &id) in ids.iter().enumerate() {
            let segment = Arc::new(Segment::open(segment_path(&dir, id), id, false)?);
            let bytes = segment.read_all()?;
            let newest = n + 1 == ids.len();
            let scan = scan(&bytes, segment.start as usize, &segment.nonce, newest);
            for Scanned {
                record,
                offset,
                len,
            } in scan.records
            {
                next_seq = next_seq.max(record.seq + 1);
                segment.min_seq.fetch_min(record.seq, Ordering::Relaxed);
                segment.note([key_of(&digest_of(&record.id_bytes))]);
                let location = Location {
                    segment: segment.clone(),
                    offset: offset as u64,
                    len: len as u32,
                    seq: record.seq,
                };
                visit(record, location);
            }
            let offset = match scan.end {
                ScanEnd::Clean => bytes.len(),
                ScanEnd::Torn { at, error } => {
                    // A crash mid-commit leaves a torn tail; it was never acknowledged.
                    tracing::warn!(
                        segment = %segment.path.display(),
                        offset = at,
                        error = ?error,
                        "truncating a torn log tail"
                    );
                    segment.file.set_len(at as u64)?;
                    segment.file.sync_all()?;
                    at
                }
                ScanEnd::Corrupt { at, error } => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "log segment {} is corrupt at offset {at}: {error:?}",
                            segment.path.display()
                        ),
                    ));
                }
            };
            segment.size.store(offset as u64, Ordering::Relaxed);
            segments.insert(id, segment);
        }

        let active = match segments.last_key_value() {
            Some((_, segment)) if segment.nonce.is_some() => segment.clone(),
            // New records only go to a segment with a nonce: start one after the last.
            last => {
                let id = last.map_or(1, |(id, _)| id + 1);
                let segment = Arc::new(Segment::open(segment_path(&dir, id), id, true)?);
                segment.file.sync_all()?;
                fsync_dir(&dir)?;
                segments.insert(id, segment.clone());
                segment
            }
        };
        metrics.log_segments.set(segments.len() as i64);
        metrics.log_bytes.set(
            segments
                .values()
                .map(|s| s.size.load(Ordering::Relaxed) as i64)
                .sum(),
        );
        let segments: Segments = Arc::new(RwLock::new(segments));
        let (tx, rx) = mpsc::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            dir: dir.clone(),
            segments: segments.clone(),
            offset: active.size.load(Ordering::Relaxed),
            active,
            next_seq,
            segment_bytes,
            failed: None,
            metrics: metrics.clone(),
        };
        let guard = AliveGuard {
            alive: alive.clone(),
            gauge: metrics.writer_alive.clone(),
        };
        metrics.writer_alive.set(1);
        std::thread::Builder::new()
            .name("strata-log".to_owned())
            .spawn(move || {
                let _guard = guard;
                writer.run(rx)
            })?;
        Ok(Self {
            tx,
            segments,
            alive,
            dir,
            metrics,
        })
    }

    /// Commits one fresh record; returns where it lives once it is durable.
    pub(super) async fn append(&self, record: Vec<u8>) -> io::Result<Location> {
        let len = record.len();
        let mut locations = self.submit(record, vec![len], true).await?;
        Ok(locations.pop().expect("one record, one location"))
    }

    /// Commits copies of already sealed records (compaction), keeping their sequence
    /// numbers; `records` is their concatenation and `lengths` their sizes.
    pub(super) async fn append_copies(
        &self,
        records: Vec<u8>,
        lengths: Vec<usize>,
    ) -> io::Result<Vec<Location>> {
        if lengths.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(records, lengths, false).await
    }

    /// Queues one fresh record without waiting: records queued one after another get
    /// increasing sequence numbers and commit in that order, so a caller can fix a
    /// write's place in the log under a key's lock and wait for durability after
    /// releasing it (same-key writes then share group commits).
    pub(super) fn enqueue(&self, record: Vec<u8>) -> io::Result<Pending> {
        let len = record.len();
        self.send(record, vec![len], true).map(Pending)
    }

    fn send(
        &self,
        record: Vec<u8>,
        lengths: Vec<usize>,
        fresh: bool,
    ) -> io::Result<tokio::sync::oneshot::Receiver<io::Result<Vec<Location>>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Message::Append(Append {
                record,
                fresh,
                reply,
                lengths,
            }))
            .map_err(|_| io::Error::other("log writer stopped"))?;
        Ok(rx)
    }

    async fn submit(
        &self,
        record: Vec<u8>,
        lengths: Vec<usize>,
        fresh: bool,
    ) -> io::Result<Vec<Location>> {
        wait(self.send(record, lengths, fresh)?).await
    }

    /// Whether the writer thread still runs; when it does not, nothing can be written
    /// and the server must not count as ready.
    pub(super) fn writer_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Makes the writer thread panic, as a bug in it would.
    #[cfg(test)]
    pub(super) fn panic_writer(&self) {
        let _ = self.tx.send(Message::Panic);
    }

    /// The current segments, oldest first.
    pub(super) fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments.read().values().cloned().collect()
    }

    /// Removes a segment whose records are all copied or dead.
    pub(super) fn remove(&self, segment: &Segment) -> io::Result<()> {
        self.segments.write().remove(&segment.id);
        self.metrics.log_segments.dec();
        self.metrics
            .log_bytes
            .sub(segment.size.load(Ordering::Relaxed) as i64);
        std::fs::remove_file(&segment.path)?;
        fsync_dir(&self.dir)
    }
}

/// A record queued by [`Log::enqueue`]: its place in the log is fixed, its commit is not
/// yet known.
pub(super) struct Pending(tokio::sync::oneshot::Receiver<io::Result<Vec<Location>>>);

impl Pending {
    /// Waits until the record is durable; returns where it lives.
    pub(super) async fn durable(self) -> io::Result<Location> {
        let mut locations = wait(self.0).await?;
        Ok(locations.pop().expect("one record, one location"))
    }
}

async fn wait(
    rx: tokio::sync::oneshot::Receiver<io::Result<Vec<Location>>>,
) -> io::Result<Vec<Location>> {
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("log writer stopped")))
}

/// Reports the writer thread's end, however it ends (a panic included): the flag that
/// readiness checks and `strata_storage_writer_alive`.
struct AliveGuard {
    alive: Arc<AtomicBool>,
    gauge: prometheus::IntGauge,
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
        self.gauge.set(0);
        if std::thread::panicking() {
            tracing::error!(
                "object log writer thread panicked; no write can commit until a restart"
            );
        }
    }
}

/// Why a commit failed, and whether the log can go on after it.
struct Failure {
    err: io::Error,
    fatal: bool,
}

impl Failure {
    fn fatal(err: io::Error) -> Self {
        Self { err, fatal: true }
    }

    fn retryable(err: io::Error) -> Self {
        Self { err, fatal: false }
    }
}

/// The thread that owns the newest segment and commits batches to it.
struct Writer {
    dir: PathBuf,
    segments: Segments,
    active: Arc<Segment>,
    offset: u64,
    next_seq: u64,
    segment_bytes: u64,
    /// After a failed sync the file's state is unknown; every later append fails.
    failed: Option<String>,
    metrics: StorageMetrics,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut pending = None;
        loop {
            let first = match pending.take() {
                Some(first) => first,
                None => match rx.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            // Infallible outside tests, where `Panic` does not exist.
            #[allow(clippy::infallible_destructuring_match)]
            let first = match first {
                Message::Append(append) => append,
                #[cfg(test)]
                Message::Panic => panic!("injected log writer panic"),
            };
            let mut bytes = first.record.len();
            let mut batch = vec![first];
            while bytes < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Message::Append(next)) => {
                        bytes += next.record.len();
                        batch.push(next);
                    }
                    #[cfg(test)]
                    Ok(message @ Message::Panic) => {
                        pending = Some(message);
                        break;
                    }
                    Err(_) => break,
                }
            }
            match self.commit(&mut batch, bytes) {
                Ok(locations) => {
                    for (append, locations) in batch.into_iter().zip(locations) {
                        let _ = append.reply.send(Ok(locations));
                    }
                }
                Err(Failure { err, fatal }) => {
                    if fatal {
                        tracing::error!(%err, "object log sync failed; the log is now read-only");
                        self.failed = Some(err.to_string());
                        self.metrics.log_read_only.set(1);
                    } else {
                        tracing::warn!(%err, "object log write failed; nothing of it is kept");
                    }
                    for append in batch {
                        let _ = append
                            .reply
                            .send(Err(io::Error::new(err.kind(), err.to_string())));
                    }
                }
            }
        }
    }

    fn commit(
        &mut self,
        batch: &mut [Append],
        bytes: usize,
    ) -> Result<Vec<Vec<Location>>, Failure> {
        if let Some(failed) = &self.failed {
            return Err(Failure::fatal(io::Error::other(format!(
                "object log failed earlier: {failed}"
            ))));
        }
        if self.offset > self.active.start && self.offset + bytes as u64 > self.segment_bytes {
            self.roll().map_err(Failure::retryable)?;
        }
        let mut buf = Vec::with_capacity(bytes);
        let mut keys = Vec::with_capacity(batch.len());
        let mut locations = Vec::with_capacity(batch.len());
        for append in batch.iter_mut() {
            let mut placed = Vec::with_capacity(append.lengths.len());
            let mut start = 0;
            for &len in &append.lengths {
                let record = &mut append.record[start..start + len];
                let seq = if append.fresh {
                    self.next_seq += 1;
                    self.next_seq - 1
                } else {
                    u64::from_le_bytes(record[PREFIX..PREFIX + 8].try_into().expect("8 bytes"))
                };
                // Copies are resealed too: only this commit's first record may carry the mark.
                seal(record, seq, buf.is_empty(), &self.active.nonce);
                self.active.min_seq.fetch_min(seq, Ordering::Relaxed);
                keys.push(record_key(record));
                placed.push(Location {
                    segment: self.active.clone(),
                    offset: self.offset + buf.len() as u64,
                    len: len as u32,
                    seq,
                });
                buf.extend_from_slice(record);
                start += len;
            }
            locations.push(placed);
        }
        if let Err(err) = self.active.file.write_all_at(&buf, self.offset) {
            // A full disk, say: cut what did land, so no unacknowledged record survives,
            // and carry on with the next batch once there is room again.
            return Err(match self.active.file.set_len(self.offset) {
                Ok(()) => Failure::retryable(err),
                Err(_) => Failure::fatal(err),
            });
        }
        // After a failed sync the kernel may have dropped the dirty pages: what is on disk
        // is unknown, so nothing more may be acknowledged from this log.
        self.active.file.sync_data().map_err(Failure::fatal)?;
        self.offset += buf.len() as u64;
        self.active.note(keys);
        self.metrics.log_commits.inc();
        self.metrics
            .log_records
            .inc_by(locations.iter().map(|l| l.len() as u64).sum());
        self.metrics.log_bytes.add(buf.len() as i64);
        self.active.size.store(self.offset, Ordering::Relaxed);
        Ok(locations)
    }

    /// Seals the active segment and starts the next one, durably created before use. On
    /// failure the active segment stays as it was.
    fn roll(&mut self) -> io::Result<()> {
        let id = self.active.id + 1;
        let path = segment_path(&self.dir, id);
        let segment = Arc::new(Segment::open(path.clone(), id, true)?);
        if let Err(err) = segment.file.sync_all().and_then(|()| fsync_dir(&self.dir)) {
            let _ = std::fs::remove_file(&path);
            return Err(err);
        }
        self.segments.write().insert(id, segment.clone());
        self.metrics.log_segments.inc();
        self.metrics.log_bytes.add(SEGMENT_HEADER as i64);
        self.offset = segment.start;
        self.active = segment;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A location of sequence number `seq` in a fresh segment under `dir` (for tests of
    /// what only looks at locations).
    pub(in super::super) fn location(dir: &Path, seq: u64) -> Location {
        let segment = Segment::open(segment_path(dir, seq), seq, true).unwrap();
        Location {
            segment: Arc::new(segment),
            offset: SEGMENT_HEADER as u64,
            len: 1,
            seq,
        }
    }

    /// Opens a log, ignoring what it replays.
    fn open_quietly(path: PathBuf, segment_bytes: u64) -> Log {
        Log::open(
            path,
            segment_bytes,
            StorageMetrics::unregistered(),
            |_, _| {},
        )
        .unwrap()
    }

    fn sealed(kind: Kind, seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut record = encode(kind, br#"{"k":"a"}"#, br#"{"m":1}"#, payload);
        seal(&mut record, seq, true, &None);
        record
    }

    #[test]
    fn a_record_round_trips() {
        let bytes = Bytes::from(sealed(Kind::Put, 7, b"payload"));
        let (record, len) = decode(&bytes, &None).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(record.seq, 7);
        assert_eq!(record.kind, Kind::Put);
        assert_eq!(&record.id_bytes[..], br#"{"k":"a"}"#);
        assert_eq!(&record.metadata_bytes[..], br#"{"m":1}"#);
        assert_eq!(&record.payload[..], b"payload");
    }

    #[test]
    fn a_payload_reference_round_trips_and_only_at_its_exact_size() {
        let reference = PayloadRef {
            segment: 7,
            offset: 1 << 33,
            len: 70_000,
            seq: u64::MAX - 1,
        };
        let bytes = reference.encode();
        assert_eq!(PayloadRef::decode(&bytes), Some(reference));
        assert_eq!(PayloadRef::decode(&bytes[1..]), None);
        assert_eq!(PayloadRef::decode(&[bytes.as_slice(), &[0]].concat()), None);
        let record = Bytes::from(sealed(Kind::MetaRef, 3, &bytes));
        let (decoded, _) = decode(&record, &None).unwrap();
        assert_eq!(decoded.kind, Kind::MetaRef);
        assert_eq!(PayloadRef::decode(&decoded.payload), Some(reference));
    }

    #[test]
    fn every_truncation_is_incomplete_not_a_record() {
        let bytes = sealed(Kind::Put, 1, &[7; 100]);
        for cut in 0..bytes.len() {
            let torn = Bytes::copy_from_slice(&bytes[..cut]);
            assert_eq!(
                decode(&torn, &None).unwrap_err(),
                DecodeError::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let mut bytes = sealed(Kind::Delete, 3, b"");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            decode(&Bytes::from(bytes), &None),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn overrunning_field_lengths_are_corrupt() {
        let mut bytes = sealed(Kind::Put, 3, b"x");
        bytes[PREFIX + 10..PREFIX + 14].copy_from_slice(&1000u32.to_le_bytes());
        let crc = checksum(&None, &bytes[PREFIX..]);
        bytes[8..12].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(&Bytes::from(bytes), &None),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn commits_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let log = Log::open(
                path.clone(),
                1 << 20,
                StorageMetrics::unregistered(),
                |_, _| panic!("empty log"),
            )
            .unwrap();
            let a = log
                .append(encode(Kind::Put, b"\"a\"", b"{}", b"one"))
                .await
                .unwrap();
            let b = log
                .append(encode(Kind::Delete, b"\"a\"", b"", b""))
                .await
                .unwrap();
            assert!(b.seq > a.seq);
            assert_eq!(b.offset, a.offset + u64::from(a.len));
        }
        // A crash in the middle of a commit leaves half a record behind.
        let segment = segment_path(&path, 1);
        let mut half = sealed(Kind::Put, 99, b"torn");
        half.truncate(half.len() / 2);
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        std::io::Write::write_all(&mut file, &half).unwrap();
        drop(file);

        let mut seen = Vec::new();
        let log = Log::open(
            path.clone(),
            1 << 20,
            StorageMetrics::unregistered(),
            |r, _| seen.push((r.kind, r.seq)),
        )
        .unwrap();
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            [Kind::Put, Kind::Delete]
        );
        let c = log
            .append(encode(Kind::Put, b"\"c\"", b"{}", b"three"))
            .await
            .unwrap();
        assert_eq!(c.seq, seen[1].1 + 1);
        let record = c.segment.read(c.offset, c.len as usize).unwrap();
        assert_eq!(
            &decode(&record, &c.segment.nonce).unwrap().0.payload[..],
            b"three"
        );
    }

    /// Damages the first byte of the payload `b"MARK"` in segment 1.
    fn damage_marked_payload(path: &Path) {
        let segment = segment_path(path, 1);
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = bytes.windows(4).position(|w| w == b"MARK").unwrap();
        bytes[at] ^= 0xff;
        std::fs::write(&segment, bytes).unwrap();
    }

    #[tokio::test]
    async fn damage_before_a_later_commit_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let log = open_quietly(path.clone(), 1 << 20);
            for payload in [&b"one"[..], b"MARK", b"three"] {
                log.append(encode(Kind::Put, b"\"a\"", b"{}", payload))
                    .await
                    .unwrap();
            }
        }
        damage_marked_payload(&path);
        let err = Log::open(path, 1 << 20, StorageMetrics::unregistered(), |_, _| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[tokio::test]
    async fn damage_inside_the_last_commit_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let log = open_quietly(path.clone(), 1 << 20);
            log.append(encode(Kind::Put, b"\"a\"", b"{}", b"kept"))
                .await
                .unwrap();
            // One commit of two records; a crash could tear either.
            let mut both = encode(Kind::Put, b"\"b\"", b"{}", b"MARK");
            let first = both.len();
            both.extend(encode(Kind::Put, b"\"c\"", b"{}", b"later"));
            let second = both.len() - first;
            for (range, seq) in [(0..first, 90), (first..first + second, 91)] {
                seal(&mut both[range], seq, false, &None);
            }
            log.append_copies(both, vec![first, second]).await.unwrap();
        }
        damage_marked_payload(&path);
        let mut seen = Vec::new();
        Log::open(path, 1 << 20, StorageMetrics::unregistered(), |r, _| {
            seen.push(r.payload.to_vec())
        })
        .unwrap();
        assert_eq!(seen, [b"kept".to_vec()]);
    }

    #[tokio::test]
    async fn corruption_before_the_newest_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let log = open_quietly(path.clone(), 64);
            // Each record is larger than a segment, so each lands in its own.
            for key in ["\"a\"", "\"b\""] {
                log.append(encode(Kind::Put, key.as_bytes(), b"{}", &[1; 100]))
                    .await
                    .unwrap();
            }
            assert_eq!(log.segments().len(), 2);
        }
        let first = segment_path(&path, 1);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[40] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let err = Log::open(path, 64, StorageMetrics::unregistered(), |_, _| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[tokio::test]
    async fn copies_keep_their_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_quietly(dir.path().join("log"), 1 << 20);
        let original = log
            .append(encode(Kind::Put, b"\"a\"", b"{}", b"x"))
            .await
            .unwrap();
        log.append(encode(Kind::Put, b"\"b\"", b"{}", b"y"))
            .await
            .unwrap();
        let raw = original
            .segment
            .read(original.offset, original.len as usize)
            .unwrap();
        let copies = log
            .append_copies(raw.to_vec(), vec![raw.len()])
            .await
            .unwrap();
        assert_eq!(copies[0].seq, original.seq);
        let reread = copies[0].segment.read(copies[0].offset, raw.len()).unwrap();
        assert_eq!(reread, raw);
    }

    #[tokio::test]
    async fn a_record_forged_inside_a_payload_does_not_block_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        // A client stores bytes that look like the start of a later commit: valid under
        // the old plain checksum, and under a nonce of its own guessing.
        let mut forged = sealed(Kind::Put, 1 << 40, b"forged");
        let mut guessed = encode(Kind::Delete, b"\"x\"", b"", b"");
        seal(&mut guessed, 1 << 41, true, &Some([0x5a; NONCE]));
        forged.extend_from_slice(&guessed);
        let mut payload = vec![b'.'; 100];
        payload.extend_from_slice(&forged);
        payload.extend_from_slice(&[b'.'; 100]);
        let tail_start;
        {
            let log = open_quietly(path.clone(), 1 << 20);
            log.append(encode(Kind::Put, b"\"a\"", b"{}", b"acknowledged"))
                .await
                .unwrap();
            let last = log
                .append(encode(Kind::Put, b"\"b\"", b"{}", &payload))
                .await
                .unwrap();
            tail_start = last.offset;
            assert_eq!(
                decode_segment(&std::fs::read(segment_path(&path, 1)).unwrap()),
                Ok(2)
            );
        }
        // The crash tore the last commit after the forged bytes reached the disk.
        let segment = segment_path(&path, 1);
        let bytes = std::fs::read(&segment).unwrap();
        std::fs::write(&segment, &bytes[..bytes.len() - 50]).unwrap();

        let mut seen = Vec::new();
        let log = Log::open(
            path.clone(),
            1 << 20,
            StorageMetrics::unregistered(),
            |r, _| seen.push(r.payload.to_vec()),
        )
        .unwrap();
        assert_eq!(seen, [b"acknowledged".to_vec()]);
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            tail_start,
            "the torn commit is cut"
        );
        log.append(encode(Kind::Put, b"\"c\"", b"{}", b"after"))
            .await
            .unwrap();
        drop(log);
        let mut seen = Vec::new();
        Log::open(path, 1 << 20, StorageMetrics::unregistered(), |r, _| {
            seen.push(r.payload.to_vec())
        })
        .unwrap();
        assert_eq!(seen, [b"acknowledged".to_vec(), b"after".to_vec()]);
    }

    #[tokio::test]
    async fn segments_from_before_nonces_are_read_and_new_records_go_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::create_dir_all(&path).unwrap();
        let mut legacy = sealed(Kind::Put, 1, b"old one");
        legacy.extend(sealed(Kind::Put, 2, b"old two"));
        std::fs::write(segment_path(&path, 1), &legacy).unwrap();
        assert_eq!(decode_segment(&legacy), Ok(2));

        let mut seen = Vec::new();
        let log = Log::open(
            path.clone(),
            1 << 20,
            StorageMetrics::unregistered(),
            |r, _| seen.push(r.payload.to_vec()),
        )
        .unwrap();
        assert_eq!(seen, [b"old one".to_vec(), b"old two".to_vec()]);
        let new = log
            .append(encode(Kind::Put, b"\"a\"", b"{}", b"new"))
            .await
            .unwrap();
        assert_eq!(new.segment.id, 2);
        assert_eq!(new.seq, 3);
        assert!(new.segment.nonce.is_some());
        assert_eq!(std::fs::read(segment_path(&path, 1)).unwrap(), legacy);
        drop(log);
        let mut seen = Vec::new();
        Log::open(path, 1 << 20, StorageMetrics::unregistered(), |r, _| {
            seen.push(r.payload.to_vec())
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn the_segment_decoder_rejects_garbage_without_panicking() {
        assert_eq!(decode_segment(b""), Ok(0));
        assert_eq!(
            decode_segment(SEGMENT_MAGIC),
            Err("record at offset 0: Incomplete".to_owned())
        );
        let mut header = SEGMENT_MAGIC.to_vec();
        header.extend_from_slice(&[1; NONCE]);
        assert_eq!(decode_segment(&header), Ok(0));
        header.extend_from_slice(&[0xff; 40]);
        assert!(decode_segment(&header).is_err());
    }
}
