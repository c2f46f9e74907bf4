//! The `content-disposition` header served for objects with a filename: a safe ASCII
//! `filename` plus the exact name in RFC 8187 `filename*` when it is not ASCII.

use http::HeaderValue;
use percent_encoding::AsciiSet;

/// RFC 8187 `attr-char` complement: everything except ALPHA / DIGIT /
/// `!#$&+-.^_`|~` is encoded in `filename*`.
const ATTR_CHAR_ESCAPE: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The `content-disposition` value for a stored filename (api-newest §4.4):
/// `attachment; filename="<safe ASCII>"`, plus `; filename*=UTF-8''<RFC 8187>` when the
/// name contains non-ASCII characters.
///
/// Why the rewriting: `/` and `\` (and all-dot names) would let a browser save outside
/// the download folder or under a special name, so they become `-`; `"` is escaped;
/// non-ASCII and control characters cannot appear in a quoted header string, so they
/// become `_` there and the exact name goes into `filename*`. `None` only if the result
/// still is not a valid header value.
pub fn content_disposition(filename: &str) -> Option<HeaderValue> {
    let mut safe: String = filename
        .chars()
        .map(|c| if c == '/' || c == '\\' { '-' } else { c })
        .collect();
    if !safe.is_empty() && safe.chars().all(|c| c == '.') {
        safe = "-".repeat(safe.len());
    }
    let mut quoted = String::with_capacity(safe.len());
    for c in safe.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            c if !c.is_ascii() || c.is_ascii_control() => quoted.push('_'),
            c => quoted.push(c),
        }
    }
    let mut value = format!("attachment; filename=\"{quoted}\"");
    if !safe.is_ascii() {
        value.push_str("; filename*=UTF-8''");
        value.push_str(&percent_encoding::utf8_percent_encode(&safe, ATTR_CHAR_ESCAPE).to_string());
    }
    HeaderValue::from_str(&value).ok()
}
