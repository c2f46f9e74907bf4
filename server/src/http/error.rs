//! The one place where errors become HTTP responses (api §5).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::bounds::{find_timeout, BodyTimeout};
use super::range::RangeError;
use crate::auth::AuthError;
use crate::backend::BackendError;
use crate::limits::{AdmissionError, PolicyError};
use crate::object::id::PathError;
use crate::object::metadata::MetadataError;
use crate::service::ServiceError;
use crate::uploads::multipart::MultipartError;
use crate::uploads::resumable::ResumableError;

/// Everything a request handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed usecase, scopes or key in the path (400 plain text).
    #[error("Invalid URL: {0}")]
    InvalidPath(#[from] PathError),
    /// A query string that does not deserialize (400 plain text).
    #[error("Invalid query: {0}")]
    InvalidQuery(String),
    /// A client mistake reported as 400 JSON (`client error: …`).
    #[error("client error: {0}")]
    Client(String),
    /// A request-level protocol error such as a bad multipart boundary (400 plain text).
    #[error("{0}")]
    InvalidRequest(String),
    /// A batch operation refused before it ran (400 or 413 JSON, as a result part).
    #[error(transparent)]
    Batch(#[from] super::batch::BatchError),
    /// Bad metadata headers on an insert (400 JSON).
    #[error("client error: invalid metadata")]
    Metadata(#[from] MetadataError),
    /// Bad `Range` header (400 JSON).
    #[error("client error: invalid Range header: {0}")]
    Range(#[from] RangeError),
    /// A feature the server does not implement (yet) for this route (501 JSON).
    #[error("service error: not implemented")]
    NotImplemented,
    /// Authentication or authorization failed (400/401/403 JSON).
    #[error("auth error: {0}")]
    Auth(#[from] AuthError),
    /// A killswitch (403 text) or a rate limit (429 text) refused the request.
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// The insert's expiration policy is not allowed for its usecase (400 JSON).
    #[error("client error: use case policy violation")]
    Policy(#[from] PolicyError),
    /// The storage service failed or refused.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

#[derive(serde::Serialize)]
struct ErrorBody {
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<String>,
}

fn causes(err: &dyn std::error::Error) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push(cause.to_string());
        next = cause.source();
    }
    out
}

/// A JSON error response in the upstream `{"detail","causes"}` shape.
pub fn json_error(status: StatusCode, detail: String, causes: Vec<String>) -> Response {
    (status, axum::Json(ErrorBody { detail, causes })).into_response()
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// 408 for a request body cut off by `http.body_idle_timeout` or `http.request_timeout`
/// (however deep in the error chain the timeout sits). The connection closes: the rest
/// of the body will not be read.
fn body_timeout(timeout: BodyTimeout) -> Response {
    let mut response = json_error(
        StatusCode::REQUEST_TIMEOUT,
        format!("client error: {timeout}"),
        Vec::new(),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(timeout) = find_timeout(&self) {
            return body_timeout(timeout);
        }
        match &self {
            ApiError::InvalidPath(_) | ApiError::InvalidQuery(_) | ApiError::InvalidRequest(_) => {
                plain(StatusCode::BAD_REQUEST, self.to_string())
            }
            ApiError::Metadata(err) => {
                let mut all = vec![err.to_string()];
                all.extend(causes(err));
                json_error(StatusCode::BAD_REQUEST, self.to_string(), all)
            }
            ApiError::Range(err) => {
                json_error(StatusCode::BAD_REQUEST, self.to_string(), causes(err))
            }
            ApiError::Client(_) => {
                json_error(StatusCode::BAD_REQUEST, self.to_string(), Vec::new())
            }
            ApiError::Batch(err) => {
                use super::batch::BatchError;
                let status = match err {
                    BatchError::PartTooLarge | BatchError::TooManyOperations => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    BatchError::MissingKind
                    | BatchError::UnknownKind(_)
                    | BatchError::MissingKey
                    | BatchError::Stream(_) => StatusCode::BAD_REQUEST,
                };
                json_error(status, self.to_string(), Vec::new())
            }
            ApiError::NotImplemented => {
                json_error(StatusCode::NOT_IMPLEMENTED, self.to_string(), Vec::new())
            }
            ApiError::Auth(err) => {
                let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNAUTHORIZED);
                json_error(status, self.to_string(), vec![err.to_string()])
            }
            ApiError::Admission(err) => {
                let status = match err {
                    AdmissionError::Killswitched => StatusCode::FORBIDDEN,
                    AdmissionError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                };
                plain(status, err.to_string())
            }
            ApiError::Policy(err) => json_error(
                StatusCode::BAD_REQUEST,
                self.to_string(),
                vec![err.to_string()],
            ),
            ApiError::Service(err) => service_error(err),
        }
    }
}

/// 499 "client closed request": not in the HTTP registry, but what proxies log for it.
fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).expect("499 is in the valid range")
}

fn service_error(err: &ServiceError) -> Response {
    let (status, prefix) = match err {
        ServiceError::AtCapacity(_) => (StatusCode::TOO_MANY_REQUESTS, "service error"),
        // The client is gone, so no one reads this; 499 (as proxies log it) keeps it out
        // of the 5xx error rate.
        ServiceError::Cancelled => (client_closed_request(), "client error"),
        ServiceError::Backend(BackendError::Payload(_)) => {
            (StatusCode::BAD_REQUEST, "client error")
        }
        ServiceError::ExtendRejected(_) | ServiceError::ExtendConflict => {
            (StatusCode::CONFLICT, "client error")
        }
        ServiceError::ExtendInvalid(_) => (StatusCode::BAD_REQUEST, "client error"),
        ServiceError::Backend(BackendError::Unavailable { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, "service error")
        }
        ServiceError::Backend(BackendError::TooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "client error")
        }
        ServiceError::Unsupported => (StatusCode::NOT_IMPLEMENTED, "service error"),
        ServiceError::Multipart(
            MultipartError::BadDigest
            | MultipartError::Payload(_)
            | MultipartError::InvalidPart(_)
            | MultipartError::InvalidPartOrder
            | MultipartError::Plan(_)
            | MultipartError::Backend(BackendError::Rejected { .. }),
        ) => (StatusCode::BAD_REQUEST, "client error"),
        ServiceError::Multipart(_) => (StatusCode::INTERNAL_SERVER_ERROR, "service error"),
        ServiceError::Resumable(err) => match err {
            ResumableError::NonCanonicalToken
            | ResumableError::ChunkExceedsUploadLength(_)
            | ResumableError::Payload(_) => (StatusCode::BAD_REQUEST, "client error"),
            ResumableError::UnknownSession => (StatusCode::NOT_FOUND, "client error"),
            ResumableError::Gone => (StatusCode::GONE, "client error"),
            ResumableError::OffsetMismatch { expected, .. } => {
                let mut response = json_error(
                    StatusCode::CONFLICT,
                    format!("client error: {err}"),
                    Vec::new(),
                );
                response.headers_mut().insert(
                    axum::http::HeaderName::from_static("upload-offset"),
                    axum::http::HeaderValue::from(*expected),
                );
                return response;
            }
            ResumableError::Io(_) | ResumableError::Backend(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "service error")
            }
            ResumableError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "service error"),
        },
        ServiceError::Panic(_) | ServiceError::TaskDropped | ServiceError::Backend(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "service error")
        }
    };
    if status.is_server_error() {
        tracing::error!(error = %err, "request failed");
    }
    json_error(status, format!("{prefix}: {err}"), causes(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_is_499_and_not_a_server_error() {
        let response = ApiError::from(ServiceError::Cancelled).into_response();
        assert_eq!(response.status().as_u16(), 499);
        assert!(!response.status().is_server_error());
    }
}
