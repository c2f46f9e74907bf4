//! Errors of the storage service, mapped to HTTP in one place (`http::error`).

use crate::backend::BackendError;
use crate::metrics::RejectReason;
use crate::object::expiration::ExtendError;

/// Why a storage operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Refused by the service-tier limiter.
    #[error("concurrency limit reached")]
    AtCapacity(RejectReason),
    /// The operation task panicked; the message is the panic payload.
    #[error("service task failed: {0}")]
    Panic(String),
    /// A read-only operation stopped because its caller went away (the client hung up);
    /// nobody is left to see this answer.
    #[error("operation cancelled: the client went away")]
    Cancelled,
    /// The operation task vanished without reporting a result.
    #[error("task dropped")]
    TaskDropped,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// An expiry extension that cannot be satisfied (manual object, no creation time).
    #[error("expiry extension could not be satisfied")]
    ExtendRejected(#[source] ExtendError),
    /// An expiry extension lost repeatedly to concurrent writes.
    #[error("expiry extension could not be satisfied: concurrent update")]
    ExtendConflict,
    /// An expiry extension whose target is out of range.
    #[error("invalid expiry extension")]
    ExtendInvalid(#[source] ExtendError),
    /// The backend cannot stage multipart or resumable uploads (501).
    #[error("not implemented")]
    Unsupported,
    /// A multipart call failed.
    #[error(transparent)]
    Multipart(#[from] crate::uploads::multipart::MultipartError),
    /// A resumable session call failed.
    #[error(transparent)]
    Resumable(#[from] crate::uploads::resumable::ResumableError),
}
