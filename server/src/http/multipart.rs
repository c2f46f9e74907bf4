//! Multipart upload routes M1–M6 (api §2.7).
//!
//! Query errors are 400 plain text; `upload_id` is checked like a filesystem path
//! (absolute, a leading `.` component or any `..` component is refused) before anything
//! else sees it. Completion always answers 200 and streams one space per second while
//! the object is assembled, then exactly one JSON document.

use std::path::{Component, Path};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, TryStreamExt};

use super::auth::Auth;
use super::error::ApiError;
use super::extract::RawObjectPath;
use super::AppState;
use crate::auth::{AuthContext, Permission};
use crate::limits::bandwidth::Charge;
use crate::object::{Metadata, ObjectId};
use crate::service::ServiceError;
use crate::uploads::multipart::{MultipartError, PartsPage};

/// Query parameters of M3–M6, taken as text so each gets its documented error.
#[derive(Debug, Default, serde::Deserialize)]
pub struct MultipartQuery {
    upload_id: Option<String>,
    part_number: Option<String>,
    max_parts: Option<String>,
    part_number_marker: Option<String>,
}

fn query(q: Result<Query<MultipartQuery>, QueryRejection>) -> Result<MultipartQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))
}

/// Checks `upload_id` as api §2.7 demands.
pub fn validate_upload_id(upload_id: Option<&str>) -> Result<String, ApiError> {
    let id = upload_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::InvalidQuery("missing upload_id".into()))?;
    let path = Path::new(id);
    let mut components = path.components();
    let bad = path.is_absolute()
        || matches!(
            components.next(),
            Some(Component::CurDir | Component::ParentDir)
        )
        || path.components().any(|c| matches!(c, Component::ParentDir))
        || id.starts_with('.');
    if bad {
        return Err(ApiError::InvalidQuery(format!("invalid upload_id {id:?}")));
    }
    Ok(id.to_owned())
}

/// Parses `part_number`: an integer 1..=2³²−1.
pub fn parse_part_number(value: Option<&str>) -> Result<u32, ApiError> {
    let text = value.ok_or_else(|| ApiError::InvalidQuery("missing part_number".into()))?;
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ApiError::InvalidQuery(format!(
            "invalid part_number {text:?}: expected an integer from 1 to 4294967295"
        ))),
    }
}

fn optional_u32(name: &str, value: Option<&str>) -> Result<Option<u32>, ApiError> {
    value
        .map(|text| {
            text.parse::<u32>()
                .map_err(|_| ApiError::InvalidQuery(format!("invalid {name} {text:?}")))
        })
        .transpose()
}

/// What M3–M6 address: an existing upload of one object, admitted for writing.
struct UploadTarget {
    id: ObjectId,
    upload_id: String,
    query: MultipartQuery,
    /// What the request's payload bytes are charged to.
    charge: Charge,
}

/// The preamble M3–M6 share, in api §5.3/§6.4 order: the path, killswitch and rate
/// limits, the `object.write` permission every multipart call needs, then the query and
/// its `upload_id`.
fn upload_target(
    state: &AppState,
    auth: &AuthContext,
    path: RawObjectPath,
    q: Result<Query<MultipartQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<UploadTarget, ApiError> {
    let id = path.decode(None)?;
    let charge = state.access.admit(&id.usecase, &id.scopes, headers)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Write)?;
    let query = query(q)?;
    let upload_id = validate_upload_id(query.upload_id.as_deref())?;
    Ok(UploadTarget {
        id,
        upload_id,
        query,
        charge,
    })
}

async fn initiate(
    state: AppState,
    auth: AuthContext,
    path: RawObjectPath,
    headers: HeaderMap,
    key: Option<String>,
) -> Result<Response, ApiError> {
    let id = path.decode(key)?;
    state.access.admit(&id.usecase, &id.scopes, &headers)?;
    let metadata = Metadata::from_headers(&headers, SystemTime::now())?;
    state
        .access
        .admission
        .check_policy(&id.usecase, &metadata.expiration)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Write)?;
    let key = id.key.clone();
    let upload_id = state.service.multipart_initiate(id, metadata).await?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({ "key": key, "upload_id": upload_id })),
    )
        .into_response())
}

/// M1 `POST /v1/objects:multipart/{usecase}/{scopes}[/]`: initiate under a UUIDv4 key.
pub async fn initiate_post(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    initiate(
        state,
        auth,
        path,
        headers,
        Some(uuid::Uuid::new_v4().to_string()),
    )
    .await
}

/// M2 `PUT /v1/objects:multipart/{usecase}/{scopes}/{key}`: initiate for the client's key.
pub async fn initiate_put(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    initiate(state, auth, path, headers, None).await
}

/// M3 `PUT /v1/objects:multipart:parts/…?upload_id=&part_number=`.
pub async fn upload_part(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    q: Result<Query<MultipartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let UploadTarget {
        id,
        upload_id,
        query,
        charge,
    } = upload_target(&state, &auth, path, q, &headers)?;
    let part_number = parse_part_number(query.part_number.as_deref())?;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .ok_or_else(|| ApiError::Client("Content-Length header is required".into()))?;
    let content_md5 = match headers.get("content-md5") {
        None => None,
        Some(value) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .ok()
                .and_then(|d| <[u8; 16]>::try_from(d).ok())
                .ok_or_else(|| {
                    ApiError::Client("Content-MD5 must be the base64 of a 16-byte digest".into())
                })?;
            Some(decoded)
        }
    };
    let metrics = state.metrics.clone();
    let payload = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .inspect_ok(move |chunk: &Bytes| {
            metrics.add_bytes(true, chunk.len() as u64);
            charge.add(chunk.len() as u64);
        })
        .boxed();
    let etag = state
        .service
        .multipart_upload_part(id, upload_id, part_number, length, payload, content_md5)
        .await?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "etag": etag }))).into_response())
}

/// RFC 3339 UTC with `Z`: no fraction for whole seconds, else exactly 9 digits.
pub fn format_last_modified(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let base = dt
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .expect("formattable");
    match dt.nanosecond() {
        0 => format!("{base}Z"),
        n => format!("{base}.{n:09}Z"),
    }
}

fn page_json(page: PartsPage) -> serde_json::Value {
    let parts: Vec<serde_json::Value> = page
        .parts
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "part_number": p.part_number,
                "etag": p.etag,
                "last_modified": format_last_modified(p.last_modified),
                "size": p.size,
            })
        })
        .collect();
    let mut out = serde_json::json!({ "parts": parts, "is_truncated": page.is_truncated });
    if let Some(marker) = page.next_part_number_marker {
        out["next_part_number_marker"] = marker.into();
    }
    out
}

/// M4 `GET /v1/objects:multipart:parts/…?upload_id=[&max_parts=][&part_number_marker=]`.
pub async fn list_parts(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    q: Result<Query<MultipartQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let UploadTarget {
        id,
        upload_id,
        query,
        ..
    } = upload_target(&state, &auth, path, q, &headers)?;
    let max_parts = optional_u32("max_parts", query.max_parts.as_deref())?;
    let marker = optional_u32("part_number_marker", query.part_number_marker.as_deref())?;
    let page = state
        .service
        .multipart_list_parts(id, upload_id, max_parts, marker)
        .await?;
    Ok((StatusCode::OK, Json(page_json(page))).into_response())
}

/// The M5 request body.
#[derive(Debug, serde::Deserialize)]
pub struct CompleteBody {
    parts: Vec<CompletePart>,
}

/// One listed part of M5.
#[derive(Debug, serde::Deserialize)]
pub struct CompletePart {
    part_number: u32,
    etag: String,
}

/// The final document of a completion.
fn completion_document(result: Result<u64, ServiceError>, key: &str) -> Bytes {
    let value = match result {
        Ok(_) => serde_json::json!({ "key": key }),
        Err(ServiceError::Multipart(err)) => {
            let code = err.code();
            let message = match &err {
                MultipartError::InvalidPart(_)
                | MultipartError::InvalidPartOrder
                | MultipartError::Plan(_) => err.to_string(),
                _ => format!("service error: {err}"),
            };
            serde_json::json!({ "error": { "code": code, "message": message } })
        }
        Err(err) => serde_json::json!({
            "error": { "code": "internal error", "message": format!("service error: {err}") }
        }),
    };
    Bytes::from(serde_json::to_vec(&value).expect("serializable"))
}

/// M5 `POST /v1/objects:multipart:complete/…?upload_id=`.
pub async fn complete(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    q: Result<Query<MultipartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let UploadTarget { id, upload_id, .. } = upload_target(&state, &auth, path, q, &headers)?;
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let key = id.key.clone();
    let parts = body
        .parts
        .into_iter()
        .map(|p| (p.part_number, p.etag))
        .collect();
    let service = state.service.clone();
    let (mut tx, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let work = service.multipart_complete(id, upload_id, parts);
        tokio::pin!(work);
        let start = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut ticker = tokio::time::interval_at(start, Duration::from_secs(1));
        loop {
            tokio::select! {
                result = &mut work => {
                    let _ = tx.send(completion_document(result, &key)).await;
                    break;
                }
                _ = ticker.tick() => {
                    // A client that went away does not stop the assembly.
                    let _ = tx.send(Bytes::from_static(b" ")).await;
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(rx.map(Ok::<_, std::convert::Infallible>)),
    )
        .into_response())
}

/// M6 `DELETE /v1/objects:multipart/…?upload_id=`.
pub async fn abort(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    q: Result<Query<MultipartQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let UploadTarget { id, upload_id, .. } = upload_target(&state, &auth, path, q, &headers)?;
    state.service.multipart_abort(id, upload_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn upload_ids_are_checked_like_paths() {
        for bad in [
            None,
            Some(""),
            Some("/etc"),
            Some("../x"),
            Some("a/../b"),
            Some("./a"),
            Some(".hidden"),
        ] {
            assert!(validate_upload_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_upload_id(Some("0190abcd")).unwrap(), "0190abcd");
    }

    #[test]
    fn part_numbers() {
        assert_eq!(parse_part_number(Some("1")).unwrap(), 1);
        assert_eq!(parse_part_number(Some("4294967295")).unwrap(), u32::MAX);
        for bad in [None, Some("0"), Some("-1"), Some("x"), Some("4294967296")] {
            assert!(parse_part_number(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn last_modified_formats() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_last_modified(t), "2023-11-14T22:13:20Z");
        let t = t + Duration::from_nanos(5_000);
        assert_eq!(format_last_modified(t), "2023-11-14T22:13:20.000005000Z");
    }
}
