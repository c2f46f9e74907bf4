//! Pre-signed URLs (api §6.6): query parsing, the canonical string and verification.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signature;
use http::Method;

use super::keys::KeyDirectory;
use super::{AuthError, Permission};

/// The longest validity a pre-signed URL may claim (one week).
pub const MAX_DURATION_SECS: u64 = 604_800;
/// Clock skew tolerated before the signing time.
pub const SKEW_SECS: i64 = 60;

/// Whether the raw query has a parameter named exactly `os_sig` (case-sensitive).
pub fn has_signature(query: &str) -> bool {
    query
        .split('&')
        .any(|piece| piece.split_once('=').map_or(piece, |(k, _)| k) == "os_sig")
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` bytes).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, String)> {
    query.split('&').filter(|p| !p.is_empty()).map(|piece| {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        (decode(k), decode(v).into_owned())
    })
}

fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// `METHOD \n PATH \n QUERY` exactly as api §6.6 defines it; `raw_path` and `raw_query`
/// are what the request carried, still percent-encoded.
pub fn canonical_string(method: &str, raw_path: &str, raw_query: &str) -> String {
    let method = method.to_ascii_uppercase();
    let method = if method == "HEAD" {
        "GET"
    } else {
        method.as_str()
    };
    let mut pieces: Vec<String> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|piece| {
            let (key, rest) = match piece.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
                None => (piece.to_ascii_lowercase(), None),
            };
            if key == "os_sig" {
                return None;
            }
            Some(match rest {
                Some(v) => format!("{key}={v}"),
                None => key,
            })
        })
        .collect();
    pieces.sort_unstable();
    format!("{method}\n{raw_path}\n{}", pieces.join("&"))
}

/// The four pre-signing parameters, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignParams {
    /// `os_kid`.
    pub kid: String,
    /// `os_timestamp` as Unix seconds (fraction dropped).
    pub timestamp: i64,
    /// `os_duration` in seconds (not yet capped).
    pub duration: u64,
    /// `os_sig`.
    pub signature: Signature,
}

fn invalid(message: impl Into<String>) -> AuthError {
    AuthError::bad("presign_invalid", message)
}

/// Parses the pre-signing parameters of a raw query (400 when missing or invalid).
pub fn parse_params(query: &str) -> Result<PresignParams, AuthError> {
    let (mut kid, mut ts, mut duration, mut sig) = (None, None, None, None);
    for (name, value) in query_pairs(query) {
        let slot = match name.as_ref() {
            "os_kid" => &mut kid,
            "os_timestamp" => &mut ts,
            "os_duration" => &mut duration,
            "os_sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(invalid(format!("{name} given more than once")));
        }
    }
    let need =
        |v: Option<String>, name: &str| v.ok_or_else(|| invalid(format!("{name} is missing")));
    let kid = need(kid, "os_kid")?;
    let timestamp = parse_timestamp(&need(ts, "os_timestamp")?)
        .ok_or_else(|| invalid("os_timestamp is not an RFC 3339 time"))?;
    let duration: u64 = need(duration, "os_duration")?
        .parse()
        .map_err(|_| invalid("os_duration is not a whole number of seconds"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(need(sig, "os_sig")?)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| invalid("os_sig is not a base64url Ed25519 signature"))?;
    Ok(PresignParams {
        kid,
        timestamp,
        duration,
        signature,
    })
}

/// Lenient RFC 3339: `YYYY-MM-DD[T| ]HH:MM:SS[.f{1,9}][Z]`, UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let frac = &s[19..];
    if !frac.is_empty() {
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()?;
    let t =
        time::Time::from_hms(num(11..13)? as u8, num(14..16)? as u8, num(17..19)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Verifies a pre-signed request in the documented order (method already checked).
pub fn verify(
    keys: &KeyDirectory,
    method: &Method,
    raw_path: &str,
    raw_query: &str,
    now: i64,
) -> Result<(), AuthError> {
    let params = parse_params(raw_query)?;
    let Some(key) = keys.get(&params.kid) else {
        return Err(AuthError::unauth(
            "unknown_kid",
            format!("unknown key id `{}`", params.kid),
        ));
    };
    if params.duration > MAX_DURATION_SECS {
        return Err(invalid(format!(
            "os_duration {} exceeds the maximum of {MAX_DURATION_SECS} seconds",
            params.duration
        )));
    }
    let end = params.timestamp.saturating_add(params.duration as i64);
    if now < params.timestamp - SKEW_SECS || now > end {
        return Err(AuthError::unauth(
            "presign_window",
            "pre-signed URL is outside its validity window",
        ));
    }
    let canonical = canonical_string(method.as_str(), raw_path, raw_query);
    if !key.verifies(canonical.as_bytes(), &params.signature) {
        return Err(AuthError::unauth(
            "bad_signature",
            "pre-signed URL signature does not verify",
        ));
    }
    if !key.max_permissions.contains(Permission::Read) {
        return Err(AuthError::forbidden(
            "permission",
            format!("key `{}` does not grant object.read", params.kid),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_example_from_the_contract() {
        let q = "os_kid=relay&os_timestamp=2026-04-20T13:37:00Z&os_duration=3600&os_sig=abc";
        assert_eq!(
            canonical_string("HEAD", "/v1/objects/att/org=1/k", q),
            "GET\n/v1/objects/att/org=1/k\nos_duration=3600&os_kid=relay&os_timestamp=2026-04-20T13:37:00Z"
        );
        assert_eq!(
            canonical_string("get", "/p%2Fx", "B=%41&&a&OS_SIG=z&b=1&a"),
            "GET\n/p%2Fx\na&a&b=%41&b=1"
        );
    }

    #[test]
    fn os_sig_detection_is_case_sensitive() {
        assert!(has_signature("a=1&os_sig=x"));
        assert!(has_signature("os_sig"));
        assert!(!has_signature("OS_SIG=x&os_sigx=1"));
    }

    #[test]
    fn lenient_timestamps() {
        let base = parse_timestamp("2026-04-20T13:37:00Z").unwrap();
        for s in [
            "2026-04-20 13:37:00",
            "2026-04-20T13:37:00",
            "2026-04-20T13:37:00.123456789Z",
        ] {
            assert_eq!(parse_timestamp(s), Some(base), "{s}");
        }
        for s in [
            "2026-04-20T13:37:00.1234567890Z",
            "2026-13-20T13:37:00Z",
            "2026-04-20T13:37",
            "x",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn params_are_parsed_and_bad_ones_are_400() {
        let sig = URL_SAFE_NO_PAD.encode([7u8; 64]);
        let q =
            format!("os_kid=k&os_timestamp=2026-04-20T13%3A37%3A00Z&os_duration=10&os_sig={sig}");
        let p = parse_params(&q).unwrap();
        assert_eq!((p.kid.as_str(), p.duration), ("k", 10));
        for bad in [
            format!("os_kid=k&os_timestamp=2026-04-20T13:37:00Z&os_sig={sig}"),
            format!("os_kid=k&os_timestamp=yesterday&os_duration=1&os_sig={sig}"),
            format!("os_kid=k&os_timestamp=2026-04-20T13:37:00Z&os_duration=-1&os_sig={sig}"),
            "os_kid=k&os_timestamp=2026-04-20T13:37:00Z&os_duration=1&os_sig=short".to_owned(),
            format!("{q}&os_kid=again"),
        ] {
            assert_eq!(parse_params(&bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    proptest! {
        /// The canonical query does not depend on piece order, drops every `os_sig`,
        /// keeps values byte-exact and lowercases only keys.
        #[test]
        fn canonical_query_is_order_independent(
            pieces in proptest::collection::vec("[A-Za-z_]{1,6}(=[A-Za-z0-9%=]{0,6})?", 0..8),
            seed in any::<u64>(),
        ) {
            let mut shuffled = pieces.clone();
            let n = shuffled.len();
            if n > 1 {
                for i in 0..n {
                    shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n);
                }
            }
            let a = canonical_string("GET", "/p", &pieces.join("&"));
            let b = canonical_string("HEAD", "/p", &shuffled.join("&"));
            prop_assert_eq!(&a, &b);
            let query = a.splitn(3, '\n').nth(2).unwrap();
            let mut kept = 0;
            for piece in query.split('&').filter(|p| !p.is_empty()) {
                let key = piece.split_once('=').map_or(piece, |(k, _)| k);
                prop_assert_ne!(key, "os_sig");
                prop_assert_eq!(key, key.to_ascii_lowercase());
                kept += 1;
            }
            let expected = pieces.iter().filter(|p| {
                !p.split_once('=').map_or(p.as_str(), |(k, _)| k).eq_ignore_ascii_case("os_sig")
            }).count();
            prop_assert_eq!(kept, expected);
            for piece in &pieces {
                if let Some((k, v)) = piece.split_once('=') {
                    if !k.eq_ignore_ascii_case("os_sig") {
                        let expected_piece = format!("{}={}", k.to_ascii_lowercase(), v);
                        prop_assert!(query.split('&').any(|p| p == expected_piece));
                    }
                }
            }
        }
    }
}
