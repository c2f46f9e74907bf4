//! The crash property recovery rests on, as one check that both a proptest (every CI run)
//! and the structure-aware `log_scan` fuzz target (`scripts/fuzz.sh`) drive with valid,
//! sealed segments: a crash only cuts or garbles the tail of the newest segment, so
//! recovery keeps every record before the damage and cuts the rest; damage that a later
//! commit follows is reported as corruption, never cut away; and payload bytes that
//! imitate records (sealed without the segment's secret nonce) change neither answer.
//!
//! Random bytes (the plain `log_decoder` target) rarely get past the first checksum; these
//! cases reach the torn-tail search and the commit-start logic.

use bytes::Bytes;

use super::record::{
    decode, encode, parse_header, scan, seal, Kind, Nonce, ScanEnd, NONCE, SEGMENT_MAGIC,
};

/// Commits, records per commit and bytes per field a case is cut down to, so that one
/// case stays small and fast whatever the generator hands over.
const MAX_COMMITS: usize = 6;
const MAX_RECORDS: usize = 4;
const MAX_FIELD: usize = 300;

/// A segment to build and a crash (or disk fault) to inflict on it.
#[cfg_attr(any(test, feature = "fuzzing"), derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub struct ScanCase {
    /// The segment's checksum nonce.
    pub nonce: [u8; NONCE],
    /// Whether the segment is the newest one (the only one a crash can tear).
    pub newest: bool,
    /// Commits in log order; the first record of each begins the commit.
    pub commits: Vec<Vec<CaseRecord>>,
    /// What happens to the bytes afterwards.
    pub damage: Damage,
}

/// One record of a [`ScanCase`].
#[cfg_attr(any(test, feature = "fuzzing"), derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub struct CaseRecord {
    /// Picks the record kind.
    pub kind: u8,
    /// Object id bytes.
    pub id: Vec<u8>,
    /// Metadata bytes.
    pub metadata: Vec<u8>,
    /// Payload bytes, written as a client sent them.
    pub payload: Vec<u8>,
    /// Where in the payload to embed a commit-start record sealed with `forged_nonce`: a
    /// client's attempt to make recovery believe a later commit exists.
    pub forged_at: Option<u16>,
    /// The nonce the forged record is sealed with (never the segment's).
    pub forged_nonce: [u8; NONCE],
}

/// What a crash or a fault does to the segment after it was written.
#[cfg_attr(any(test, feature = "fuzzing"), derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub enum Damage {
    /// Nothing: every record must come back as written.
    None,
    /// The file ends early, somewhere inside the last commit.
    Cut {
        /// Picks the position.
        at: u32,
    },
    /// From a position inside the last commit on, other bytes were written instead.
    Garble {
        /// Picks the position.
        at: u32,
        /// What lies there now.
        bytes: Vec<u8>,
    },
    /// One byte before the last commit changed (a disk fault, not a crash).
    Flip {
        /// Picks the position.
        at: u32,
        /// XORed into the byte (0 counts as 1).
        mask: u8,
    },
}

fn kind_of(pick: u8) -> Kind {
    [
        Kind::Put,
        Kind::Delete,
        Kind::External,
        Kind::Meta,
        Kind::MetaRef,
    ][usize::from(pick % 5)]
}

fn clipped(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(MAX_FIELD)]
}

/// Where a record was written and what it holds.
struct Written {
    offset: usize,
    end: usize,
    seq: u64,
    kind: Kind,
    commit_start: bool,
    id: Vec<u8>,
    metadata: Vec<u8>,
    payload: Vec<u8>,
}

/// Builds the segment; returns its bytes, the records and where the last commit starts.
fn build(case: &ScanCase) -> (Vec<u8>, Vec<Written>, usize) {
    let nonce: Nonce = Some(case.nonce);
    let mut bytes = SEGMENT_MAGIC.to_vec();
    bytes.extend_from_slice(&case.nonce);
    let mut written = Vec::new();
    let mut last_start = bytes.len();
    let mut seq = 1;
    for commit in case.commits.iter().take(MAX_COMMITS) {
        let records = &commit[..commit.len().min(MAX_RECORDS)];
        if records.is_empty() {
            continue;
        }
        last_start = bytes.len();
        for (n, input) in records.iter().enumerate() {
            let mut payload = clipped(&input.payload).to_vec();
            if let Some(at) = input.forged_at {
                let mut forged_nonce = input.forged_nonce;
                if forged_nonce == case.nonce {
                    forged_nonce[0] ^= 1;
                }
                let mut forged = encode(Kind::Put, b"forged", b"{}", b"");
                seal(&mut forged, seq + 1000, true, &Some(forged_nonce));
                let at = usize::from(at) % (payload.len() + 1);
                payload.splice(at..at, forged);
            }
            let kind = kind_of(input.kind);
            let id = clipped(&input.id).to_vec();
            let metadata = clipped(&input.metadata).to_vec();
            let mut record = encode(kind, &id, &metadata, &payload);
            seal(&mut record, seq, n == 0, &nonce);
            let offset = bytes.len();
            bytes.extend_from_slice(&record);
            written.push(Written {
                offset,
                end: bytes.len(),
                seq,
                kind,
                commit_start: n == 0,
                id,
                metadata,
                payload,
            });
            seq += 1;
        }
    }
    (bytes, written, last_start)
}

/// A position strictly inside `(from, to)`, or `None` when there is none.
fn inside(pick: u32, from: usize, to: usize) -> Option<usize> {
    (to > from + 1).then(|| from + 1 + pick as usize % (to - from - 1))
}

/// Builds the case's segment, damages it, scans it as recovery does and panics when the
/// outcome breaks the crash property (see the module docs).
pub fn check_scan(case: &ScanCase) {
    let (mut bytes, written, last_start) = build(case);
    let nonce: Nonce = Some(case.nonce);
    let (parsed, start) = parse_header(&bytes);
    assert_eq!((parsed, start), (nonce, SEGMENT_MAGIC.len() + NONCE));
    let total = bytes.len();

    // The position from which bytes may differ from what was written.
    let damaged_from = match &case.damage {
        Damage::None => total,
        Damage::Cut { at } => match inside(*at, last_start, total) {
            Some(cut) => {
                bytes.truncate(cut);
                cut
            }
            None => total,
        },
        Damage::Garble { at, bytes: garbage } => match inside(*at, last_start, total) {
            Some(from) => {
                bytes.truncate(from);
                bytes.extend_from_slice(clipped(garbage));
                from
            }
            None => total,
        },
        Damage::Flip { at, mask } => match inside(*at, start.saturating_sub(1), last_start) {
            Some(flip) => {
                bytes[flip] ^= (*mask).max(1);
                flip
            }
            None => total,
        },
    };
    let bytes = Bytes::from(bytes);
    let outcome = scan(&bytes, start, &nonce, case.newest);

    // Every record that ends before the damage comes back exactly as written, in order.
    let intact: Vec<&Written> = written.iter().filter(|w| w.end <= damaged_from).collect();
    assert!(
        outcome.records.len() >= intact.len(),
        "scan kept {} records, {} were intact: {:?}",
        outcome.records.len(),
        intact.len(),
        outcome.end
    );
    for (found, want) in outcome.records.iter().zip(&intact) {
        assert_eq!(found.offset, want.offset);
        assert_eq!(found.len, want.end - want.offset);
        let record = &found.record;
        assert_eq!(record.seq, want.seq);
        assert_eq!(record.kind, want.kind);
        assert_eq!(record.commit_start, want.commit_start);
        assert_eq!(&record.id_bytes[..], &want.id[..]);
        assert_eq!(&record.metadata_bytes[..], &want.metadata[..]);
        assert_eq!(&record.payload[..], &want.payload[..]);
    }
    // Where the scan stopped, when it did not reach the end.
    let first_bad = written
        .iter()
        .find(|w| w.end > damaged_from)
        .map(|w| w.offset);

    match &case.damage {
        _ if damaged_from == total => assert_eq!(outcome.end, ScanEnd::Clean),
        Damage::None => unreachable!("no damage leaves every byte in place"),
        Damage::Cut { .. } => match first_bad {
            // A cut on a record boundary leaves whole records only.
            Some(at) if at == damaged_from => assert_eq!(outcome.end, ScanEnd::Clean),
            Some(at) => {
                assert_eq!(outcome.records.len(), intact.len());
                assert!(
                    matches!(&outcome.end, ScanEnd::Torn { at: torn, .. } | ScanEnd::Corrupt { at: torn, .. } if *torn == at),
                    "cut at {damaged_from}: {:?}",
                    outcome.end
                );
                // Only a torn newest segment may be cut back; an older one is corrupt.
                assert_eq!(
                    matches!(outcome.end, ScanEnd::Torn { .. }),
                    case.newest,
                    "{:?}",
                    outcome.end
                );
            }
            None => unreachable!("a cut inside the last commit ends inside a record"),
        },
        Damage::Garble { .. } => {
            // A crash's garbage in the newest segment is a torn tail, unless it happens to
            // hold a record sealed with the segment's nonce (which a client cannot make).
            let sealed_inside = (damaged_from..bytes.len()).any(
                |at| matches!(decode(&bytes.slice(at..), &nonce), Ok((r, _)) if r.commit_start),
            );
            if case.newest && !sealed_inside {
                assert!(
                    !matches!(outcome.end, ScanEnd::Corrupt { .. }),
                    "garbage from {damaged_from} reported as corruption: {:?}",
                    outcome.end
                );
            }
        }
        Damage::Flip { .. } => {
            // The damaged record fails its checksum and the last commit still follows it:
            // cutting there would lose acknowledged commits, so it must be reported.
            let at = first_bad.expect("the flip lies inside a record");
            assert_eq!(outcome.records.len(), intact.len());
            assert!(
                matches!(outcome.end, ScanEnd::Corrupt { at: bad, .. } if bad == at),
                "flip at {damaged_from}: {:?}",
                outcome.end
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use arbitrary::{Arbitrary, Unstructured};
    use proptest::prelude::*;

    use super::*;

    fn record(payload: &[u8], forged_at: Option<u16>) -> CaseRecord {
        CaseRecord {
            kind: 0,
            id: b"id".to_vec(),
            metadata: b"{}".to_vec(),
            payload: payload.to_vec(),
            forged_at,
            forged_nonce: [9; NONCE],
        }
    }

    fn case(damage: Damage, newest: bool) -> ScanCase {
        ScanCase {
            nonce: [7; NONCE],
            newest,
            commits: vec![
                vec![record(b"first", None), record(b"second", Some(2))],
                vec![record(&[1; 200], Some(50)), record(b"tail", None)],
            ],
            damage,
        }
    }

    #[test]
    fn every_cut_of_the_last_commit_is_a_torn_tail() {
        for at in 0..400 {
            check_scan(&case(Damage::Cut { at }, true));
            check_scan(&case(Damage::Cut { at }, false));
        }
    }

    #[test]
    fn every_flipped_byte_before_the_last_commit_is_corruption() {
        for at in 0..200 {
            check_scan(&case(Damage::Flip { at, mask: 0x40 }, true));
        }
    }

    #[test]
    fn garbage_and_forged_records_in_the_tail_are_cut_not_reported() {
        for at in 0..300 {
            let garbage = encode(Kind::Put, b"x", b"{}", b"");
            check_scan(&case(
                Damage::Garble {
                    at,
                    bytes: garbage.clone(),
                },
                true,
            ));
        }
    }

    #[test]
    fn a_commit_sealed_with_the_nonce_after_garbage_is_corruption() {
        // Why the garbage case exempts records sealed with the segment's own nonce: the
        // scan must treat them as proof of a later acknowledged commit.
        let victim = case(Damage::None, true);
        let (mut bytes, written, last_start) = build(&victim);
        bytes.truncate(last_start + 4);
        let mut sealed = encode(Kind::Put, b"x", b"{}", b"");
        seal(&mut sealed, 99, true, &Some(victim.nonce));
        bytes.extend_from_slice(&sealed);
        let outcome = scan(
            &Bytes::from(bytes),
            SEGMENT_MAGIC.len() + NONCE,
            &Some(victim.nonce),
            true,
        );
        assert_eq!(outcome.records.len(), 2);
        assert!(
            matches!(outcome.end, ScanEnd::Corrupt { at, .. } if at == written[2].offset),
            "{:?}",
            outcome.end
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The structure-aware fuzz target's check, on generated cases, in every CI run.
        #[test]
        fn recovery_scan_keeps_what_a_crash_cannot_touch(
            data in proptest::collection::vec(any::<u8>(), 0..4096)
        ) {
            if let Ok(case) = ScanCase::arbitrary(&mut Unstructured::new(&data)) {
                check_scan(&case);
            }
        }
    }
}
