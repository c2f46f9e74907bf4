//! What the crash mode wrote, and the judgement of what a key may hold after a crash.
//!
//! Every operation on a key is recorded when it starts and marked when the server
//! acknowledged it. After a SIGKILL and restart a key may hold the outcome of any
//! operation that is still *possibly current*: an unacknowledged one (it may have landed
//! at any moment up to the kill), or an acknowledged one that no other acknowledged
//! operation started after.

use std::time::Instant;

use crate::payload::Digest;

/// The effect of one operation on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// PUT of the payload with this digest.
    Put(Digest),
    /// DELETE (also the key's state before any write).
    Delete,
}

/// One operation on a key.
#[derive(Debug, Clone)]
pub struct Op {
    /// What it does to the key.
    pub effect: Effect,
    /// When the request was sent.
    pub started: Instant,
    /// When a 2xx answer arrived; `None` while unknown.
    pub acked: Option<Instant>,
}

impl Op {
    /// A state known to hold at `at` (the start of a run, or a verification read).
    pub fn baseline(effect: Effect, at: Instant) -> Self {
        Self {
            effect,
            started: at,
            acked: Some(at),
        }
    }
}

/// What GET answered after the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// 200 with a self-consistent payload.
    Present(Digest),
    /// 404.
    Absent,
    /// 200 with a body failing its checksum.
    Torn,
    /// Any other status.
    Status(u16),
}

/// An acceptable state.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The outcome of an acknowledged, not superseded operation.
    Acknowledged,
    /// The outcome of an operation in flight at the kill.
    Unacknowledged,
}

/// Judges `observed` against the operations on its key (baseline first).
pub fn judge(ops: &[Op], observed: Observed) -> Result<Verdict, String> {
    let effect = match observed {
        Observed::Present(digest) => Effect::Put(digest),
        Observed::Absent => Effect::Delete,
        Observed::Torn => return Err("body fails its checksum: torn or truncated".into()),
        Observed::Status(status) => return Err(format!("GET answered {status}")),
    };
    let superseded = |op: &Op| {
        op.acked.is_some_and(|acked| {
            ops.iter()
                .any(|later| later.acked.is_some() && later.started > acked)
        })
    };
    let matching: Vec<&Op> = ops.iter().filter(|op| op.effect == effect).collect();
    if matching.is_empty() {
        return Err(match effect {
            Effect::Put(_) => "holds a payload no write sent".into(),
            Effect::Delete => "absent although no delete was sent".into(),
        });
    }
    match matching.iter().find(|op| !superseded(op)) {
        Some(op) if op.acked.is_some() => Ok(Verdict::Acknowledged),
        Some(_) => Ok(Verdict::Unacknowledged),
        None => Err(format!(
            "holds {} superseded by a later acknowledged operation",
            match effect {
                Effect::Put(_) => "a payload",
                Effect::Delete => "nothing (a delete)",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn d(n: u8) -> Digest {
        [n; 32]
    }

    #[test]
    fn accepts_current_outcomes_only() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let op = |effect, started, acked: Option<u64>| Op {
            effect,
            started: at(started),
            acked: acked.map(at),
        };
        let base = Op::baseline(Effect::Delete, t0);
        // Sequential puts: only the second may be there.
        let seq = [
            base.clone(),
            op(Effect::Put(d(1)), 1, Some(10)),
            op(Effect::Put(d(2)), 20, Some(30)),
        ];
        assert_eq!(
            judge(&seq, Observed::Present(d(2))),
            Ok(Verdict::Acknowledged)
        );
        assert!(judge(&seq, Observed::Present(d(1)))
            .unwrap_err()
            .contains("superseded"));
        assert!(judge(&seq, Observed::Absent).is_err());
        assert!(judge(&seq, Observed::Present(d(9)))
            .unwrap_err()
            .contains("no write"));
        assert!(judge(&seq, Observed::Torn).is_err());
        assert!(judge(&seq, Observed::Status(500)).is_err());
        // Overlapping puts: either.
        let overlap = [
            base.clone(),
            op(Effect::Put(d(1)), 1, Some(10)),
            op(Effect::Put(d(2)), 5, Some(30)),
        ];
        assert!(judge(&overlap, Observed::Present(d(1))).is_ok());
        assert!(judge(&overlap, Observed::Present(d(2))).is_ok());
        // An acknowledged delete after a put.
        let deleted = [
            base.clone(),
            op(Effect::Put(d(1)), 1, Some(10)),
            op(Effect::Delete, 20, Some(25)),
        ];
        assert_eq!(judge(&deleted, Observed::Absent), Ok(Verdict::Acknowledged));
        assert!(judge(&deleted, Observed::Present(d(1))).is_err());
        // In flight at the kill: may or may not have landed.
        let in_flight = [
            base.clone(),
            op(Effect::Put(d(1)), 1, Some(10)),
            op(Effect::Put(d(2)), 20, None),
            op(Effect::Delete, 21, None),
        ];
        assert_eq!(
            judge(&in_flight, Observed::Present(d(1))),
            Ok(Verdict::Acknowledged)
        );
        assert_eq!(
            judge(&in_flight, Observed::Present(d(2))),
            Ok(Verdict::Unacknowledged)
        );
        assert_eq!(
            judge(&in_flight, Observed::Absent),
            Ok(Verdict::Unacknowledged)
        );
        // Never written: absent is the baseline.
        assert_eq!(judge(&[base], Observed::Absent), Ok(Verdict::Acknowledged));
    }
}
