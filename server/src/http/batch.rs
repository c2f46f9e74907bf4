//! B1 `POST /v1/objects:batch/{usecase}/{scopes}/` (api §7, newest §7).
//!
//! The request is parsed as a stream of multipart/form-data parts, one operation each;
//! nothing but the current insert body (at most 1 MiB) is buffered. Each operation takes a
//! bulk permit and then a normal permit in request order (api §10), then runs as its own
//! spawned, panic-isolated service task. Results stream back as multipart parts in
//! completion order; a failing or panicking operation only ever yields its own error part.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, CONTROLS};
use tokio_util::sync::CancellationToken;

use super::auth::Auth;
use super::error::ApiError;
use super::extract::RawObjectPath;
use super::AppState;
use crate::auth::{AuthContext, Permission};
use crate::limits::bandwidth::Charge;
use crate::metrics::Operation;
use crate::object::id::{percent_decode_param, validate_usecase};
use crate::object::{Metadata, ObjectId, Scopes};
use crate::service::StorageService;

/// Part header naming the operation kind.
pub const HEADER_KIND: &str = "x-sn-batch-operation-kind";
/// Part header carrying the percent-encoded key.
pub const HEADER_KEY: &str = "x-sn-batch-operation-key";
/// Response part header: zero-based position of the operation in the request.
pub const HEADER_INDEX: &str = "x-sn-batch-operation-index";
/// Response part header: `<code> <reason>`.
pub const HEADER_STATUS: &str = "x-sn-batch-operation-status";

/// Largest insert part body (api §7).
pub const MAX_INSERT_BODY: usize = 1024 * 1024;
/// Operations per batch; later parts each get 413.
pub const MAX_OPERATIONS: usize = 1000;
/// Whole request body cap; hitting it mid-stream is reported as a 400 part.
pub const MAX_BODY: u64 = 1024 * 1024 * 1024;

/// Result parts that may wait for a slow reader before parsing pauses: room for every
/// operation of a full batch, so a client that sends the whole request before reading
/// the response never deadlocks against the server.
const RESULT_BUFFER: usize = MAX_OPERATIONS + 16;

/// Response key escaping: controls, `%` and non-ASCII (newest §7, as metadata values).
const KEY_ESCAPE: &AsciiSet = &CONTROLS.add(b'%');

/// Why one batch operation was refused before it ran (mapped to HTTP in `http::error`).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// No `x-sn-batch-operation-kind` header (400).
    #[error("client error: missing {HEADER_KIND} header")]
    MissingKind,
    /// A kind other than get, head, delete, insert (400).
    #[error("client error: unknown batch operation kind {0:?}")]
    UnknownKind(String),
    /// get/head/delete without a key (400).
    #[error("client error: missing {HEADER_KEY} header")]
    MissingKey,
    /// An insert part body above [`MAX_INSERT_BODY`] (413).
    #[error("client error: batch insert body exceeds {MAX_INSERT_BODY} bytes")]
    PartTooLarge,
    /// A part after the [`MAX_OPERATIONS`]th (413).
    #[error("client error: a batch holds at most {MAX_OPERATIONS} operations")]
    TooManyOperations,
    /// The request stream failed or exceeded [`MAX_BODY`] (400).
    #[error("client error: batch request stream failed: {0}")]
    Stream(String),
}

/// The four operation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Read the whole object.
    Get,
    /// Read the metadata.
    Head,
    /// Remove the object.
    Delete,
    /// Store the part body.
    Insert,
}

impl Kind {
    /// Parses the kind header, case-insensitively.
    pub fn parse(value: Option<&HeaderValue>) -> Result<Kind, BatchError> {
        let value = value.ok_or(BatchError::MissingKind)?;
        let text = String::from_utf8_lossy(value.as_bytes());
        match text.to_ascii_lowercase().as_str() {
            "get" => Ok(Kind::Get),
            "head" => Ok(Kind::Head),
            "delete" => Ok(Kind::Delete),
            "insert" => Ok(Kind::Insert),
            _ => Err(BatchError::UnknownKind(text.into_owned())),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Head => "head",
            Kind::Delete => "delete",
            Kind::Insert => "insert",
        }
    }

    /// The permission an operation of this kind needs (api §6.4).
    pub fn permission(self) -> Permission {
        match self {
            Kind::Get | Kind::Head => Permission::Read,
            Kind::Delete => Permission::Delete,
            Kind::Insert => Permission::Write,
        }
    }

    fn operation(self) -> Operation {
        match self {
            Kind::Get => Operation::BatchGet,
            Kind::Head => Operation::BatchHead,
            Kind::Delete => Operation::BatchDelete,
            Kind::Insert => Operation::BatchInsert,
        }
    }
}

/// Decodes a key header leniently: `%XX` is decoded, literal visible ASCII (including
/// `/` and space) is kept, and the result must be UTF-8 (newest §7).
pub fn decode_key(value: &HeaderValue) -> Result<String, ApiError> {
    let raw = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::InvalidPath(crate::object::id::PathError::InvalidUtf8))?;
    Ok(percent_decode_param(raw)?)
}

/// Encodes a key for the response key header.
pub fn encode_key(key: &str) -> HeaderValue {
    let encoded = percent_encoding::utf8_percent_encode(key, KEY_ESCAPE).to_string();
    HeaderValue::from_str(&encoded).expect("escaped keys are visible ASCII")
}

/// A fresh response boundary: `os-boundary-<32 lowercase hex>`.
pub fn new_boundary() -> String {
    format!("os-boundary-{}", uuid::Uuid::new_v4().simple())
}

/// One framed result part: `--b CRLF`, headers, `CRLF`, body, `CRLF` (api §7).
pub fn frame_part(
    boundary: &str,
    index: usize,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Bytes {
    let mut out = BytesMut::with_capacity(160 + boundary.len() + body.len());
    out.put_slice(b"--");
    out.put_slice(boundary.as_bytes());
    out.put_slice(b"\r\ncontent-disposition: form-data; name=part\r\n");
    out.put_slice(format!("{HEADER_INDEX}: {index}\r\n").as_bytes());
    out.put_slice(
        format!(
            "{HEADER_STATUS}: {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Unknown")
        )
        .as_bytes(),
    );
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The end of the response: `--b--`, no trailing CRLF.
pub fn closing(boundary: &str) -> Bytes {
    Bytes::from(format!("--{boundary}--"))
}

/// An error part: only index and status headers, the error's body (api §7).
async fn error_part(boundary: &str, index: usize, err: ApiError) -> Bytes {
    let response = err.into_response();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    frame_part(boundary, index, status, &HeaderMap::new(), &body)
}

/// Headers of a successful part: key and kind.
fn ok_headers(kind: Kind, key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(HEADER_KEY), encode_key(key));
    headers.insert(
        HeaderName::from_static(HEADER_KIND),
        HeaderValue::from_static(kind.as_str()),
    );
    headers
}

/// The request-level context every operation of one batch shares.
#[derive(Clone)]
struct Batch {
    service: StorageService,
    usecase: String,
    scopes: Scopes,
    boundary: String,
    /// Who sent the request; authenticated once, consulted per operation.
    auth: AuthContext,
    /// Per-operation throughput tokens and the use-case expiration policy for inserts.
    access: super::auth::Access,
    /// The bandwidth buckets the request was admitted against.
    charge: Charge,
}

/// One parsed operation, ready to be admitted.
struct Parsed {
    kind: Kind,
    id: ObjectId,
    insert: Option<(Metadata, Bytes)>,
}

/// Per-operation access control, after parsing and before the bulk permit, in api §7
/// step order: a throughput token (429), permission (403), use-case policy for inserts
/// (400), then the insert payload is charged to the request's bandwidth buckets. The
/// request itself was authenticated and admitted (killswitch, rate limits, its own
/// throughput token) once, before any part was read.
fn authorize(batch: &Batch, op: &Parsed) -> Result<(), ApiError> {
    batch
        .access
        .admit_operation(&batch.usecase, &batch.scopes)?;
    batch
        .auth
        .authorize(&batch.usecase, &batch.scopes, op.kind.permission())?;
    if let Some((metadata, body)) = &op.insert {
        batch
            .access
            .admission
            .check_policy(&batch.usecase, &metadata.expiration)?;
        batch.charge.add(body.len() as u64);
    }
    Ok(())
}

impl Batch {
    /// Parses one part's headers and (for inserts) its body.
    async fn parse(&self, field: &mut multer::Field<'static>) -> Result<Parsed, ApiError> {
        let headers = field.headers().clone();
        let kind = Kind::parse(headers.get(HEADER_KIND))?;
        let key = match headers.get(HEADER_KEY) {
            Some(value) => decode_key(value)?,
            None if kind == Kind::Insert => uuid::Uuid::new_v4().to_string(),
            None => return Err(BatchError::MissingKey.into()),
        };
        let id = ObjectId::new(self.usecase.clone(), self.scopes.clone(), key)?;
        let insert = if kind == Kind::Insert {
            let metadata = Metadata::from_headers(&headers, SystemTime::now())?;
            let mut body = BytesMut::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|err| BatchError::Stream(err.to_string()))?
            {
                if body.len() + chunk.len() > MAX_INSERT_BODY {
                    return Err(BatchError::PartTooLarge.into());
                }
                body.extend_from_slice(&chunk);
            }
            Some((metadata, body.freeze()))
        } else {
            None
        };
        Ok(Parsed { kind, id, insert })
    }

    /// Runs one admitted operation and frames its result.
    async fn execute(
        &self,
        index: usize,
        op: Parsed,
        permit: crate::service::limiter::Permit,
    ) -> Bytes {
        let Parsed { kind, id, insert } = op;
        let key = id.key.clone();
        let service = &self.service;
        let result: Result<(StatusCode, HeaderMap, Bytes), ApiError> = async {
            Ok(match (kind, insert) {
                (Kind::Insert, Some((metadata, body))) => {
                    service.batch_insert(permit, id, metadata, body).await?;
                    (StatusCode::CREATED, ok_headers(kind, &key), Bytes::new())
                }
                (Kind::Get, _) => match service.batch_get(permit, id).await? {
                    Some(object) => {
                        let mut headers = ok_headers(kind, &key);
                        let mut meta = HeaderMap::new();
                        object.metadata.to_headers(&mut meta);
                        // Batch parts never carry an attachment disposition (api §7).
                        meta.remove(header::CONTENT_DISPOSITION);
                        headers.extend(meta);
                        (StatusCode::OK, headers, object.payload)
                    }
                    None => (StatusCode::NOT_FOUND, ok_headers(kind, &key), Bytes::new()),
                },
                (Kind::Head, _) => match service.batch_head(permit, id).await? {
                    Some(metadata) => {
                        let mut headers = ok_headers(kind, &key);
                        let mut meta = HeaderMap::new();
                        metadata.to_headers(&mut meta);
                        meta.remove(header::CONTENT_DISPOSITION);
                        headers.extend(meta);
                        (StatusCode::NO_CONTENT, headers, Bytes::new())
                    }
                    None => (StatusCode::NOT_FOUND, ok_headers(kind, &key), Bytes::new()),
                },
                (Kind::Delete, _) => {
                    service.batch_delete(permit, id).await?;
                    (StatusCode::NO_CONTENT, ok_headers(kind, &key), Bytes::new())
                }
                (Kind::Insert, None) => unreachable!("insert parts always carry a body"),
            })
        }
        .await;
        match result {
            Ok((status, headers, body)) => {
                frame_part(&self.boundary, index, status, &headers, &body)
            }
            Err(err) => error_part(&self.boundary, index, err).await,
        }
    }
}

/// B1 handler: request-level checks (auth, path, killswitch and rate limit, boundary),
/// then the streamed response.
pub async fn post_batch(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let usecase = percent_decode_param(&path.usecase)?;
    validate_usecase(&usecase)?;
    let scopes = Scopes::parse(&percent_decode_param(&path.scopes)?)?;
    let charge = state.access.admit(&usecase, &scopes, &headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let request_boundary = multer::parse_boundary(content_type)
        .map_err(|err| ApiError::InvalidRequest(format!("invalid multipart boundary: {err}")))?;
    let batch = Batch {
        service: state.service.clone(),
        usecase,
        scopes,
        boundary: new_boundary(),
        auth,
        access: state.access.clone(),
        charge,
    };
    let content_type = format!("multipart/form-data; boundary=\"{}\"", batch.boundary);
    let metrics = state.metrics.clone();
    let stream = body
        .into_data_stream()
        .inspect_ok(move |chunk| metrics.add_bytes(true, chunk.len() as u64));
    let multipart = multer::Multipart::with_constraints(
        stream,
        request_boundary,
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(MAX_BODY)),
    );
    let (tx, rx) = mpsc::channel::<Bytes>(RESULT_BUFFER);
    let closing = closing(&batch.boundary);
    // The response body owns this guard: when the client hangs up the body is dropped,
    // the token fires and the batch's pending reads stop (its writes still complete).
    let gone = CancellationToken::new();
    let cancel_on_drop = gone.clone().drop_guard();
    tokio::spawn(drive(batch, multipart, tx, gone));
    let out_metrics = state.metrics.clone();
    let body = rx
        .chain(futures::stream::once(async move { closing }))
        .inspect(move |chunk| {
            let _held = &cancel_on_drop;
            out_metrics.add_bytes(false, chunk.len() as u64)
        })
        .map(Ok::<_, std::convert::Infallible>);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// Reads the parts in order, admitting and spawning each operation; every spawned
/// operation holds its own sender, so the response ends when the last one reported.
/// Once `gone` fires (the client hung up) waiting parts are dropped: the service
/// cancels the reads among them and lets the writes run to completion.
async fn drive(
    batch: Batch,
    mut multipart: multer::Multipart<'static>,
    mut tx: mpsc::Sender<Bytes>,
    gone: CancellationToken,
) {
    let mut index = 0usize;
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                let err = BatchError::Stream(err.to_string());
                let _ = tx
                    .send(error_part(&batch.boundary, index, err.into()).await)
                    .await;
                break;
            }
        };
        let this = index;
        index += 1;
        if this >= MAX_OPERATIONS {
            let part =
                error_part(&batch.boundary, this, BatchError::TooManyOperations.into()).await;
            // Dropping the field lets multer skip its body; a reader that went away ends
            // the batch (every admitted operation still runs to completion).
            drop(field);
            if tx.send(part).await.is_err() {
                break;
            }
            continue;
        }
        let parsed = batch.parse(&mut field).await;
        drop(field);
        let stream_failed = matches!(&parsed, Err(ApiError::Batch(BatchError::Stream(_))));
        let admitted = match parsed {
            Ok(op) => match authorize(&batch, &op) {
                Ok(()) => match batch.service.admit_bulk(op.kind.operation()).await {
                    Ok(permit) => Ok((op, permit)),
                    Err(err) => Err(ApiError::from(err)),
                },
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        match admitted {
            Ok((op, permit)) => {
                let batch = batch.clone();
                let mut tx = tx.clone();
                let gone = gone.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        biased;
                        () = gone.cancelled() => {}
                        part = batch.execute(this, op, permit) => {
                            let _ = tx.send(part).await;
                        }
                    }
                });
            }
            Err(err) => {
                let part = error_part(&batch.boundary, this, err).await;
                if tx.send(part).await.is_err() || stream_failed {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parts_byte_exact() {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(HEADER_KEY), encode_key("a b/é%"));
        let part = frame_part("os-boundary-x", 3, StatusCode::CREATED, &headers, b"");
        assert_eq!(
            &part[..],
            b"--os-boundary-x\r\ncontent-disposition: form-data; name=part\r\n\
              x-sn-batch-operation-index: 3\r\nx-sn-batch-operation-status: 201 Created\r\n\
              x-sn-batch-operation-key: a b/%C3%A9%25\r\n\r\n\r\n"
        );
        assert_eq!(&closing("b")[..], b"--b--");
    }

    #[test]
    fn boundary_is_32_lowercase_hex() {
        let b = new_boundary();
        let hex = b.strip_prefix("os-boundary-").unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }

    #[test]
    fn kinds_parse_case_insensitively() {
        assert_eq!(
            Kind::parse(Some(&HeaderValue::from_static("GeT"))).unwrap(),
            Kind::Get
        );
        assert!(matches!(Kind::parse(None), Err(BatchError::MissingKind)));
        assert!(matches!(
            Kind::parse(Some(&HeaderValue::from_static("copy"))),
            Err(BatchError::UnknownKind(k)) if k == "copy"
        ));
    }

    #[test]
    fn keys_decode_leniently() {
        let v = HeaderValue::from_static("dir/a b%25c %C3%A9");
        assert_eq!(decode_key(&v).unwrap(), "dir/a b%c é");
        let v = HeaderValue::from_static("dir%2Fa%20b");
        assert_eq!(decode_key(&v).unwrap(), "dir/a b");
        assert!(decode_key(&HeaderValue::from_static("%FF")).is_err());
    }
}
