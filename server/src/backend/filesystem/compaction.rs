//! Log compaction: rewrite the live records of a mostly dead segment at the log's head,
//! repoint the index at the copies and drop the segment; a background task per backend.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use super::index::{Entry, FileMeta};
use super::log::Location;
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
        let mut copies: Vec<Copied> = Vec::new();
        let mut batch = Vec::new();
        let mut lengths = Vec::new();
        let mut materialized = HashSet::new();
        while offset < bytes.len() {
            let (record, len) = record::decode(&bytes.slice(offset..), &victim.nonce)
                .map_err(|e| BackendError::Corrupt(format!("log record: {e:?}")))?;
            let digest = digest_of(&record.id_bytes);
            let before = batch.len();
            let here = |l: &Location| l.segment.id == victim.id && l.offset == offset as u64;
            let copied = match (record.kind, self.index.get(&digest)) {
                // A `MetaRef` and the `Put` holding its payload: moving either rewrites
                // the pair as one `Put`, so a payload is copied once and no reference
                // ever names a removed segment.
                (
                    Kind::Put | Kind::MetaRef,
                    Some(Entry::Logged {
                        location,
                        payload: Some(payload),
                        ..
                    }),
                ) if here(&location) || here(&payload) => {
                    if materialized.insert(digest) {
                        let seq = location.seq;
                        batch.extend(self.materialize(&location, &payload).await?);
                        Some(Copied::Materialized { digest, seq })
                    } else {
                        None
                    }
                }
                (Kind::Put | Kind::Meta, _) => self
                    .index
                    .points_at(&digest, victim.id, offset as u64)
                    .then(|| {
                        batch.extend_from_slice(&bytes[offset..offset + len]);
                        Copied::Current {
                            digest,
                            offset: offset as u64,
                        }
                    }),
                (Kind::MetaRef, _) => None,
                (Kind::Delete | Kind::External, current) => {
                    (!matches!(current, Some(Entry::Logged { .. }))
                        && shadows_something(&digest, record.seq))
                    .then(|| {
                        batch.extend_from_slice(&bytes[offset..offset + len]);
                        Copied::Tombstone
                    })
                }
            };
            if let Some(copied) = copied {
                copies.push(copied);
                lengths.push(batch.len() - before);
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

    /// A `Put` record with `meta_ref`'s sequence number, id and metadata and the payload
    /// of the `Put` at `payload`: the pair rewritten as one record, ready to be copied.
    async fn materialize(
        &self,
        meta_ref: &Location,
        payload: &Location,
    ) -> Result<Vec<u8>, BackendError> {
        let meta = self.read_record(meta_ref).await?;
        let held = self.read_record(payload).await?;
        let mut out = record::encode(
            Kind::Put,
            &meta.id_bytes,
            &meta.metadata_bytes,
            &held.payload,
        );
        // The log keeps the sequence number of a copy and reseals it.
        record::seal(&mut out, meta_ref.seq, false, &None);
        Ok(out)
    }

    /// Appends a batch of copies and repoints each key still at its original.
    pub(super) async fn commit_copies(
        &self,
        segment: u64,
        copies: &mut Vec<Copied>,
        batch: &mut Vec<u8>,
        lengths: &mut Vec<usize>,
    ) -> Result<(), BackendError> {
        let locations = self
            .log
            .append_copies(std::mem::take(batch), std::mem::take(lengths))
            .await?;
        for (copied, location) in copies.drain(..).zip(locations) {
            let (digest, materialized, copied_from) = match copied {
                Copied::Tombstone => {
                    // A tombstone that still matters counts as live where its copy now is,
                    // so a segment of such tombstones is not recopied on every pass.
                    let bytes = u64::from(location.len);
                    location
                        .segment
                        .live
                        .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                    self.metrics.log_live_bytes.add(bytes as i64);
                    continue;
                }
                Copied::Current { digest, offset } => (digest, None, Some(offset)),
                Copied::Materialized { digest, seq } => (digest, Some(seq), None),
            };
            let _lock = self.stripe(&digest).lock().await;
            let moved = match self.index.get(&digest) {
                Some(Entry::Logged {
                    location: original,
                    expires,
                    payload: Some(_),
                }) if materialized == Some(original.seq) => Entry::Logged {
                    location,
                    expires,
                    payload: None,
                },
                Some(entry)
                    if copied_from
                        .is_some_and(|offset| self.index.points_at(&digest, segment, offset)) =>
                {
                    match entry {
                        Entry::Logged {
                            expires, payload, ..
                        } => Entry::Logged {
                            location,
                            expires,
                            payload,
                        },
                        Entry::File {
                            expires,
                            meta: Some(meta),
                        } => Entry::File {
                            expires,
                            meta: Some(Arc::new(FileMeta {
                                location,
                                metadata: meta.metadata.clone(),
                                file_id: meta.file_id,
                            })),
                        },
                        Entry::File { meta: None, .. } => continue,
                    }
                }
                entry => {
                    // A metadata change committed meanwhile may refer to a payload in the
                    // segment about to go: rewrite that pair now, under the lock.
                    if let Some(Entry::Logged {
                        location: meta_ref,
                        expires,
                        payload: Some(payload),
                    }) = entry
                    {
                        if payload.segment.id == segment || meta_ref.segment.id == segment {
                            let record = self.materialize(&meta_ref, &payload).await?;
                            let len = record.len();
                            let mut placed = self.log.append_copies(record, vec![len]).await?;
                            let location = placed.pop().expect("one record, one location");
                            self.evict(self.index.insert(
                                digest,
                                Entry::Logged {
                                    location,
                                    expires,
                                    payload: None,
                                },
                            ));
                        }
                    }
                    continue;
                }
            };
            self.evict(self.index.insert(digest, moved));
        }
        Ok(())
    }
}

/// A record copied by compaction, and how the index follows it.
pub(super) enum Copied {
    /// A tombstone or marker that still shadows an older record.
    Tombstone,
    /// The key's current record, copied as it is from `offset`.
    Current { digest: Digest, offset: u64 },
    /// The key's `MetaRef` (sequence number `seq`) and its payload, as one `Put`.
    Materialized { digest: Digest, seq: u64 },
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
