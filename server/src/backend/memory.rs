//! In-process memory backend for tests and demos; contents vanish at exit.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;

use super::{same_version, Backend, BackendError, Payload, PayloadStream, StoredObject};
use crate::object::{Metadata, ObjectId};

/// Objects in a hash map; payloads are buffered whole before they replace the old object.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: RwLock<HashMap<ObjectId, (Metadata, Bytes)>>,
}

impl MemoryBackend {
    fn read(&self, id: &ObjectId) -> Option<(Metadata, Bytes)> {
        let map = self.objects.read().expect("memory backend lock poisoned");
        map.get(id).map(|(meta, bytes)| {
            let mut meta = meta.clone();
            meta.size = Some(bytes.len() as u64);
            (meta, bytes.clone())
        })
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        let body = payload
            .map_err(BackendError::Payload)
            .try_fold(BytesMut::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await?
            .freeze();
        let size = body.len() as u64;
        let mut meta = metadata.clone();
        meta.size = None;
        self.objects
            .write()
            .expect("memory backend lock poisoned")
            .insert(id.clone(), (meta, body));
        Ok(size)
    }

    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        Ok(self.read(id).map(|(metadata, bytes)| StoredObject {
            metadata,
            payload: Payload::Bytes(bytes),
        }))
    }

    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        Ok(self.read(id).map(|(metadata, _)| metadata))
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        self.objects
            .write()
            .expect("memory backend lock poisoned")
            .remove(id);
        Ok(())
    }

    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let mut map = self.objects.write().expect("memory backend lock poisoned");
        match map.get_mut(id) {
            Some((stored, _)) if same_version(stored, expected) => {
                *stored = metadata.clone();
                stored.size = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        let mut map = self.objects.write().expect("memory backend lock poisoned");
        let before = map.len();
        map.retain(|_, (meta, _)| !meta.is_expired(now));
        Ok((before - map.len()) as u64)
    }
}
