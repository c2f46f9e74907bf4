//! Fault injection: panics and stalls on chosen key prefixes, for tests, demos and alert
//! drills. Off unless `faults.*_key_prefix` is configured.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, BackendError, PayloadStream, StoredObject};
use crate::config::FaultsConfig;
use crate::object::{Metadata, ObjectId};

/// Wraps a backend and misbehaves on purpose for matching keys.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    panic_prefix: Option<String>,
    delay_prefix: Option<String>,
    delay: Duration,
}

impl FaultyBackend {
    /// Returns a wrapper when any fault is configured, `None` otherwise.
    pub fn wrap(inner: Arc<dyn Backend>, faults: &FaultsConfig) -> Option<Self> {
        if faults.panic_key_prefix.is_none() && faults.delay_key_prefix.is_none() {
            return None;
        }
        Some(Self {
            inner,
            panic_prefix: faults.panic_key_prefix.clone(),
            delay_prefix: faults.delay_key_prefix.clone(),
            delay: faults.delay,
        })
    }

    async fn inject(&self, id: &ObjectId) {
        if let Some(prefix) = &self.delay_prefix {
            if id.key.starts_with(prefix.as_str()) {
                tokio::time::sleep(self.delay).await;
            }
        }
        if let Some(prefix) = &self.panic_prefix {
            if id.key.starts_with(prefix.as_str()) {
                panic!("injected fault: key matches panic prefix {prefix:?}");
            }
        }
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        self.inject(id).await;
        self.inner.put(id, metadata, payload).await
    }

    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        self.inject(id).await;
        self.inner.get(id).await
    }

    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        self.inject(id).await;
        self.inner.head(id).await
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        self.inject(id).await;
        self.inner.delete(id).await
    }

    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        self.inject(id).await;
        self.inner.update_metadata(id, expected, metadata).await
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        self.inner.sweep_expired(now).await
    }

    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<bool, BackendError> {
        self.inject(id).await;
        self.inner.compare_and_swap(id, expected, new).await
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.inner.probe().await
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }

    fn attach_background(&self, sink: crate::service::background::BackgroundSink) {
        self.inner.attach_background(sink);
    }

    async fn list_ids(&self) -> Result<Option<Vec<(ObjectId, SystemTime)>>, BackendError> {
        self.inner.list_ids().await
    }

    fn upload_staging(&self) -> Option<crate::uploads::Staging> {
        self.inner.upload_staging()
    }

    fn native_multipart(&self) -> Option<&dyn super::NativeMultipart> {
        self.inner.native_multipart()
    }
}
