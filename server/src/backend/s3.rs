//! S3-compatible backend (long-term tier): AWS S3, MinIO, Ceph RGW, R2, GCS interop.
//!
//! Each object is one S3 object named `usecase/scopes/key` (the key percent-encoded
//! as one path part, so `a`, `a/b`, `a/` and `a//a` stay distinct). The metadata rides
//! along as the user-metadata header `x-amz-meta-strata` (percent-encoded JSON), so a
//! HEAD needs one request and a GET streams the payload straight through. Uploads go
//! through a bounded buffer that switches to multipart beyond [`PART_SIZE`]: a 1 GiB
//! body never sits in memory. API multipart parts that meet S3's part limits stream
//! straight into an S3 multipart upload of the object ([`super::s3_native`]); smaller
//! parts and resumable sessions are staged as objects under [`STAGING_PREFIX`] in the
//! same bucket, so any pod can continue an upload another pod started; listings of
//! objects skip that prefix. Credentials come from the standard AWS environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity,
//! instance metadata) and never appear in logs or errors.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::path::{Path, PathPart};
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use percent_encoding::AsciiSet;
use tokio::io::AsyncWriteExt;

use super::{matches_expected, Backend, BackendError, Payload, PayloadStream, StoredObject};
use crate::config::StorageConfig;
use crate::object::{Metadata, ObjectId, Scopes};

const NAME: &str = "s3compatible";
/// User-metadata name holding the object's metadata.
const META_KEY: &str = "strata";
/// Root of upload staging in the bucket. It starts with `.`, which no usecase may
/// contain, so no object path ([`path_of`]) ever falls under it.
pub const STAGING_PREFIX: &str = ".strata-uploads";
/// Upload buffer; bodies beyond it go up as multipart parts of this size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per upload (memory per upload is about this times `PART_SIZE`).
const PARTS_IN_FLIGHT: usize = 2;
/// Objects whose metadata the sweep reads at once.
const SWEEP_CONCURRENCY: usize = 16;
/// Escaped in the metadata header: controls, space, `%` and every non-ASCII byte.
const META_ESCAPE: &AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');

/// Objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Backend {
    store: Arc<dyn ObjectStore>,
    /// The same client, for S3's own multipart calls and signed requests.
    pub(super) s3: Arc<AmazonS3>,
    /// Streams native multipart parts to signed URLs (object_store buffers part bodies).
    pub(super) http: reqwest::Client,
    /// Upload staging in the bucket; one instance, so what it keeps is shared.
    staging: crate::uploads::bucket::BucketStaging,
    shown: String,
}

pub(super) fn unavailable(err: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable {
        backend: NAME,
        message: err.to_string(),
    }
}

/// The S3 path of an object: usecase, scopes (`_` when none) and the whole key as one
/// percent-encoded part.
pub fn path_of(id: &ObjectId) -> Path {
    Path::from_iter([
        PathPart::from(id.usecase.as_str()),
        PathPart::from(id.scopes.to_wire().as_str()),
        PathPart::from(id.key.as_str()),
    ])
}

/// The object id an S3 path names, the inverse of [`path_of`].
fn id_of(path: &Path) -> Option<ObjectId> {
    let parts: Vec<String> = path
        .parts()
        .map(|part| {
            percent_encoding::percent_decode_str(part.as_ref())
                .decode_utf8()
                .map(|s| s.into_owned())
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let [usecase, scopes, key] = parts.as_slice() else {
        return None;
    };
    ObjectId::new(usecase.as_str(), Scopes::parse(scopes).ok()?, key.as_str()).ok()
}

fn encode_metadata(metadata: &Metadata) -> String {
    let mut metadata = metadata.clone();
    metadata.size = None;
    let json = serde_json::to_string(&metadata).expect("metadata serializes");
    percent_encoding::utf8_percent_encode(&json, META_ESCAPE).to_string()
}

fn decode_metadata(attributes: &Attributes, size: u64) -> Result<Metadata, BackendError> {
    let raw = attributes
        .get(&Attribute::Metadata(Cow::Borrowed(META_KEY)))
        .ok_or_else(|| BackendError::Corrupt("s3 object without strata metadata".into()))?;
    let json = percent_encoding::percent_decode_str(raw.as_ref())
        .decode_utf8()
        .map_err(|err| BackendError::Corrupt(format!("s3 metadata: {err}")))?;
    let mut metadata: Metadata = serde_json::from_str(&json)
        .map_err(|err| BackendError::Corrupt(format!("s3 metadata: {err}")))?;
    metadata.size = Some(size);
    Ok(metadata)
}

pub(super) fn attributes_for(metadata: &Metadata) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata(Cow::Borrowed(META_KEY)),
        AttributeValue::from(encode_metadata(metadata)),
    );
    attributes.insert(
        Attribute::ContentType,
        AttributeValue::from(metadata.content_type.clone()),
    );
    attributes
}

impl S3Backend {
    /// Connects to the bucket and checks that it exists and answers.
    pub async fn open(config: &StorageConfig) -> Result<Self, BackendError> {
        let StorageConfig::S3compatible {
            endpoint,
            bucket,
            region,
            path_style,
        } = config
        else {
            return Err(BackendError::Config(
                "not an s3compatible section".to_owned(),
            ));
        };
        let shown = format!("bucket {bucket} at {endpoint}");
        let connect_timeout = Duration::from_secs(5);
        // Covers a whole request including its body: long enough for 1 GiB streams.
        let timeout = Duration::from_secs(900);
        let options = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_connect_timeout(connect_timeout)
            .with_timeout(timeout);
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        };
        let store = AmazonS3Builder::from_env()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region(region.clone().unwrap_or_else(|| "us-east-1".to_owned()))
            .with_virtual_hosted_style_request(!path_style.unwrap_or(true))
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|err| BackendError::Config(format!("s3compatible {shown}: {err}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .build()
            .map_err(|err| BackendError::Config(format!("s3compatible {shown}: {err}")))?;
        let s3 = Arc::new(store);
        let backend = Self {
            store: s3.clone(),
            staging: crate::uploads::bucket::BucketStaging::new(s3.clone(), STAGING_PREFIX),
            s3,
            http,
            shown,
        };
        backend.probe().await.map_err(|err| match err {
            BackendError::Config(message) => BackendError::Config(message),
            other => BackendError::Config(format!("s3compatible {}: {other}", backend.shown)),
        })?;
        Ok(backend)
    }

    fn error(&self, err: object_store::Error) -> BackendError {
        unavailable(err)
    }

    /// Every object of the bucket except upload staging.
    async fn list_objects(&self) -> Result<Vec<object_store::ObjectMeta>, BackendError> {
        let staging = Path::from(STAGING_PREFIX);
        self.store
            .list(None)
            .try_filter(|meta| futures::future::ready(!meta.location.prefix_matches(&staging)))
            .try_collect()
            .await
            .map_err(|err| self.error(err))
    }

    /// Metadata and version of the current object, `None` when absent.
    async fn head_version(
        &self,
        path: &Path,
    ) -> Result<Option<(Metadata, UpdateVersion)>, BackendError> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(path, options).await {
            Ok(result) => {
                let metadata = decode_metadata(&result.attributes, result.meta.size)?;
                let version = UpdateVersion {
                    e_tag: result.meta.e_tag.clone(),
                    version: result.meta.version.clone(),
                };
                Ok(Some((metadata, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(self.error(err)),
        }
    }

    /// One-request conditional put of a buffered body; `false` when the condition failed.
    async fn put_if(
        &self,
        path: &Path,
        metadata: &Metadata,
        body: Bytes,
        mode: PutMode,
    ) -> Result<bool, BackendError> {
        let options = PutOptions {
            mode,
            attributes: attributes_for(metadata),
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from_bytes(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(err) => Err(self.error(err)),
        }
    }

    /// Streams `payload` into `path` through a bounded buffer (multipart when large).
    async fn upload(
        &self,
        path: &Path,
        metadata: &Metadata,
        payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        let writer = object_writer(self.store.clone(), path.clone())
            .with_attributes(attributes_for(metadata));
        stream_into(writer, payload).await.map_err(|err| match err {
            StreamError::Body(err) => BackendError::Payload(err),
            StreamError::Store(err) => unavailable(err),
        })
    }
}

/// A bounded writer of one object: a single request up to [`PART_SIZE`], S3 multipart
/// beyond it with [`PARTS_IN_FLIGHT`] parts in flight, so no body sits whole in memory.
pub(crate) fn object_writer(store: Arc<dyn ObjectStore>, path: Path) -> BufWriter {
    BufWriter::with_capacity(store, path, PART_SIZE).with_max_concurrency(PARTS_IN_FLIGHT)
}

/// Why [`stream_into`] stored nothing.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// The body stream failed (the client's doing).
    Body(std::io::Error),
    /// The store failed.
    Store(std::io::Error),
}

/// Streams `payload` through `writer` into its object and completes it; on any failure
/// the writer is aborted, so no unfinished multipart upload lingers (and costs) and the
/// previous object, if any, stays. Returns the size written.
pub(crate) async fn stream_into(
    mut writer: BufWriter,
    mut payload: PayloadStream,
) -> Result<u64, StreamError> {
    let mut size = 0u64;
    let written = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(StreamError::Body)?;
            size += chunk.len() as u64;
            let put = writer.put(chunk).await;
            put.map_err(|err| StreamError::Store(std::io::Error::other(err)))?;
        }
        Ok(())
    }
    .await;
    if let Err(err) = written {
        if let Err(abort) = writer.abort().await {
            tracing::warn!(%abort, "cannot abort s3 multipart upload");
        }
        return Err(err);
    }
    // Completes the single put or the multipart upload; the writer is spent after.
    writer.shutdown().await.map_err(StreamError::Store)?;
    Ok(size)
}

#[async_trait]
impl Backend for S3Backend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn put(
        &self,
        id: &ObjectId,
        metadata: &Metadata,
        payload: PayloadStream,
    ) -> Result<u64, BackendError> {
        self.upload(&path_of(id), metadata, payload).await
    }

    async fn get(&self, id: &ObjectId) -> Result<Option<StoredObject>, BackendError> {
        let result = match self
            .store
            .get_opts(&path_of(id), GetOptions::default())
            .await
        {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(self.error(err)),
        };
        let metadata = decode_metadata(&result.attributes, result.meta.size)?;
        let store = self.store.clone();
        let path = result.meta.location.clone();
        let e_tag = result.meta.e_tag.clone();
        let stream = result
            .into_stream()
            .map_err(|err| std::io::Error::other(unavailable(err)))
            .boxed();
        // A range far into the object is its own ranged request, pinned to this version.
        let reopen = move |skip: u64, take: u64| -> PayloadStream {
            if take == 0 {
                return futures::stream::empty().boxed();
            }
            let options = GetOptions {
                if_match: e_tag,
                range: Some((skip..skip + take).into()),
                ..GetOptions::default()
            };
            futures::stream::once(async move { store.get_opts(&path, options).await })
                .map_ok(|result| result.into_stream())
                .try_flatten()
                .map_err(|err| std::io::Error::other(unavailable(err)))
                .boxed()
        };
        Ok(Some(StoredObject {
            metadata,
            payload: Payload::Remote {
                stream,
                reopen: Box::new(reopen),
            },
        }))
    }

    async fn head(&self, id: &ObjectId) -> Result<Option<Metadata>, BackendError> {
        Ok(self.head_version(&path_of(id)).await?.map(|(m, _)| m))
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), BackendError> {
        match self.store.delete(&path_of(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.error(err)),
        }
    }

    async fn update_metadata(
        &self,
        id: &ObjectId,
        expected: &Metadata,
        metadata: &Metadata,
    ) -> Result<bool, BackendError> {
        let path = path_of(id);
        let Some((current, version)) = self.head_version(&path).await? else {
            return Ok(false);
        };
        if !super::same_version(&current, expected) {
            return Ok(false);
        }
        let size = current.size.unwrap_or(0);
        // S3 metadata cannot change in place; the object is rewritten. Up to one part
        // this is a single conditional put on the version read above.
        let options = GetOptions {
            if_match: version.e_tag.clone(),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&path, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. })
            | Err(object_store::Error::Precondition { .. }) => return Ok(false),
            Err(err) => return Err(self.error(err)),
        };
        if size <= PART_SIZE as u64 {
            let body = result.bytes().await.map_err(|err| self.error(err))?;
            return self
                .put_if(&path, metadata, body, PutMode::Update(version))
                .await;
        }
        // Larger objects stream back through multipart, which S3 cannot make
        // conditional; a concurrent overwrite in this window may be undone.
        let stream = result
            .into_stream()
            .map_err(|err| std::io::Error::other(unavailable(err)))
            .boxed();
        self.upload(&path, metadata, stream).await?;
        Ok(true)
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<u64, BackendError> {
        let listed = self.list_objects().await?;
        let removed = futures::stream::iter(listed)
            .map(|object| async move {
                let Some((metadata, version)) = self.head_version(&object.location).await? else {
                    return Ok(0u64);
                };
                if !metadata.is_expired(now) {
                    return Ok(0);
                }
                // Skip objects rewritten since the HEAD (their deadline is new).
                if self
                    .head_version(&object.location)
                    .await?
                    .map(|(_, v)| v.e_tag)
                    != Some(version.e_tag)
                {
                    return Ok(0);
                }
                match self.store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(1),
                    Err(err) => Err(self.error(err)),
                }
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .try_fold(0u64, |acc, n| async move { Ok::<_, BackendError>(acc + n) })
            .await?;
        Ok(removed)
    }

    async fn compare_and_swap(
        &self,
        id: &ObjectId,
        expected: Option<&Metadata>,
        new: Option<(&Metadata, Bytes)>,
    ) -> Result<bool, BackendError> {
        let path = path_of(id);
        if expected.is_none() {
            return match new {
                Some((metadata, body)) => self.put_if(&path, metadata, body, PutMode::Create).await,
                None => Ok(self.head_version(&path).await?.is_none()),
            };
        }
        let current = self.head_version(&path).await?;
        if !matches_expected(current.as_ref().map(|(m, _)| m), expected) {
            return Ok(false);
        }
        let (_, version) = current.expect("matched a present version");
        match new {
            Some((metadata, body)) => {
                self.put_if(&path, metadata, body, PutMode::Update(version))
                    .await
            }
            // S3 deletes are unconditional here: a write racing this delete is lost.
            // The tiered backend never swaps on its long-term store.
            None => self.delete(id).await.map(|()| true),
        }
    }

    async fn list_ids(&self) -> Result<Option<Vec<(ObjectId, SystemTime)>>, BackendError> {
        let listed = self.list_objects().await?;
        // Objects not named by this backend (three parts, valid usecase and scopes) are
        // someone else's and skipped.
        Ok(Some(
            listed
                .iter()
                .filter_map(|o| Some((id_of(&o.location)?, SystemTime::from(o.last_modified))))
                .collect(),
        ))
    }

    fn native_multipart(&self) -> Option<&dyn super::NativeMultipart> {
        Some(self)
    }

    fn upload_staging(&self) -> Option<crate::uploads::Staging> {
        Some(crate::uploads::Staging::Bucket(self.staging.clone()))
    }

    async fn probe(&self) -> Result<(), BackendError> {
        let prefix = Path::from("strata-probe");
        match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(BackendError::Config(format!(
                "s3compatible {}: the bucket does not exist",
                self.shown
            ))),
            Err(err) => Err(self.error(err)),
        }
    }
}
