//! Where credentials come from (api §6.2) and which verifier handles them.

use http::header::AUTHORIZATION;
use http::Method;

use super::keys::KeyDirectory;
use super::{jwt, presigned, AuthError, Credentials, RequestHead};

/// Header carrying `Bearer <jwt>`; wins over `Authorization`.
pub const X_OS_AUTH: &str = "x-os-auth";

/// Finds the credentials of `head` and verifies them against `keys` at `now`.
pub fn verify(
    keys: &KeyDirectory,
    cache: Option<&jwt::TokenCache>,
    head: RequestHead<'_>,
    now: i64,
) -> Result<Credentials, AuthError> {
    if let Some(query) = head.query {
        if presigned::has_signature(query) {
            if head.method != Method::GET && head.method != Method::HEAD {
                return Err(AuthError::forbidden(
                    "presign_method",
                    "pre-signed URLs are valid for GET and HEAD only",
                ));
            }
            presigned::verify(keys, head.method, head.path, query, now)?;
            return Ok(Credentials::Presigned);
        }
    }
    let token = match token(head)? {
        Some(token) => token,
        None => return Err(AuthError::bad("missing_token", "no auth token")),
    };
    match cache {
        Some(cache) => jwt::verify_cached(keys, cache, &token, now),
        None => jwt::verify(keys, &token, now),
    }
    .map(Credentials::Token)
}

/// The bearer token from `x-os-auth`, else `Authorization` (only when `x-os-auth` is
/// absent), else the `os_auth` query parameter.
pub fn token(head: RequestHead<'_>) -> Result<Option<String>, AuthError> {
    let header = match head.headers.get(X_OS_AUTH) {
        Some(value) => Some(value),
        None => head.headers.get(AUTHORIZATION),
    };
    if let Some(token) = header.and_then(|v| bearer(v.as_bytes())) {
        return Ok(Some(token.to_owned()));
    }
    match head.query {
        Some(query) => query_token(query),
        None => Ok(None),
    }
}

/// `Bearer <token>` with a case-insensitive prefix and exactly one space.
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let prefix = value.get(..7)?;
    if prefix.eq_ignore_ascii_case("bearer ") {
        Some(&value[7..])
    } else {
        None
    }
}

/// The URL-decoded `os_auth` query parameter; given twice it is a 400.
pub fn query_token(query: &str) -> Result<Option<String>, AuthError> {
    let mut found = None;
    for (name, value) in presigned::query_pairs(query) {
        if name == "os_auth" {
            if found.is_some() {
                return Err(AuthError::bad("bad_query", "os_auth given more than once"));
            }
            found = Some(value);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(headers: &'a http::HeaderMap, query: Option<&'a str>) -> RequestHead<'a> {
        RequestHead {
            method: &Method::GET,
            path: "/v1/objects/u/_/k",
            query,
            headers,
        }
    }

    #[test]
    fn precedence_of_token_sources() {
        let mut h = http::HeaderMap::new();
        assert_eq!(
            token(head(&h, Some("os_auth=q%2Eq"))).unwrap().as_deref(),
            Some("q.q")
        );
        h.insert(AUTHORIZATION, "bearer a".parse().unwrap());
        assert_eq!(
            token(head(&h, Some("os_auth=q"))).unwrap().as_deref(),
            Some("a")
        );
        h.insert(X_OS_AUTH, "BEARER x".parse().unwrap());
        assert_eq!(token(head(&h, None)).unwrap().as_deref(), Some("x"));
        // A malformed x-os-auth does not fall back to Authorization, only to the query.
        h.insert(X_OS_AUTH, "Token x".parse().unwrap());
        assert_eq!(token(head(&h, None)).unwrap(), None);
        assert_eq!(
            token(head(&h, Some("os_auth=q"))).unwrap().as_deref(),
            Some("q")
        );
        h.insert(X_OS_AUTH, "Bearer  x".parse().unwrap());
        assert_eq!(token(head(&h, None)).unwrap().as_deref(), Some(" x"));
    }

    #[test]
    fn os_auth_twice_is_bad_request() {
        let h = http::HeaderMap::new();
        let err = token(head(&h, Some("os_auth=a&os_auth=b"))).unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
