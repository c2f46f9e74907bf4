//! Expiry sweeps: remove logged objects and object files whose deadline has passed.

use std::fs::File;
use std::time::SystemTime;

use super::files;
use super::index::{Entry, FileMeta};
use super::store::{blocking, effective, Shared};
use crate::backend::{BackendError, IoContext as _};

impl Shared {
    /// Removes logged objects whose deadline passed before `now`.
    pub(super) async fn sweep_logged(&self, now: SystemTime) -> Result<u64, BackendError> {
        let mut removed = 0;
        for digest in self.index.expired_logged(now) {
            let _lock = self.stripe(&digest).lock().await;
            // Re-check under the lock: the object may have been overwritten meanwhile.
            let Some(Entry::Logged {
                location,
                expires: Some(deadline),
                ..
            }) = self.index.get(&digest)
            else {
                continue;
            };
            if deadline > now {
                continue;
            }
            let record = self.read_record(&location).await?;
            self.delete_locked(digest, &record.id_bytes).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes object files whose deadline passed before `now`. Only files whose
    /// indexed deadline passed are opened; the header has the final word, and a later
    /// deadline found there goes back into the index.
    pub(super) async fn sweep_files(&self, now: SystemTime) -> Result<u64, BackendError> {
        let mut removed = 0;
        for digest in self.index.expired_files(now) {
            let _lock = self.stripe(&digest).lock().await;
            let Some(Entry::File {
                expires: Some(deadline),
                meta,
            }) = self.index.get(&digest)
            else {
                continue;
            };
            if deadline > now {
                continue;
            }
            let path = self.object_path(&digest);
            let outcome = blocking(move || {
                let Ok(mut file) = File::open(&path) else {
                    return Ok(Swept::Gone);
                };
                let metadata = match files::read_header(&mut file) {
                    Ok((header, _)) => effective(header.metadata, meta.as_deref(), &header.file_id),
                    Err(_) => return Ok(Swept::Later(None, meta)),
                };
                if metadata.is_expired(now) {
                    files::remove(&path, true).at("remove expired object file", &path)?;
                    Ok(Swept::Gone)
                } else {
                    Ok(Swept::Later(metadata.time_expires, meta))
                }
            })
            .await?;
            match outcome {
                Swept::Gone => {
                    self.index.remove(&digest);
                    removed += 1;
                }
                Swept::Later(expires, meta) => {
                    self.index.insert(digest, Entry::File { expires, meta });
                }
            }
        }
        Ok(removed)
    }
}

/// What the sweep found in an object file.
enum Swept {
    /// Expired and removed (or already missing).
    Gone,
    /// Not expired: its actual deadline (and the metadata record it keeps).
    Later(Option<SystemTime>, Option<std::sync::Arc<FileMeta>>),
}
