//! Handlers of the object routes (api O1–O5, newest E1; R1–R5 go to `http::resumable`).
//!
//! Handlers only translate: parse the path, query and headers in the documented order,
//! call the storage service, and shape the response.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::auth::Auth;
use super::error::ApiError;
use super::extract::{NewObjectPath, ObjectPath, ObjectQuery, RequestTime};
use super::range::parse_range;
use super::resumable::{self, Intent};
use super::AppState;
use crate::auth::Permission;
use crate::backend::{Payload, PayloadStream};
use crate::http::patch::MetadataUpdate;
use crate::limits::bandwidth::Charge;
use crate::metrics::Metrics;
use crate::object::{Metadata, ObjectId};
use crate::service::ExtendOutcome;

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

/// Shared by O1 and O2, in the documented order (api §5.3): auth, path (both
/// extracted), killswitch and rate limits, query, metadata, usecase policy, permission,
/// then storage. Resumable creates and chunks are admitted and authorized as writes.
#[allow(clippy::too_many_arguments)]
async fn insert(
    state: AppState,
    Auth(auth): Auth,
    id: ObjectId,
    query: ObjectQuery,
    RequestTime(now): RequestTime,
    headers: HeaderMap,
    body: Body,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let charge = state.access.admit(&id.usecase, &id.scopes, &headers)?;
    match query.intent()? {
        Intent::Create => {
            auth.authorize(&id.usecase, &id.scopes, Permission::Write)?;
            return resumable::create(&state, id, &headers, body).await;
        }
        Intent::Session(token) => {
            auth.authorize(&id.usecase, &id.scopes, Permission::Write)?;
            return resumable::chunk(&state, id, token, &headers, body).await;
        }
        Intent::Plain => {}
    }
    let metadata = Metadata::from_headers(&headers, now)?;
    state
        .access
        .admission
        .check_policy(&id.usecase, &metadata.expiration)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Write)?;
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
    NewObjectPath(id): NewObjectPath,
    query: ObjectQuery,
    now: RequestTime,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    insert(
        state,
        auth,
        id,
        query,
        now,
        headers,
        body,
        StatusCode::CREATED,
    )
    .await
}

/// O2 `PUT …/{key}`: create or overwrite (200).
pub async fn put_object(
    State(state): State<AppState>,
    auth: Auth,
    ObjectPath(id): ObjectPath,
    query: ObjectQuery,
    now: RequestTime,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    insert(state, auth, id, query, now, headers, body, StatusCode::OK).await
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
    ObjectPath(id): ObjectPath,
    RequestTime(now): RequestTime,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let charge = state.access.admit(&id.usecase, &id.scopes, &headers)?;
    let range = match headers.get(header::RANGE) {
        Some(value) => parse_range(value)?,
        None => None,
    };
    auth.authorize(&id.usecase, &id.scopes, Permission::Read)?;
    let Some(object) = state.service.get(id, now).await? else {
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
    ObjectPath(id): ObjectPath,
    RequestTime(now): RequestTime,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .access
        .admit(&id.usecase, &id.scopes, &request_headers)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Read)?;
    let Some(metadata) = state.service.head(id, now).await? else {
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
    ObjectPath(id): ObjectPath,
    query: ObjectQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.access.admit(&id.usecase, &id.scopes, &headers)?;
    auth.authorize(&id.usecase, &id.scopes, Permission::Delete)?;
    match query.intent()? {
        Intent::Session(token) => return resumable::cancel(&state, id, token).await,
        Intent::Create => {
            return Err(ApiError::InvalidQuery(
                "upload_type=resumable is not valid on DELETE".into(),
            ))
        }
        Intent::Plain => {}
    }
    state.service.delete(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// E1 `PATCH …/{key}`: extend the expiry deadline.
pub async fn patch_object(
    State(state): State<AppState>,
    Auth(auth): Auth,
    ObjectPath(id): ObjectPath,
    RequestTime(now): RequestTime,
    headers: HeaderMap,
    body: Result<Json<MetadataUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
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
