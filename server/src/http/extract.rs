//! Typed extractors of the object routes: the object's address, the query, the byte
//! range and the request time, each parsed once with its documented error, so handlers
//! read as a few lines of intent.
//!
//! Axum runs extractors in argument order, so a handler's signature is also the order
//! in which a bad request is diagnosed (path, then query, then headers).

use std::convert::Infallible;
use std::time::SystemTime;

use axum::extract::{FromRequestParts, Query};
use axum::http::header;
use axum::http::request::Parts;

use super::error::ApiError;
use super::range::{parse_range, ByteRange};
use crate::object::id::{percent_decode_param, validate_usecase};
use crate::object::{ObjectId, Scopes};

/// The still percent-encoded path of an object route, split into usecase, scopes and
/// key. The router has already matched the raw path; decoding happens once, in
/// [`RawObjectPath::decode`], so `%2F` stays inside its segment and `%2541` means the
/// key `%41`.
#[derive(Debug)]
pub struct RawObjectPath {
    /// Usecase segment, still encoded.
    pub usecase: String,
    /// Scopes segment, still encoded.
    pub scopes: String,
    /// Everything after the scopes, still encoded; `None` on collection routes.
    pub key: Option<String>,
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

impl RawObjectPath {
    /// Decodes and validates the path into an object address; `generated_key` (POST)
    /// takes the place of the path's key.
    pub fn decode(&self, generated_key: Option<String>) -> Result<ObjectId, ApiError> {
        let usecase = percent_decode_param(&self.usecase)?;
        validate_usecase(&usecase)?;
        let scopes = Scopes::parse(&percent_decode_param(&self.scopes)?)?;
        let key = match (&self.key, generated_key) {
            (_, Some(generated)) => generated,
            (Some(raw), None) => percent_decode_param(raw)?,
            (None, None) => String::new(),
        };
        Ok(ObjectId::new(usecase, scopes, key)?)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RawObjectPath {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(split_object_path(parts.uri.path()))
    }
}

/// The address of the object a key route names (`…/{usecase}/{scopes}/{key}`).
#[derive(Debug)]
pub struct ObjectPath(pub ObjectId);

impl<S: Send + Sync> FromRequestParts<S> for ObjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        split_object_path(parts.uri.path())
            .decode(None)
            .map(ObjectPath)
    }
}

/// The address of a new object inserted on a collection route (`POST …/{scopes}`),
/// under a freshly generated UUIDv4 key.
#[derive(Debug)]
pub struct NewObjectPath(pub ObjectId);

impl<S: Send + Sync> FromRequestParts<S> for NewObjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let key = uuid::Uuid::new_v4().to_string();
        split_object_path(parts.uri.path())
            .decode(Some(key))
            .map(NewObjectPath)
    }
}

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
    /// Whether this is a plain request, a resumable create or a session call.
    pub fn intent(self) -> Result<super::resumable::Intent, ApiError> {
        super::resumable::Intent::classify(self.upload_type.is_some(), self.session)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ObjectQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<ObjectQuery>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| q)
            .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))
    }
}

/// The `Range` header, parsed (`None` when absent or when it asks for several ranges).
#[derive(Debug)]
pub struct RangeHeader(pub Option<ByteRange>);

impl<S: Send + Sync> FromRequestParts<S> for RangeHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match parts.headers.get(header::RANGE) {
            Some(value) => Ok(RangeHeader(parse_range(value)?)),
            None => Ok(RangeHeader(None)),
        }
    }
}

/// The request time: the one clock reading an operation uses for creation times,
/// expiry checks, TTI bumps and extensions.
#[derive(Debug, Clone, Copy)]
pub struct RequestTime(pub SystemTime);

impl<S: Send + Sync> FromRequestParts<S> for RequestTime {
    type Rejection = Infallible;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(RequestTime(SystemTime::now()))
    }
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
