//! Log compaction: rewrite the live records of a mostly dead segment at the log's head,
//! repoint the index at the copies and drop the segment; a background task per backend.

use std::sync::{Arc, Weak};

use super::index::{Entry, FileMeta};
use super::record::{self, Kind};
use super::store::{blocking, digest_of, Shared};
use super::{Digest, COMPACT_BATCH, COMPACT_INTERVAL};
use crate::backend::BackendError;

impl Shared {
    /// Compacts the sealed segment with the most dead bytes, if at least half of it is
    /// dead. Returns whether it compacted one.
    pub(super) async fn compact_once(&self) -> Result<bool, BackendError> {
        let segments = self.log.segments();
        let Some((active, sealed)) = segments.split_last() else {
            return Ok(false);
        };
        let Some(victim) = sealed
            .iter()
            .filter(|s| {
                let size = s.size.load(std::sync::atomic::Ordering::Relaxed);
                s.dead() * 2 >= size
            })
            .max_by_key(|s| s.dead())
        else {
            return Ok(false);
        };
        // A tombstone or marker is still needed while another segment may hold an older
        // record for its key; copies keep old sequence numbers, so ask every segment.
        let others: Vec<_> = segments
            .iter()
            .chain(std::iter::once(active))
            .filter(|s| s.id != victim.id)
            .cloned()
            .collect();
        let shadows_something = |digest: &Digest, seq: u64| {
            others.iter().any(|s| {
                s.min_seq.load(std::sync::atomic::Ordering::Relaxed) < seq && s.may_hold(digest)
            })
        };
        let segment = victim.clone();
        let bytes = blocking(move || Ok(segment.read_all()?)).await?;

        let mut offset = victim.start as usize;
        let mut copies: Vec<(Option<Digest>, u64)> = Vec::new();
        let mut batch = Vec::new();
        let mut lengths = Vec::new();
        while offset < bytes.len() {
            let (record, len) = record::decode(&bytes.slice(offset..), &victim.nonce)
                .map_err(|e| BackendError::Corrupt(format!("log record: {e:?}")))?;
            let digest = digest_of(&record.id_bytes);
            let keep = match record.kind {
                Kind::Put | Kind::Meta => self.index.points_at(&digest, victim.id, offset as u64),
                Kind::Delete | Kind::External => {
                    !matches!(self.index.get(&digest), Some(Entry::Logged { .. }))
                        && shadows_something(&digest, record.seq)
                }
            };
            if keep {
                let current = matches!(record.kind, Kind::Put | Kind::Meta);
                copies.push((current.then_some(digest), offset as u64));
                batch.extend_from_slice(&bytes[offset..offset + len]);
                lengths.push(len);
                if batch.len() >= COMPACT_BATCH {
                    self.commit_copies(victim.id, &mut copies, &mut batch, &mut lengths)
                        .await?;
                }
            }
            offset += len;
        }
        self.commit_copies(victim.id, &mut copies, &mut batch, &mut lengths)
            .await?;
        // What is still counted live here are tombstones, now copied or dropped.
        let pinned = victim.live.load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.log_live_bytes.sub(pinned as i64);
        self.log.remove(victim)?;
        self.metrics.compactions.inc();
        tracing::debug!(segment = victim.id, "compacted log segment");
        Ok(true)
    }

    /// Appends a batch of copies and repoints each key still at its original.
    pub(super) async fn commit_copies(
        &self,
        segment: u64,
        copies: &mut Vec<(Option<Digest>, u64)>,
        batch: &mut Vec<u8>,
        lengths: &mut Vec<usize>,
    ) -> Result<(), BackendError> {
        let locations = self
            .log
            .append_copies(std::mem::take(batch), std::mem::take(lengths))
            .await?;
        for ((digest, offset), location) in copies.drain(..).zip(locations) {
            let Some(digest) = digest else {
                // A tombstone that still matters counts as live where its copy now is,
                // so a segment of such tombstones is not recopied on every pass.
                let bytes = u64::from(location.len);
                location
                    .segment
                    .live
                    .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                self.metrics.log_live_bytes.add(bytes as i64);
                continue;
            };
            let _lock = self.stripe(&digest).lock().await;
            if !self.index.points_at(&digest, segment, offset) {
                continue;
            }
            let moved = match self.index.get(&digest) {
                Some(Entry::Logged { expires, .. }) => Entry::Logged { location, expires },
                Some(Entry::File {
                    expires,
                    meta: Some(meta),
                }) => Entry::File {
                    expires,
                    meta: Some(Arc::new(FileMeta {
                        location,
                        metadata: meta.metadata.clone(),
                        file_id: meta.file_id,
                    })),
                },
                _ => continue,
            };
            self.evict(self.index.insert(digest, moved));
        }
        Ok(())
    }
}

/// Runs compaction until the backend is dropped.
pub(super) async fn compact_forever(shared: Weak<Shared>) {
    let start = tokio::time::Instant::now() + COMPACT_INTERVAL;
    let mut ticker = tokio::time::interval_at(start, COMPACT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        loop {
            match shared.compact_once().await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(err) => {
                    tracing::warn!(%err, "log compaction failed");
                    break;
                }
            }
        }
    }
}
