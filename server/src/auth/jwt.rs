//! EdDSA JWT verification (api §6.3), checks in the documented order.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signature;
use serde_json::Value;

use super::keys::KeyDirectory;
use super::{AuthError, Grant, Permission, PermissionSet};

/// Leeway applied to `exp`, in seconds.
pub const EXP_LEEWAY_SECS: i64 = 60;
/// The `res` entry naming the usecase.
pub const USECASE_CLAIM: &str = "os:usecase";

/// The JOSE header fields that matter.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// `alg`.
    pub alg: Option<String>,
    /// `kid`.
    pub kid: Option<String>,
}

/// A token split into its parts, nothing verified yet.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The decoded header.
    pub header: Header,
    /// `header.payload`, the signed bytes.
    pub signed: &'a str,
    /// The raw payload segment (base64url).
    pub payload: &'a str,
    /// The raw signature segment (base64url).
    pub signature: &'a str,
}

fn malformed(message: impl Into<String>) -> AuthError {
    AuthError::unauth("malformed", message)
}

/// Splits a compact JWS and decodes its header (step 1).
pub fn parse(token: &str) -> Result<Parsed<'_>, AuthError> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("token is not a JWT (three dot-separated parts)"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| malformed("JWT header is not base64url"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("JWT header is not JSON"))?;
    let Value::Object(map) = value else {
        return Err(malformed("JWT header is not a JSON object"));
    };
    let field = |name: &str| -> Result<Option<String>, AuthError> {
        match map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(format!("JWT header `{name}` is not a string"))),
        }
    };
    Ok(Parsed {
        header: Header {
            alg: field("alg")?,
            kid: field("kid")?,
        },
        signed: &token[..h.len() + 1 + p.len()],
        payload: p,
        signature: s,
    })
}

/// Verifies `token` against `keys` at `now` (Unix seconds) and returns what it grants.
pub fn verify(keys: &KeyDirectory, token: &str, now: i64) -> Result<Grant, AuthError> {
    let parsed = parse(token)?;
    let Some(kid) = parsed.header.kid.as_deref() else {
        return Err(AuthError::bad("missing_kid", "JWT header has no `kid`"));
    };
    let Some(key) = keys.get(kid) else {
        return Err(AuthError::unauth(
            "unknown_kid",
            format!("unknown key id `{kid}`"),
        ));
    };
    if parsed.header.alg.as_deref() != Some("EdDSA") {
        return Err(AuthError::unauth(
            "bad_algorithm",
            "JWT `alg` must be EdDSA",
        ));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(parsed.signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or_else(|| malformed("JWT signature is not a base64url Ed25519 signature"))?;
    if !key.verifies(parsed.signed.as_bytes(), &signature) {
        return Err(AuthError::unauth(
            "bad_signature",
            format!("JWT signature matches no version of key `{kid}`"),
        ));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(parsed.payload)
        .map_err(|_| malformed("JWT payload is not base64url"))?;
    let grant = claims(&payload, now)?;
    Ok(Grant {
        permissions: grant.permissions.intersect(key.max_permissions),
        ..grant
    })
}

/// Verified tokens by their exact text. Keys never change after start, so a token that
/// verified once verifies again; only `exp` is re-checked on a hit. Clients that reuse a
/// token (static tokens, pre-minted URLs) skip the signature check after the first use.
pub type TokenCache = quick_cache::sync::Cache<String, Grant>;

/// [`verify`] through `cache`.
pub fn verify_cached(
    keys: &KeyDirectory,
    cache: &TokenCache,
    token: &str,
    now: i64,
) -> Result<Grant, AuthError> {
    if let Some(grant) = cache.get(token) {
        if grant.expires.saturating_add(EXP_LEEWAY_SECS) >= now {
            return Ok(grant);
        }
        return Err(AuthError::unauth("expired", "token has expired"));
    }
    let grant = verify(keys, token, now)?;
    cache.insert(token.to_owned(), grant.clone());
    Ok(grant)
}

fn bad_claims(message: impl Into<String>) -> AuthError {
    AuthError::unauth("bad_claims", message)
}

/// Validates the claims (`exp`, `res`, `permissions`, optional `aud`/`iss`).
pub fn claims(payload: &[u8], now: i64) -> Result<Grant, AuthError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|_| malformed("JWT payload is not JSON"))?;
    let Value::Object(map) = value else {
        return Err(malformed("JWT payload is not a JSON object"));
    };
    let exp = map
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad_claims("`exp` is required and must be a whole number of seconds"))?;
    if exp.saturating_add(EXP_LEEWAY_SECS) < now {
        return Err(AuthError::unauth("expired", "token has expired"));
    }
    let Some(Value::Object(res)) = map.get("res") else {
        return Err(bad_claims("`res` is required and must be an object"));
    };
    let mut usecase = None;
    let mut scopes = BTreeMap::new();
    for (name, value) in res {
        let Value::String(value) = value else {
            return Err(bad_claims(format!("`res.{name}` must be a string")));
        };
        if name == USECASE_CLAIM {
            usecase = Some(value.clone());
        } else {
            scopes.insert(name.clone(), value.clone());
        }
    }
    let usecase = usecase.ok_or_else(|| bad_claims("`res` must name `os:usecase`"))?;
    let Some(Value::Array(list)) = map.get("permissions") else {
        return Err(bad_claims("`permissions` is required and must be an array"));
    };
    let permissions = list
        .iter()
        .map(|p| {
            serde_json::from_value::<Permission>(p.clone())
                .map_err(|_| bad_claims(format!("unknown permission {p}")))
        })
        .collect::<Result<PermissionSet, _>>()?;
    match map.get("aud") {
        None => {}
        Some(Value::String(aud)) if aud == "objectstore" => {}
        Some(Value::Array(auds)) if auds.iter().any(|a| a == "objectstore") => {}
        Some(_) => return Err(bad_claims("`aud` must be objectstore")),
    }
    match map.get("iss") {
        None => {}
        Some(Value::String(iss)) if iss == "sentry" || iss == "relay" => {}
        Some(_) => return Err(bad_claims("`iss` must be sentry or relay")),
    }
    Ok(Grant {
        usecase,
        scopes,
        permissions,
        expires: exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(json: &str) -> Result<Grant, AuthError> {
        claims(json.as_bytes(), 1_000)
    }

    #[test]
    fn claim_rules() {
        let ok = grant(
            r#"{"exp":1000,"res":{"os:usecase":"u","org":"*"},"permissions":["object.read"]}"#,
        )
        .unwrap();
        assert_eq!(ok.usecase, "u");
        assert!(ok.permissions.contains(Permission::Read));
        assert!(!ok.permissions.contains(Permission::Write));
        // 60 s leeway, then expired.
        assert!(grant(r#"{"exp":940,"res":{"os:usecase":"u"},"permissions":[]}"#).is_ok());
        let err = grant(r#"{"exp":939,"res":{"os:usecase":"u"},"permissions":[]}"#).unwrap_err();
        assert_eq!(err.reason(), "expired");
        for bad in [
            r#"{"res":{"os:usecase":"u"},"permissions":[]}"#,
            r#"{"exp":2000,"res":{"os:usecase":"u","org":1},"permissions":[]}"#,
            r#"{"exp":2000,"res":{"org":"1"},"permissions":[]}"#,
            r#"{"exp":2000,"res":{"os:usecase":"u"},"permissions":["object.admin"]}"#,
            r#"{"exp":2000,"res":{"os:usecase":"u"}}"#,
            r#"{"exp":2000,"res":{"os:usecase":"u"},"permissions":[],"aud":"other"}"#,
            r#"{"exp":2000,"res":{"os:usecase":"u"},"permissions":[],"iss":"me"}"#,
        ] {
            assert_eq!(grant(bad).unwrap_err().status(), 401, "{bad}");
        }
        assert!(grant(r#"{"exp":2000,"res":{"os:usecase":"u"},"permissions":[],"aud":["x","objectstore"],"iss":"relay"}"#).is_ok());
    }

    #[test]
    fn cached_tokens_still_expire_and_unverified_ones_are_not_cached() {
        use crate::auth::keys::Key;
        use ed25519_dalek::Signer;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let keys = KeyDirectory::from_keys([(
            "k".to_owned(),
            Key {
                versions: vec![signing.verifying_key()],
                max_permissions: [Permission::Read].into_iter().collect(),
            },
        )]);
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let signed = format!(
            "{}.{}",
            enc(r#"{"alg":"EdDSA","kid":"k"}"#),
            enc(
                r#"{"exp":1000,"res":{"os:usecase":"u"},"permissions":["object.read","object.write"]}"#
            )
        );
        let token = format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signing.sign(signed.as_bytes()).to_bytes())
        );
        let cache = TokenCache::new(10);
        let grant = verify_cached(&keys, &cache, &token, 1000).unwrap();
        assert!(!grant.permissions.contains(Permission::Write));
        assert_eq!(cache.len(), 1);
        assert_eq!(verify_cached(&keys, &cache, &token, 1060).unwrap(), grant);
        let err = verify_cached(&keys, &cache, &token, 1061).unwrap_err();
        assert_eq!(err.reason(), "expired");
        let tampered = format!("{token}A");
        assert!(verify_cached(&keys, &cache, &tampered, 1000).is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn header_parse_errors_are_401() {
        for bad in ["", "a.b", "a.b.c.d", "!!.b.c", "e30.b"] {
            assert_eq!(parse(bad).unwrap_err().status(), 401, "{bad}");
        }
        let p = parse("eyJraWQiOiJrIn0.cGF5.c2ln").unwrap();
        assert_eq!(p.header.kid.as_deref(), Some("k"));
        assert_eq!(p.signed, "eyJraWQiOiJrIn0.cGF5");
    }
}
