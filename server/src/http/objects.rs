//! Handlers of the object routes (api O1–O5, newest E1, R1–R5 answered 501).
//!
//! Handlers only translate: parse the path, query and headers in the documented order,
//! call the storage service, and shape the response.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::auth::Auth;
use super::error::ApiError;
use super::range::parse_range;
use super::AppState;
use crate::auth::Permission;
use crate::backend::{Payload, PayloadStream};
use crate::limits::bandwidth::Charge;
use crate::metrics::Metrics;
use crate::object::expiration::MetadataUpdate;
use crate::object::id::{percent_decode_param, validate_usecase};
use crate::object::{Metadata, ObjectId, Scopes};
use crate::service::ExtendOutcome;

/// Query parameters of the object routes; other parameters (auth) are ignored here.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ObjectQuery {
    upload_type: Option<UploadType>,
    session: Option<String>,
}

/// The only upload type there is; any other value fails deserialization (400).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum UploadType {
    Resumable,
}

impl ObjectQuery {
    fn from_extractor(query: Result<Query<ObjectQuery>, QueryRejection>) -> Result<Self, ApiError> {
        query
            .map(|Query(q)| q)
            .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))
    }

    /// Resumable uploads are not implemented: create and session calls answer 501 and
    /// are never stored as plain inserts.
    fn reject_resumable(&self) -> Result<(), ApiError> {
        if self.upload_type.is_some() || self.session.is_some() {
            return Err(ApiError::NotImplemented);
        }
        Ok(())
    }
}

/// The still percent-encoded path of an object route, split into usecase, scopes and
/// key. The router has already matched the raw path; decoding happens here, once, so
/// `%2F` stays inside its segment and `%2541` means the key `%41`.
#[derive(Debug)]
pub struct RawObjectPath {
    usecase: String,
    scopes: String,
    key: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RawObjectPath {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(split_object_path(parts.uri.path()))
    }
}

/// Splits `/v1/objects…/{usecase}/{scopes}[/{key}]` (the route prefix may carry a
/// `:batch`-style suffix) without decoding anything.
pub fn split_object_path(path: &str) -> RawObjectPath {
    let rest = path.strip_prefix("/v1/").unwrap_or(path);
    let rest = rest.split_once('/').map_or("", |(_, rest)| rest);
    let (usecase, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (scopes, key) = match rest.split_once('/') {
        Some((scopes, key)) if !key.is_empty() => (scopes, Some(key.to_owned())),
        Some((scopes, _)) => (scopes, None),
        None => (rest, None),
    };
    RawObjectPath {
        usecase: usecase.to_owned(),
        scopes: scopes.to_owned(),
        key,
    }
}

/// Decodes and validates the path into an object address.
fn object_id(path: &RawObjectPath, generated_key: Option<String>) -> Result<ObjectId, ApiError> {
    let usecase = percent_decode_param(&path.usecase)?;
    validate_usecase(&usecase)?;
    let scopes = Scopes::parse(&percent_decode_param(&path.scopes)?)?;
    let key = match (&path.key, generated_key) {
        (_, Some(generated)) => generated,
        (Some(raw), None) => percent_decode_param(raw)?,
        (None, None) => String::new(),
    };
    Ok(ObjectId::new(usecase, scopes, key)?)
}

/// Turns the request body into a payload stream that meters incoming bytes and
/// charges them to the request's bandwidth buckets.
fn payload(body: Body, metrics: Metrics, charge: Charge) -> PayloadStream {
    body.into_data_stream()
        .map_err(std::io::Error::other)
        .inspect_ok(move |chunk: &Bytes| {
            metrics.add_bytes(true, chunk.len() as u64);
            charge.add(chunk.len() as u64);
        })
        .boxed()
}

/// Shared by O1 and O2, in the documented order (api §5.3): auth, path, killswitch and
/// rate limits, query, metadata, usecase policy, permission, then storage.
async fn insert(
    state: AppState,
    Auth(auth): Auth,
    path: RawObjectPath,
    query: Result<Query<ObjectQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
    generated_key: Option<String>,
) -> Result<Response, ApiError> {
    let status = if generated_key.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let id = object_id(&path, generated_key)?;
    let charge = state.access.admit(&id.usecase, &id.scopes, &headers)?;
    let query = ObjectQuery::from_extractor(query)?;
    let metadata = Metadata::from_headers(&headers, SystemTime::now())?;
    state
        .access
        .admission
        .check_policy(&id.usecase, &metadata.expiration)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Write)?;
    query.reject_resumable()?;
    let key = id.key.clone();
    state
        .service
        .insert(id, metadata, payload(body, state.metrics.clone(), charge))
        .await?;
    Ok((status, Json(serde_json::json!({ "key": key }))).into_response())
}

/// O1 `POST /v1/objects/{usecase}/{scopes}[/]`: insert under a generated UUIDv4 key (201).
pub async fn post_object(
    State(state): State<AppState>,
    auth: Auth,
    path: RawObjectPath,
    query: Result<Query<ObjectQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = uuid::Uuid::new_v4().to_string();
    insert(state, auth, path, query, headers, body, Some(key)).await
}

/// O2 `PUT …/{key}`: create or overwrite (200).
pub async fn put_object(
    State(state): State<AppState>,
    auth: Auth,
    path: RawObjectPath,
    query: Result<Query<ObjectQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    insert(state, auth, path, query, headers, body, None).await
}

fn metadata_headers(metadata: &Metadata) -> HeaderMap {
    let mut headers = HeaderMap::new();
    metadata.to_headers(&mut headers);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers
}

/// O3 `GET …/{key}` with optional `Range`.
pub async fn get_object(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = object_id(&path, None)?;
    let charge = state.access.admit(&id.usecase, &id.scopes, &headers)?;
    let range = match headers.get(header::RANGE) {
        Some(value) => parse_range(value)?,
        None => None,
    };
    auth.authorize(&id.usecase, &id.scopes, Permission::Read)?;
    let Some(object) = state.service.get(id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let total = object.metadata.size.unwrap_or(0);
    let mut response_headers = metadata_headers(&object.metadata);
    let metrics = state.metrics.clone();
    let meter_charge = charge.clone();
    let meter = move |chunk: &Bytes| {
        metrics.add_bytes(false, chunk.len() as u64);
        meter_charge.add(chunk.len() as u64);
    };

    let Some(range) = range else {
        response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
        let body = match object.payload {
            // Complete in memory: one body, sent with the head.
            Payload::Bytes(bytes) => {
                state.metrics.add_bytes(false, bytes.len() as u64);
                charge.add(bytes.len() as u64);
                Body::from(bytes)
            }
            payload => Body::from_stream(payload.into_stream().inspect_ok(meter)),
        };
        return Ok((StatusCode::OK, response_headers, body).into_response());
    };
    let span = match range.resolve(total) {
        Ok(span) => span,
        Err(_) => {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{total}")).expect("ascii"),
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
        }
    };
    let (start, end) = (*span.start(), *span.end());
    response_headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")).expect("ascii"),
    );
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
    let body = Body::from_stream(
        object
            .payload
            .slice(start, end - start + 1)
            .inspect_ok(meter),
    );
    Ok((StatusCode::PARTIAL_CONTENT, response_headers, body).into_response())
}

/// O4 `HEAD …/{key}`: metadata only, with `content-length` of the stored object.
pub async fn head_object(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = object_id(&path, None)?;
    state
        .access
        .admit(&id.usecase, &id.scopes, &request_headers)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Read)?;
    let Some(metadata) = state.service.head(id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut headers = metadata_headers(&metadata);
    if let Some(size) = metadata.size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    Ok((StatusCode::OK, headers).into_response())
}

/// O5 `DELETE …/{key}`: 204 whether or not the object existed.
pub async fn delete_object(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    query: Result<Query<ObjectQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = object_id(&path, None)?;
    state.access.admit(&id.usecase, &id.scopes, &headers)?;
    let query = ObjectQuery::from_extractor(query)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Delete)?;
    query.reject_resumable()?;
    state.service.delete(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// E1 `PATCH …/{key}`: extend the expiry deadline.
pub async fn patch_object(
    State(state): State<AppState>,
    Auth(auth): Auth,
    path: RawObjectPath,
    headers: HeaderMap,
    body: Result<Json<MetadataUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let now = SystemTime::now();
    let id = object_id(&path, None)?;
    state.access.admit(&id.usecase, &id.scopes, &headers)?;
    let Json(update) = match body {
        Ok(update) => update,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    auth.authorize(&id.usecase, &id.scopes, Permission::Write)?;
    Ok(
        match state
            .service
            .extend_expiry(id, update.extend_expiry, now)
            .await?
        {
            ExtendOutcome::Satisfied => StatusCode::NO_CONTENT.into_response(),
            ExtendOutcome::NotFound => StatusCode::NOT_FOUND.into_response(),
        },
    )
}

/// Multipart routes exist upstream; this server has no multipart backend yet (501).
pub async fn not_implemented() -> ApiError {
    ApiError::NotImplemented
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_raw_paths_without_decoding() {
        let p = split_object_path("/v1/objects/att/org=1;p=2/a%2Fb//c/");
        assert_eq!(p.usecase, "att");
        assert_eq!(p.scopes, "org=1;p=2");
        assert_eq!(p.key.as_deref(), Some("a%2Fb//c/"));
        let p = split_object_path("/v1/objects/att/_/");
        assert_eq!((p.scopes.as_str(), p.key), ("_", None));
        let p = split_object_path("/v1/objects/att/_");
        assert_eq!((p.scopes.as_str(), p.key), ("_", None));
        let p = split_object_path("/v1/objects/att/_//x");
        assert_eq!(p.key.as_deref(), Some("/x"));
    }
}
