//! Resumable uploads on the object routes (api-newest §2.9, R1–R5).
//!
//! The object handlers classify the query first: `upload_type=resumable` creates a
//! session, `session=` addresses one, neither is an ordinary insert or delete. The
//! session token is opaque to this layer; the service checks its seal and binding.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::error::ApiError;
use super::AppState;
use crate::object::{Metadata, ObjectId};
use crate::uploads::resumable::Progress;

/// Request header: total stored bytes, at create.
pub const UPLOAD_LENGTH: &str = "upload-length";
/// Request header: chunk offset or `*`; response header: the server's offset.
pub const UPLOAD_OFFSET: &str = "upload-offset";

/// What an object-route request asks for, by its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// An ordinary insert or delete.
    Plain,
    /// Create a session (`upload_type=resumable`).
    Create,
    /// Address an existing session (`session=<token>`).
    Session(String),
}

impl Intent {
    /// Classifies the query; both parameters at once is refused (400).
    pub fn classify(create: bool, session: Option<String>) -> Result<Intent, ApiError> {
        match (create, session) {
            (true, Some(_)) => Err(ApiError::InvalidQuery(
                "upload_type and session cannot be combined".into(),
            )),
            (true, None) => Ok(Intent::Create),
            (false, Some(token)) => Ok(Intent::Session(token)),
            (false, None) => Ok(Intent::Plain),
        }
    }
}

/// A header that must be one decimal number and nothing else.
fn digits(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let valid = values.next().is_none()
        && !value.is_empty()
        && value.as_bytes().iter().all(u8::is_ascii_digit);
    let parsed = std::str::from_utf8(value.as_bytes())
        .ok()
        .filter(|_| valid)
        .and_then(|text| text.parse::<u64>().ok());
    parsed
        .map(Some)
        .ok_or_else(|| ApiError::Client(format!("invalid {name} header")))
}

/// Fails unless the body is empty (it is read, at most one byte of it).
async fn require_empty(headers: &HeaderMap, body: Body, message: &str) -> Result<(), ApiError> {
    let declared = digits(headers, header::CONTENT_LENGTH.as_str()).unwrap_or(Some(1));
    if declared.is_some_and(|n| n > 0) {
        return Err(ApiError::Client(message.into()));
    }
    match axum::body::to_bytes(body, 0).await {
        Ok(bytes) if bytes.is_empty() => Ok(()),
        _ => Err(ApiError::Client(message.into())),
    }
}

/// R1/R2: create a session; metadata is fixed here.
pub async fn create(
    state: &AppState,
    id: ObjectId,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let metadata = Metadata::from_headers(headers, SystemTime::now())?;
    state
        .access
        .admission
        .check_policy(&id.usecase, &metadata.expiration)?;
    let length = digits(headers, UPLOAD_LENGTH)?
        .ok_or_else(|| ApiError::Client("Upload-Length header is required".into()))?;
    if length == 0 {
        return Err(ApiError::Client("Upload-Length must be at least 1".into()));
    }
    require_empty(
        headers,
        body,
        "resumable session creation must be sent with an empty body",
    )
    .await?;
    let key = id.key.clone();
    let created = state.service.resumable_create(id, metadata, length).await?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "key": key, "session": created.token, "granularity": 0 })),
    )
        .into_response())
}

fn progress(progress: Progress, key: String) -> Response {
    match progress {
        Progress::Incomplete(offset) => (
            StatusCode::NO_CONTENT,
            [(
                HeaderName::from_static(UPLOAD_OFFSET),
                HeaderValue::from(offset),
            )],
        )
            .into_response(),
        Progress::Complete => {
            (StatusCode::CREATED, Json(serde_json::json!({ "key": key }))).into_response()
        }
    }
}

/// R3/R4: write a chunk, or query the offset with `Upload-Offset: *`.
pub async fn chunk(
    state: &AppState,
    id: ObjectId,
    token: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = id.key.clone();
    let offset = headers.get(UPLOAD_OFFSET);
    if offset.is_some_and(|v| v.as_bytes() == b"*") {
        require_empty(
            headers,
            body,
            "Upload-Offset: * must be sent with an empty body",
        )
        .await?;
        let done = state.service.resumable_offset(id, token).await?;
        return Ok(progress(done, key));
    }
    let offset = digits(headers, UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::Client("Upload-Offset header is required".into()))?;
    let len = digits(headers, header::CONTENT_LENGTH.as_str())
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::Client("content-length header is required".into()))?;
    let metrics = state.metrics.clone();
    let payload = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .inspect_ok(move |chunk: &Bytes| metrics.add_bytes(true, chunk.len() as u64))
        .boxed();
    let done = state
        .service
        .resumable_chunk(id, token, offset, len, payload)
        .await?;
    Ok(progress(done, key))
}

/// R5: cancel a session.
pub async fn cancel(state: &AppState, id: ObjectId, token: String) -> Result<Response, ApiError> {
    state.service.resumable_cancel(id, token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(Intent::classify(false, None).unwrap(), Intent::Plain);
        assert_eq!(Intent::classify(true, None).unwrap(), Intent::Create);
        assert_eq!(
            Intent::classify(false, Some("t".into())).unwrap(),
            Intent::Session("t".into())
        );
        assert!(Intent::classify(true, Some("t".into())).is_err());
    }

    #[test]
    fn digit_headers_are_strict() {
        let mut h = HeaderMap::new();
        assert_eq!(digits(&h, UPLOAD_LENGTH).unwrap(), None);
        h.insert(UPLOAD_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(digits(&h, UPLOAD_LENGTH).unwrap(), Some(42));
        for bad in ["+4", "4 ", "", "0x1", "-1", "99999999999999999999999"] {
            h.insert(UPLOAD_LENGTH, HeaderValue::from_static(bad));
            assert!(digits(&h, UPLOAD_LENGTH).is_err(), "{bad:?}");
        }
        h.insert(UPLOAD_LENGTH, HeaderValue::from_static("1"));
        h.append(UPLOAD_LENGTH, HeaderValue::from_static("1"));
        assert!(digits(&h, UPLOAD_LENGTH).is_err());
    }
}
