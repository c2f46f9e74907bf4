//! Expiry sweeps: remove logged objects and object files whose deadline has passed.

use std::fs::File;
use std::time::SystemTime;

use super::files;
use super::index::Entry;
use super::store::{blocking, Shared};
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
            }) = self.index.get(&digest)
            else {
                continue;
            };
            if deadline > now {
                continue;
            }
            let record = self.read_record(&location).await?;
            self.delete_locked(digest, &record.id_json).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes object files whose deadline passed before `now`.
    pub(super) async fn sweep_files(&self, now: SystemTime) -> Result<u64, BackendError> {
        let mut removed = 0;
        for digest in self.index.files() {
            let _lock = self.stripe(&digest).lock().await;
            if !matches!(self.index.get(&digest), Some(Entry::File)) {
                continue;
            }
            let path = self.object_path(&digest);
            let gone = blocking(move || {
                let Ok(mut file) = File::open(&path) else {
                    return Ok(false);
                };
                match files::read_header(&mut file) {
                    Ok((header, _)) if header.metadata.is_expired(now) => {
                        files::remove(&path, true).at("remove expired object file", &path)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await?;
            if gone {
                self.index.remove(&digest);
                removed += 1;
            }
        }
        Ok(removed)
    }
}
