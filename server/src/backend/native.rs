//! Multipart uploads a backend runs natively (S3 `CreateMultipartUpload`, `UploadPart`,
//! `CompleteMultipartUpload`): large parts stream straight into the final object instead
//! of being staged and copied again at completion. The API's parts map to the backend's
//! by number, so the backend's limits on part sizes and numbers decide which parts can
//! go there; [`crate::uploads::assembly`] plans a completion within them.

use async_trait::async_trait;

use super::{BackendError, PayloadStream};
use crate::object::{Metadata, ObjectId};

/// What a backend accepts as one native part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLimits {
    /// Smallest size of every part but the last (S3: 5 MiB).
    pub min_size: u64,
    /// Largest size of a part (S3: 5 GiB).
    pub max_size: u64,
    /// Largest part number (S3: 10 000).
    pub max_number: u32,
}

/// The limits of Amazon S3, which S3-compatible services share.
pub const S3_LIMITS: PartLimits = PartLimits {
    min_size: 5 * 1024 * 1024,
    max_size: 5 * 1024 * 1024 * 1024,
    max_number: 10_000,
};

impl PartLimits {
    /// Whether a part of `size` bytes numbered `number` can go up natively when it
    /// arrives (it may turn out not to be the last, so it must meet the minimum).
    pub fn takes(&self, number: u32, size: u64) -> bool {
        number <= self.max_number && (self.min_size..=self.max_size).contains(&size)
    }
}

/// A native upload in progress, recorded beside the API upload so that any server can
/// continue it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NativeUpload {
    /// The object the backend assembles (for `tiered`, a fresh long-term object).
    pub target: ObjectId,
    /// The backend's own upload id.
    pub upload_id: String,
}

/// A backend's own multipart upload.
#[async_trait]
pub trait NativeMultipart: Send + Sync {
    /// The sizes and numbers of parts this backend takes.
    fn part_limits(&self) -> PartLimits;

    /// Starts an upload that will become `id` with `metadata`.
    async fn create(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
    ) -> Result<NativeUpload, BackendError>;

    /// Streams exactly `length` bytes as part `number` (replacing an earlier one), with
    /// the client's `Content-MD5` checked by the backend when given; returns the
    /// backend's etag for the part. A failing body leaves no part behind.
    async fn upload_part(
        &self,
        upload: &NativeUpload,
        number: u32,
        length: u64,
        content_md5: Option<[u8; 16]>,
        body: PayloadStream,
    ) -> Result<String, BackendError>;

    /// Assembles `parts` (number and backend etag, ascending) into the object `id`,
    /// `size` bytes in all, atomically like [`super::Backend::put`]; refusals carry
    /// the backend's code ([`BackendError::Rejected`]).
    async fn complete(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        upload: &NativeUpload,
        parts: Vec<(u32, String)>,
        size: u64,
    ) -> Result<(), BackendError>;

    /// Drops the upload and its parts; an upload that is already gone is no error.
    async fn abort(&self, upload: &NativeUpload) -> Result<(), BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_go_up_natively_only_within_the_limits() {
        let mib = 1024 * 1024;
        assert!(S3_LIMITS.takes(1, 5 * mib));
        assert!(S3_LIMITS.takes(10_000, 64 * mib));
        assert!(!S3_LIMITS.takes(1, 5 * mib - 1), "may not be the last part");
        assert!(
            !S3_LIMITS.takes(10_001, 64 * mib),
            "beyond S3's part numbers"
        );
        assert!(
            !S3_LIMITS.takes(1, 5 * 1024 * mib + 1),
            "beyond S3's part size"
        );
    }
}
