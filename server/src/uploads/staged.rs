//! A fully received upload in staging, as handed to [`Backend::put_staged`]: where its
//! bytes are and how many of them, at the start, are the header the backend asked for
//! ([`Backend::staged_header`]) rather than payload.
//!
//! [`Backend::put_staged`]: crate::backend::Backend::put_staged
//! [`Backend::staged_header`]: crate::backend::Backend::staged_header

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;

use super::Staging;
use crate::backend::PayloadStream;

/// One staged blob ready to become an object; see the module documentation.
#[derive(Debug, Clone)]
pub struct StagedUpload {
    staging: Staging,
    name: String,
    header_len: u64,
}

impl StagedUpload {
    /// The blob `name` in `staging`, whose first `header_len` bytes are not payload.
    pub fn new(staging: Staging, name: String, header_len: u64) -> Self {
        Self {
            staging,
            name,
            header_len,
        }
    }

    /// The staged file on local disk, when staging is a directory: a backend on the same
    /// filesystem may rename or link it instead of copying its bytes.
    pub fn local_path(&self) -> Option<PathBuf> {
        match &self.staging {
            Staging::Dir(root) => Some(root.join(&self.name)),
            _ => None,
        }
    }

    /// How many bytes at the start of the blob are the backend's header.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Streams the payload: the blob without its header.
    pub async fn payload(&self) -> io::Result<PayloadStream> {
        let stream = self.staging.open_appended(&self.name).await?;
        if self.header_len == 0 {
            return Ok(stream);
        }
        let mut skip = self.header_len;
        Ok(stream
            .map(move |chunk| {
                let chunk: Bytes = chunk?;
                let drop = skip.min(chunk.len() as u64);
                skip -= drop;
                Ok(chunk.slice(drop as usize..))
            })
            .filter(|chunk| {
                let keep = !matches!(chunk, Ok(bytes) if bytes.is_empty());
                async move { keep }
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    #[tokio::test]
    async fn the_payload_skips_the_header_across_chunks() {
        let staging = Staging::memory();
        staging
            .put_bytes("r/s/data", b"HEADERpayload".to_vec())
            .await
            .unwrap();
        let staged = StagedUpload::new(staging.clone(), "r/s/data".to_owned(), 6);
        assert_eq!(staged.local_path(), None);
        let body: Vec<Bytes> = staged.payload().await.unwrap().try_collect().await.unwrap();
        assert_eq!(body.concat(), b"payload");

        // On disk, with a header longer than one read: still only the payload.
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::Dir(dir.path().to_owned());
        let mut bytes = vec![b'h'; 3 << 20];
        bytes.extend_from_slice(b"tail");
        staging.put_bytes("r/s/data", bytes).await.unwrap();
        let staged = StagedUpload::new(staging, "r/s/data".to_owned(), 3 << 20);
        assert_eq!(staged.local_path(), Some(dir.path().join("r/s/data")));
        let body: Vec<Bytes> = staged.payload().await.unwrap().try_collect().await.unwrap();
        assert_eq!(body.concat(), b"tail");
    }
}
