//! Batch (bulk) operations: admitted with a bulk permit then a normal one (api §10),
//! then run like every other operation in a spawned, panic-isolated task.
//!
//! Admission is separate from running so the batch handler can take permits one at a
//! time in request order (the semaphores are FIFO), which bounds how much of the request
//! is buffered and keeps a batch from starving single requests or being starved by them.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;

use super::limiter::Permit;
use super::{found, ServiceError, StorageService};
use crate::backend::BackendError;
use crate::metrics::{Operation, Outcome};
use crate::object::{Metadata, ObjectId};

/// A found object with its whole payload in memory (batch get results are buffered).
#[derive(Debug, Clone)]
pub struct BufferedObject {
    /// Stored metadata, `size` set.
    pub metadata: Metadata,
    /// The whole stored payload.
    pub payload: Bytes,
}

impl StorageService {
    /// Takes a bulk permit and then a normal permit within one `queue_timeout`; a refusal
    /// is counted against `op` and becomes [`ServiceError::AtCapacity`] (429).
    pub async fn admit_bulk(&self, op: Operation) -> Result<Permit, ServiceError> {
        self.limiter.acquire_bulk().await.map_err(|reason| {
            self.metrics.record_operation(op, Outcome::Rejected, None);
            ServiceError::AtCapacity(reason)
        })
    }

    /// Bulk permits free right now (for tests and debugging).
    pub fn available_bulk_permits(&self) -> usize {
        self.limiter.bulk_available()
    }

    /// Batch insert of an in-memory payload; returns the stored size.
    pub async fn batch_insert(
        &self,
        permit: Permit,
        id: ObjectId,
        metadata: Metadata,
        payload: Bytes,
    ) -> Result<u64, ServiceError> {
        let stream = futures::stream::once(async move { Ok(payload) });
        self.spawn_admitted(
            permit,
            Operation::BatchInsert,
            |_| Outcome::Ok,
            move |inner| async move { inner.insert(id, metadata, Box::pin(stream)).await },
        )
        .await
    }

    /// Batch get: the payload is read whole inside the task, so a failing or panicking
    /// read is isolated like the open.
    pub async fn batch_get(
        &self,
        permit: Permit,
        id: ObjectId,
    ) -> Result<Option<BufferedObject>, ServiceError> {
        let now = SystemTime::now();
        self.spawn_admitted(
            permit,
            Operation::BatchGet,
            found,
            move |inner| async move {
                let Some(object) = inner.get(id, now).await? else {
                    return Ok(None);
                };
                let payload = object
                    .payload
                    .into_stream()
                    .try_fold(BytesMut::new(), |mut acc, chunk| async move {
                        acc.extend_from_slice(&chunk);
                        Ok(acc)
                    })
                    .await
                    .map_err(BackendError::Io)?
                    .freeze();
                Ok(Some(BufferedObject {
                    metadata: object.metadata,
                    payload,
                }))
            },
        )
        .await
    }

    /// Batch head.
    pub async fn batch_head(
        &self,
        permit: Permit,
        id: ObjectId,
    ) -> Result<Option<Metadata>, ServiceError> {
        let now = SystemTime::now();
        self.spawn_admitted(
            permit,
            Operation::BatchHead,
            found,
            move |inner| async move { inner.head(id, now).await },
        )
        .await
    }

    /// Batch delete; deleting a missing object succeeds.
    pub async fn batch_delete(&self, permit: Permit, id: ObjectId) -> Result<(), ServiceError> {
        self.spawn_admitted(
            permit,
            Operation::BatchDelete,
            |_| Outcome::Ok,
            move |inner| async move { inner.delete(id).await },
        )
        .await
    }
}
