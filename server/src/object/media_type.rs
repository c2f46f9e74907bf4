//! The media-type grammar `content-type` values must follow on insert (RFC 6838
//! `restricted-name` for type and subtype, RFC 9110 parameters).
//!
//! Why the server checks at all: the Rust client parses content types strictly on reads,
//! so storing one it cannot parse would make the object unreadable.

/// RFC 6838 `restricted-name`: first ALPHA/DIGIT, then ALPHA/DIGIT/`!#$&-^_.+`, ≤127.
fn is_restricted_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    s.len() <= 127
        && chars.all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '!' | '#' | '$' | '&' | '-' | '^' | '_' | '.' | '+')
        })
}

/// RFC 9110 `tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '!' | '#'
                        | '$'
                        | '%'
                        | '&'
                        | '\''
                        | '*'
                        | '+'
                        | '-'
                        | '.'
                        | '^'
                        | '_'
                        | '`'
                        | '|'
                        | '~'
                )
        })
}

/// RFC 9110 `quoted-string` (the whole of `s`), restricted to ASCII.
fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return false;
        }
    }
    !escaped
}

/// Whether `s` is `type/subtype *( OWS ";" OWS name=value )`.
///
/// Why: the Rust client rejects objects whose content type does not parse, so the
/// server checks it on insert. Parameter values may be tokens or quoted strings.
pub(crate) fn is_media_type(s: &str) -> bool {
    let mut parts = s.split(';');
    let essence = parts.next().unwrap_or("").trim_end_matches([' ', '\t']);
    let Some((ty, subty)) = essence.split_once('/') else {
        return false;
    };
    if !is_restricted_name(ty) || !is_restricted_name(subty) {
        return false;
    }
    // A `;` inside a quoted parameter value would be split here; such values are so
    // rare in content types that rejecting them is acceptable.
    parts.all(|param| {
        let param = param.trim_matches([' ', '\t']);
        match param.split_once('=') {
            Some((name, value)) => is_token(name) && (is_token(value) || is_quoted_string(value)),
            None => false,
        }
    })
}
