//! The in-memory index: where the current version of every object lives.
//!
//! Why in memory: every key's state (in the log, in a file of its own, or absent) is
//! known without touching the disk, so a miss costs no I/O and a read of a logged object
//! is one positioned read, or none when cached. Rebuilt from the log and the object
//! files at start-up. The index also keeps each segment's live-byte count, which decides
//! when compaction pays off.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard};

use super::files::FileId;
use super::log::Location;
use super::Digest;
use crate::metrics::StorageMetrics;
use crate::object::Metadata;

const SHARDS: usize = 64;

/// Where an object's current version lives.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// A `Put` record in the log, or a `MetaRef` record and the `Put` holding its payload.
    Logged {
        location: Location,
        /// The deadline from its metadata, so the sweep needs no reads.
        expires: Option<SystemTime>,
        /// When `location` is a `MetaRef`: the earlier `Put` record whose payload it
        /// keeps (live too, so compaction moves it).
        payload: Option<Location>,
    },
    /// A file of its own (a large object).
    File {
        /// The deadline from its header (or earlier, when a restart found only the one
        /// its write logged), so the sweep opens only files that may have expired.
        expires: Option<SystemTime>,
        /// Metadata changed since the file was written, which outranks its header.
        meta: Option<Arc<FileMeta>>,
    },
}

/// A `Meta` record that is the current metadata of an object file.
#[derive(Debug)]
pub(super) struct FileMeta {
    pub(super) location: Location,
    pub(super) metadata: Metadata,
    /// The file it applies to.
    pub(super) file_id: FileId,
}

impl Entry {
    /// The log record this entry keeps live, if any.
    fn record(&self) -> Option<&Location> {
        match self {
            Entry::Logged { location, .. } => Some(location),
            Entry::File { meta, .. } => meta.as_ref().map(|m| &m.location),
        }
    }
}

/// Digest -> entry, sharded so lookups from many tasks rarely contend.
pub(super) struct Index {
    shards: Vec<Mutex<HashMap<Digest, Entry>>>,
    metrics: StorageMetrics,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

impl Index {
    pub(super) fn new(metrics: StorageMetrics) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            metrics,
        }
    }

    /// Keeps live-byte counts (per segment and exported) and object counts in step.
    fn account(&self, entry: Option<&Entry>, add: bool) {
        let Some(entry) = entry else { return };
        let sign = if add { 1 } else { -1 };
        let payload = match entry {
            Entry::Logged { payload, .. } => payload.as_ref(),
            Entry::File { .. } => None,
        };
        for location in entry.record().into_iter().chain(payload) {
            let bytes = u64::from(location.len);
            if add {
                location.segment.live.fetch_add(bytes, Ordering::Relaxed);
            } else {
                location.segment.release(bytes);
            }
            self.metrics.log_live_bytes.add(sign * bytes as i64);
        }
        match entry {
            Entry::Logged { .. } => self.metrics.objects_in_log.add(sign),
            Entry::File { .. } => self.metrics.objects_in_files.add(sign),
        }
    }

    /// A `parking_lot` lock: a panic while it is held cannot poison the shard.
    fn shard(&self, digest: &Digest) -> MutexGuard<'_, HashMap<Digest, Entry>> {
        self.shards[digest[1] as usize % SHARDS].lock()
    }

    /// The current entry for `digest`.
    pub(super) fn get(&self, digest: &Digest) -> Option<Entry> {
        self.shard(digest).get(digest).cloned()
    }

    /// Sets the entry for `digest`; returns the one it replaced.
    pub(super) fn insert(&self, digest: Digest, entry: Entry) -> Option<Entry> {
        self.account(Some(&entry), true);
        let old = self.shard(&digest).insert(digest, entry);
        self.account(old.as_ref(), false);
        old
    }

    /// Sets a logged entry for `digest` unless the current entry is a later record of
    /// the key (a higher sequence number): same-key puts finish out of log order, and a
    /// reader must never see a version that an older one then replaces. Returns
    /// `Some(replaced)` when it was set, `None` when it lost.
    pub(super) fn insert_newer(&self, digest: Digest, entry: Entry) -> Option<Option<Entry>> {
        let seq = entry.record().map_or(0, |location| location.seq);
        let mut shard = self.shard(&digest);
        if matches!(shard.get(&digest), Some(Entry::Logged { location, .. }) if location.seq > seq)
        {
            return None;
        }
        self.account(Some(&entry), true);
        let old = shard.insert(digest, entry);
        self.account(old.as_ref(), false);
        Some(old)
    }

    /// Forgets `digest`; returns the entry it had.
    pub(super) fn remove(&self, digest: &Digest) -> Option<Entry> {
        let old = self.shard(digest).remove(digest);
        self.account(old.as_ref(), false);
        old
    }

    /// Logged objects whose deadline passed before `now`.
    pub(super) fn expired_logged(&self, now: SystemTime) -> Vec<Digest> {
        self.collect(|entry| {
            matches!(entry, Entry::Logged { expires: Some(deadline), .. } if *deadline <= now)
        })
    }

    /// Objects with files of their own whose indexed deadline passed before `now`.
    pub(super) fn expired_files(&self, now: SystemTime) -> Vec<Digest> {
        self.collect(
            |entry| matches!(entry, Entry::File { expires: Some(deadline), .. } if *deadline <= now),
        )
    }

    fn collect(&self, keep: impl Fn(&Entry) -> bool) -> Vec<Digest> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock();
            out.extend(shard.iter().filter(|(_, e)| keep(e)).map(|(d, _)| *d));
        }
        out
    }

    /// Whether `digest`'s current version (a `Put`, or the `Meta` of a file) is the
    /// record at `offset` of segment `segment`.
    pub(super) fn points_at(&self, digest: &Digest, segment: u64, offset: u64) -> bool {
        self.shard(digest)
            .get(digest)
            .and_then(Entry::record)
            .is_some_and(|location| location.segment.id == segment && location.offset == offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logged entry at `seq` in a segment of its own (the index only compares `seq`).
    fn logged(dir: &std::path::Path, seq: u64) -> Entry {
        Entry::Logged {
            location: super::super::log::tests::location(dir, seq),
            expires: None,
            payload: None,
        }
    }

    fn seq_of(entry: Option<Entry>) -> Option<u64> {
        entry.and_then(|e| e.record().map(|l| l.seq))
    }

    #[test]
    fn a_logged_entry_never_replaces_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(StorageMetrics::unregistered());
        let digest = [3; 32];
        assert!(index.insert_newer(digest, logged(dir.path(), 5)).is_some());
        assert!(
            index.insert_newer(digest, logged(dir.path(), 4)).is_none(),
            "an earlier record finishing late loses"
        );
        assert_eq!(seq_of(index.get(&digest)), Some(5));
        let replaced = index.insert_newer(digest, logged(dir.path(), 9)).unwrap();
        assert_eq!(seq_of(replaced), Some(5));
        assert_eq!(seq_of(index.get(&digest)), Some(9));
        // A file entry was set by an exclusive writer before any put in flight was
        // queued, so a logged entry always replaces it.
        index.insert(
            digest,
            Entry::File {
                expires: None,
                meta: None,
            },
        );
        assert!(index.insert_newer(digest, logged(dir.path(), 7)).is_some());
        assert_eq!(seq_of(index.get(&digest)), Some(7));
    }

    #[test]
    fn a_panic_while_a_shard_is_locked_leaves_it_usable() {
        let index = Index::new(StorageMetrics::unregistered());
        let digest = [7; 32];
        index.insert(
            digest,
            Entry::File {
                expires: None,
                meta: None,
            },
        );
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = index.shard(&digest);
                panic!("injected panic under an index lock");
            })
            .join()
        });
        assert!(panicked.is_err());
        assert!(matches!(index.get(&digest), Some(Entry::File { .. })));
        assert!(index.remove(&digest).is_some());
        assert_eq!(index.get(&digest).map(|_| ()), None);
    }
}
