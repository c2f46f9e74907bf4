//! What kind of work each operation is: the one place deciding which operations may be
//! cancelled when their client goes away and which must run to completion.
//!
//! Only reads are cancellable: stopping them half-way changes nothing stored. Anything
//! that writes (inserts, deletes, PATCH, every multipart and resumable step, the tiered
//! backend's tombstone swaps, cleanup) runs to completion once admitted, so a client
//! that hangs up never leaves a multi-step write half applied.

use crate::metrics::Operation;

/// Whether an operation changes stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only: stopped (and its permit released) when its client disconnects.
    ReadOnly,
    /// Changes state: never cancelled, runs to completion.
    StateChanging,
}

/// The effect of `op`. The match is exhaustive on purpose: a new operation must be
/// classified here before it compiles.
pub fn effect(op: Operation) -> Effect {
    match op {
        Operation::Get | Operation::Head | Operation::BatchGet | Operation::BatchHead => {
            Effect::ReadOnly
        }
        // Listing parts and querying an offset read only, but they are upload steps whose
        // answers clients act on; they are cheap, so they keep the run-to-completion rule
        // of their family (a resumable offset query may also finish an upload).
        Operation::Insert
        | Operation::Delete
        | Operation::ExtendExpiry
        | Operation::BatchInsert
        | Operation::BatchDelete
        | Operation::MultipartInitiate
        | Operation::MultipartUploadPart
        | Operation::MultipartListParts
        | Operation::MultipartComplete
        | Operation::MultipartAbort
        | Operation::ResumableCreate
        | Operation::ResumableChunk
        | Operation::ResumableOffset
        | Operation::ResumableCancel => Effect::StateChanging,
    }
}

/// Whether `op` stops when its caller goes away.
pub fn cancellable(op: Operation) -> bool {
    effect(op) == Effect::ReadOnly
}

/// The queue an operation waits in when the pooled executor runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Single-object requests: served first.
    Interactive,
    /// Parts of batch requests.
    Bulk,
    /// Fire-and-forget chores (sweeps, cleanup).
    Background,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 3] = [Priority::Interactive, Priority::Bulk, Priority::Background];

    /// The `priority` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Bulk => "bulk",
            Priority::Background => "background",
        }
    }

    /// Index into per-priority arrays (0 = highest).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The priority of a request-driven operation: batch parts are bulk, the rest interactive.
pub fn priority(op: Operation) -> Priority {
    match op {
        Operation::BatchInsert
        | Operation::BatchGet
        | Operation::BatchHead
        | Operation::BatchDelete => Priority::Bulk,
        _ => Priority::Interactive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_cancellable() {
        let cancellable: Vec<_> = Operation::ALL
            .iter()
            .copied()
            .filter(|&op| cancellable(op))
            .collect();
        assert_eq!(
            cancellable,
            [
                Operation::Get,
                Operation::Head,
                Operation::BatchGet,
                Operation::BatchHead
            ]
        );
        for op in [
            Operation::Insert,
            Operation::Delete,
            Operation::ExtendExpiry,
            Operation::MultipartComplete,
            Operation::ResumableChunk,
        ] {
            assert_eq!(effect(op), Effect::StateChanging, "{}", op.as_str());
        }
    }

    #[test]
    fn batch_parts_are_bulk_and_priorities_order_highest_first() {
        assert_eq!(priority(Operation::BatchGet), Priority::Bulk);
        assert_eq!(priority(Operation::BatchInsert), Priority::Bulk);
        assert_eq!(priority(Operation::Get), Priority::Interactive);
        assert_eq!(
            priority(Operation::MultipartComplete),
            Priority::Interactive
        );
        assert!(Priority::Interactive < Priority::Bulk && Priority::Bulk < Priority::Background);
        for (i, p) in Priority::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }
}
