//! Multipart uploads and resumable sessions as service operations: each call takes a normal permit and runs in
//! its own spawned, panic-isolated task like any other operation (api §10: "multipart
//! calls share the same limiter"), against the backend's upload staging.

use std::time::{Duration, SystemTime};

use super::background::work;
use super::{Inner, ServiceError, StorageService};
use crate::backend::PayloadStream;
use crate::metrics::{BackgroundJob, Operation, Outcome};
use crate::object::{Metadata, ObjectId};
use crate::uploads::multipart::{self, PartsPage};
use crate::uploads::resumable::{self, Created, Progress};
use crate::uploads::Staging;

fn ok<T>(_: &T) -> Outcome {
    Outcome::Ok
}

impl Inner {
    fn staging(&self) -> Result<Staging, ServiceError> {
        self.backend
            .upload_staging()
            .ok_or(ServiceError::Unsupported)
    }
}

impl StorageService {
    /// Whether the backend can stage multipart and resumable uploads.
    pub fn supports_uploads(&self) -> bool {
        self.inner.backend.upload_staging().is_some()
    }

    /// M1/M2: starts a multipart upload; returns its id.
    pub async fn multipart_initiate(
        &self,
        id: ObjectId,
        metadata: Metadata,
    ) -> Result<String, ServiceError> {
        self.run(Operation::MultipartInitiate, ok, move |inner| async move {
            Ok(multipart::initiate(&inner.staging()?, id, metadata).await?)
        })
        .await
    }

    /// M3: stores one part; returns its etag.
    pub async fn multipart_upload_part(
        &self,
        id: ObjectId,
        upload_id: String,
        part_number: u32,
        length: u64,
        payload: PayloadStream,
        content_md5: Option<[u8; 16]>,
    ) -> Result<String, ServiceError> {
        self.run(
            Operation::MultipartUploadPart,
            ok,
            move |inner| async move {
                let staging = inner.staging()?;
                Ok(multipart::put_part(
                    &staging,
                    inner.backend.as_ref(),
                    &upload_id,
                    &id,
                    part_number,
                    length,
                    payload,
                    content_md5,
                )
                .await?)
            },
        )
        .await
    }

    /// M4: one page of parts.
    pub async fn multipart_list_parts(
        &self,
        id: ObjectId,
        upload_id: String,
        max_parts: Option<u32>,
        marker: Option<u32>,
    ) -> Result<PartsPage, ServiceError> {
        self.run(Operation::MultipartListParts, ok, move |inner| async move {
            let staging = inner.staging()?;
            Ok(multipart::list_parts(&staging, &upload_id, &id, max_parts, marker).await?)
        })
        .await
    }

    /// M5: assembles the listed parts into the object.
    pub async fn multipart_complete(
        &self,
        id: ObjectId,
        upload_id: String,
        parts: Vec<(u32, String)>,
    ) -> Result<u64, ServiceError> {
        self.run(Operation::MultipartComplete, ok, move |inner| async move {
            let staging = inner.staging()?;
            let backend = inner.backend.clone();
            Ok(multipart::complete(&staging, backend.as_ref(), &upload_id, &id, parts).await?)
        })
        .await
    }

    /// M6: drops an upload.
    pub async fn multipart_abort(
        &self,
        id: ObjectId,
        upload_id: String,
    ) -> Result<(), ServiceError> {
        self.run(Operation::MultipartAbort, ok, move |inner| async move {
            let staging = inner.staging()?;
            Ok(multipart::abort(&staging, inner.backend.as_ref(), &upload_id, &id).await?)
        })
        .await
    }

    /// R1/R2: creates a resumable session for `length` stored bytes.
    pub async fn resumable_create(
        &self,
        id: ObjectId,
        metadata: Metadata,
        length: u64,
    ) -> Result<Created, ServiceError> {
        self.run(Operation::ResumableCreate, ok, move |inner| async move {
            let staging = inner.staging()?;
            let backend = inner.backend.as_ref();
            Ok(resumable::create(&staging, backend, id, metadata, length).await?)
        })
        .await
    }

    /// R3: writes one chunk of `len` bytes at `offset`.
    pub async fn resumable_chunk(
        &self,
        id: ObjectId,
        token: String,
        offset: u64,
        len: u64,
        payload: PayloadStream,
    ) -> Result<Progress, ServiceError> {
        self.run(Operation::ResumableChunk, ok, move |inner| async move {
            let staging = inner.staging()?;
            let backend = inner.backend.clone();
            Ok(resumable::put_chunk(
                &staging,
                backend.as_ref(),
                &token,
                &id,
                offset,
                len,
                payload,
            )
            .await?)
        })
        .await
    }

    /// R4: reports a session's offset.
    pub async fn resumable_offset(
        &self,
        id: ObjectId,
        token: String,
    ) -> Result<Progress, ServiceError> {
        self.run(Operation::ResumableOffset, ok, move |inner| async move {
            let staging = inner.staging()?;
            let backend = inner.backend.clone();
            Ok(resumable::query_offset(&staging, backend.as_ref(), &token, &id).await?)
        })
        .await
    }

    /// R5: cancels a session.
    pub async fn resumable_cancel(&self, id: ObjectId, token: String) -> Result<(), ServiceError> {
        self.run(Operation::ResumableCancel, ok, move |inner| async move {
            Ok(resumable::cancel(&inner.staging()?, &token, &id).await?)
        })
        .await
    }

    /// Starts the ticker that queues a cleanup of uploads untouched for `max_age` (a
    /// background job) every `interval`.
    pub fn start_upload_gc(
        &self,
        max_age: Duration,
        interval: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let staging = self.inner.backend.upload_staging()?;
        let service = self.clone();
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let staging = staging.clone();
                let backend = service.inner.backend.clone();
                service.submit_background(
                    BackgroundJob::UploadCleanup,
                    work(move || {
                        let (staging, backend) = (staging.clone(), backend.clone());
                        async move {
                            let now = SystemTime::now();
                            let multipart =
                                multipart::collect_garbage(&staging, backend, max_age, now)
                                    .await
                                    .map_err(|err| format!("multipart cleanup: {err}"))?;
                            let resumable = resumable::collect_garbage(&staging, max_age, now)
                                .await
                                .map_err(|err| format!("resumable cleanup: {err}"))?;
                            Ok(multipart + resumable)
                        }
                    }),
                );
            }
        }))
    }
}
