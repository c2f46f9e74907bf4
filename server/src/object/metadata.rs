//! Object metadata: what travels in `content-type`, `content-encoding`, `x-sn-*` and
//! `x-snme-*` headers, and what the backends store beside the payload.
//!
//! Insert parsing follows api-newest §4.1, response headers api-newest §4.4. The free
//! text fields (`x-sn-origin`, `x-sn-filename`, `x-snme-*` values) carry the UTF-8
//! percent-encoding of the logical string on the wire; the stored value is decoded.

use std::collections::BTreeMap;
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS};

use super::expiration::{self, ExpirationError};
use super::media_type::is_media_type;
use super::ExpirationPolicy;

pub use super::content_disposition::content_disposition;

/// Header carrying the expiration policy.
pub const HEADER_EXPIRATION: &str = "x-sn-expiration";
/// Header carrying the creation time (read-only).
pub const HEADER_TIME_CREATED: &str = "x-sn-time-created";
/// Header carrying the expiry deadline (read-only).
pub const HEADER_TIME_EXPIRES: &str = "x-sn-time-expires";
/// Header carrying the uploader's origin.
pub const HEADER_ORIGIN: &str = "x-sn-origin";
/// Header carrying the original filename.
pub const HEADER_FILENAME: &str = "x-sn-filename";
/// Header carrying the stored size (read-only).
pub const HEADER_SIZE: &str = "x-sn-size";
/// Prefix of custom metadata headers.
pub const CUSTOM_PREFIX: &str = "x-snme-";

/// What gets percent-encoded in free-text header values: C0 controls (TAB included),
/// DEL, `%` and every non-ASCII byte. Space and other visible ASCII stay literal,
/// exactly as both newest clients encode (api-newest §4.1).
const HEADER_ESCAPE: &AsciiSet = &CONTROLS.add(b'%');

/// How the stored payload is encoded (recorded only; the server never transcodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    /// `content-encoding: zstd`.
    Zstd,
    /// `content-encoding: gzip`.
    Gzip,
}

impl Compression {
    /// The `content-encoding` token; the only two values the server accepts and emits.
    pub fn as_str(&self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }
}

/// Why insert metadata headers were rejected. Maps to HTTP 400 (JSON body with the
/// Display text as the cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// `content-type` is not `type/subtype[; params]`; the Rust client parses it
    /// strictly on reads, so storing garbage would make the object unreadable.
    #[error("invalid content-type '{0}': expected a media type 'type/subtype[; params]'")]
    InvalidContentType(String),
    /// `content-encoding` is neither `zstd` nor `gzip` (identity included): any other
    /// value would be a promise the clients cannot decode.
    #[error("invalid content-encoding '{0}': expected 'zstd' or 'gzip'")]
    InvalidContentEncoding(String),
    /// `x-sn-expiration` does not parse.
    #[error("invalid {HEADER_EXPIRATION}: {0}")]
    InvalidExpiration(#[from] ExpirationError),
    /// A metadata header holds a byte outside visible ASCII, SP and HTAB; Unicode must
    /// arrive percent-encoded.
    #[error("header {0} must contain only visible ASCII characters (percent-encode UTF-8)")]
    NonAscii(String),
    /// A percent-decoded metadata value is not UTF-8 (e.g. `%FF`).
    #[error("header {0} is not percent-encoded UTF-8")]
    InvalidEncoding(String),
}

/// Everything known about an object except its payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// Media type; `application/octet-stream` when the client sent none.
    pub content_type: String,
    /// Stored encoding, if any.
    pub compression: Option<Compression>,
    /// Expiry policy.
    pub expiration: ExpirationPolicy,
    /// Set by the server at insert (whole seconds, rounded up).
    pub time_created: Option<SystemTime>,
    /// Deadline for TTL/TTI objects.
    pub time_expires: Option<SystemTime>,
    /// `x-sn-origin`, decoded.
    pub origin: Option<String>,
    /// `x-sn-filename`, decoded.
    pub filename: Option<String>,
    /// `x-snme-<name>` entries; names lowercased, values decoded.
    pub custom: BTreeMap<String, String>,
    /// Stored payload size in bytes, when known.
    pub size: Option<u64>,
}

impl Default for Metadata {
    fn default() -> Self {
        Self {
            content_type: "application/octet-stream".to_owned(),
            compression: None,
            expiration: ExpirationPolicy::Manual,
            time_created: None,
            time_expires: None,
            origin: None,
            filename: None,
            custom: BTreeMap::new(),
            size: None,
        }
    }
}

/// The last value of a repeated header wins (api §4.1).
fn last<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a HeaderValue> {
    headers.get_all(name).iter().next_back()
}

/// The raw value as text if it is only visible ASCII, SP or HTAB.
fn ascii_value<'a>(name: &str, value: &'a HeaderValue) -> Result<&'a str, MetadataError> {
    let bytes = value.as_bytes();
    if bytes
        .iter()
        .all(|b| *b == b'\t' || (0x20..=0x7e).contains(b))
    {
        // All bytes are ASCII, so this cannot fail.
        std::str::from_utf8(bytes).map_err(|_| MetadataError::NonAscii(name.to_owned()))
    } else {
        Err(MetadataError::NonAscii(name.to_owned()))
    }
}

/// Visible-ASCII check, then lenient percent-decoding (stray `%` kept), then UTF-8.
fn decode_free_text(name: &str, value: &HeaderValue) -> Result<String, MetadataError> {
    let raw = ascii_value(name, value)?;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| MetadataError::InvalidEncoding(name.to_owned()))
}

/// Percent-encodes a logical string for a free-text header; the result is always a
/// valid header value (visible ASCII and SP only).
///
/// Spaces stay literal, except leading and trailing ones: HTTP strips whitespace at
/// both ends of a field value, so those are sent as `%20` (which every client decodes)
/// to keep the stored string intact on the way back.
fn encode_free_text(value: &str) -> HeaderValue {
    let encoded = percent_encoding::utf8_percent_encode(value, HEADER_ESCAPE).to_string();
    let body = encoded.trim_start_matches(' ');
    let leading = encoded.len() - body.len();
    let middle = body.trim_end_matches(' ');
    let trailing = body.len() - middle.len();
    let text = format!(
        "{}{middle}{}",
        "%20".repeat(leading),
        "%20".repeat(trailing)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Metadata {
    /// Parses the metadata headers of an insert (O1, O2, M1, M2, batch insert parts),
    /// per api-newest §4.1.
    ///
    /// Why here and not in the handler: every insert path shares these rules, and the
    /// order of checks decides which error a client sees. Read-only headers
    /// (`x-sn-time-*`, `x-sn-size`) are ignored even when malformed; `time_created` is
    /// `now` rounded up and `time_expires` the policy's initial deadline.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Result<Metadata, MetadataError> {
        let mut meta = Metadata::default();

        if let Some(value) = last(headers, header::CONTENT_TYPE.as_str()) {
            let text = value.to_str().map_err(|_| {
                MetadataError::InvalidContentType(
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })?;
            if !is_media_type(text) {
                return Err(MetadataError::InvalidContentType(text.to_owned()));
            }
            meta.content_type = text.to_owned();
        }

        if let Some(value) = last(headers, header::CONTENT_ENCODING.as_str()) {
            meta.compression = Some(match value.as_bytes() {
                b"zstd" => Compression::Zstd,
                b"gzip" => Compression::Gzip,
                other => {
                    return Err(MetadataError::InvalidContentEncoding(
                        String::from_utf8_lossy(other).into_owned(),
                    ))
                }
            });
        }

        if let Some(value) = last(headers, HEADER_EXPIRATION) {
            let text = ascii_value(HEADER_EXPIRATION, value)?;
            meta.expiration = ExpirationPolicy::parse(text)?;
        }

        if let Some(value) = last(headers, HEADER_ORIGIN) {
            meta.origin = Some(decode_free_text(HEADER_ORIGIN, value)?);
        }
        if let Some(value) = last(headers, HEADER_FILENAME) {
            meta.filename = Some(decode_free_text(HEADER_FILENAME, value)?);
        }

        for name in headers.keys() {
            let Some(custom) = name.as_str().strip_prefix(CUSTOM_PREFIX) else {
                continue;
            };
            if custom.is_empty() {
                continue;
            }
            if let Some(value) = last(headers, name.as_str()) {
                let decoded = decode_free_text(name.as_str(), value)?;
                meta.custom.insert(custom.to_ascii_lowercase(), decoded);
            }
        }

        meta.time_created = Some(expiration::round_up_to_second(now));
        meta.time_expires = expiration::initial_deadline(meta.expiration, now);
        Ok(meta)
    }

    /// Writes the response metadata headers of GET 200/206 and HEAD (api-newest §4.4)
    /// into `out`, replacing any value already there. All names are lowercase.
    ///
    /// Why only values the server itself would accept: the Rust client parses these
    /// strictly, so one bad header makes the whole object unreadable. A value that
    /// cannot be a header (only possible for data not created by `from_headers`) is
    /// left out rather than sent broken. `accept-ranges`, `content-length` and
    /// `content-range` belong to the HTTP layer and are not written here.
    pub fn to_headers(&self, out: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.content_type) {
            out.insert(header::CONTENT_TYPE, value);
        }
        if let Some(compression) = self.compression {
            out.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(compression.as_str()),
            );
        }
        if let Some(policy) = self.expiration.to_header_value() {
            if let Ok(value) = HeaderValue::from_str(&policy) {
                out.insert(HeaderName::from_static(HEADER_EXPIRATION), value);
            }
        }
        if let Some(created) = self.time_created {
            if let Ok(value) = HeaderValue::from_str(&expiration::format_timestamp(created)) {
                out.insert(HeaderName::from_static(HEADER_TIME_CREATED), value);
            }
        }
        if let Some(expires) = self.time_expires {
            if let Ok(value) = HeaderValue::from_str(&expiration::format_timestamp(expires)) {
                out.insert(HeaderName::from_static(HEADER_TIME_EXPIRES), value);
            }
        }
        if let Some(origin) = &self.origin {
            out.insert(
                HeaderName::from_static(HEADER_ORIGIN),
                encode_free_text(origin),
            );
        }
        if let Some(filename) = &self.filename {
            out.insert(
                HeaderName::from_static(HEADER_FILENAME),
                encode_free_text(filename),
            );
            if let Some(disposition) = content_disposition(filename) {
                out.insert(header::CONTENT_DISPOSITION, disposition);
            }
        }
        for (name, value) in &self.custom {
            let full = format!("{CUSTOM_PREFIX}{}", name.to_ascii_lowercase());
            if let Ok(name) = HeaderName::from_bytes(full.as_bytes()) {
                out.insert(name, encode_free_text(value));
            }
        }
        if let Some(size) = self.size {
            out.insert(
                HeaderName::from_static(HEADER_SIZE),
                HeaderValue::from(size),
            );
        }
    }

    /// Whether the deadline has passed at `now` (a deadline equal to `now` counts as
    /// passed, so `ttl:0s` expires at once).
    ///
    /// Why: expired objects must be served as 404 even before they are collected.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.time_expires.is_some_and(|deadline| deadline <= now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
    }

    fn parse(pairs: &[(&str, &[u8])]) -> Result<Metadata, MetadataError> {
        Metadata::from_headers(&headers(pairs), now())
    }

    #[test]
    fn defaults() {
        let meta = parse(&[]).unwrap();
        assert_eq!(meta.content_type, "application/octet-stream");
        assert_eq!(meta.compression, None);
        assert_eq!(meta.expiration, ExpirationPolicy::Manual);
        assert_eq!(
            meta.time_created,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_001))
        );
        assert_eq!(meta.time_expires, None);
        assert_eq!(meta.size, None);
    }

    #[test]
    fn content_types() {
        for ok in [
            "text/plain",
            "text/plain; charset=utf-8",
            "text/plain;charset=utf-8",
            "application/vnd.api+json",
            "image/svg+xml; a=b; c=\"d\"",
        ] {
            let result = parse(&[("content-type", ok.as_bytes())]);
            assert_eq!(result.unwrap().content_type, ok);
        }
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "text/plain/x",
            "text /plain",
            "text/plain; charset",
            "text/plain; =x",
            "tëxt/plain",
        ] {
            assert!(
                matches!(
                    parse(&[("content-type", bad.as_bytes())]),
                    Err(MetadataError::InvalidContentType(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn content_encodings() {
        assert_eq!(
            parse(&[("content-encoding", b"zstd")]).unwrap().compression,
            Some(Compression::Zstd)
        );
        assert_eq!(
            parse(&[("content-encoding", b"gzip")]).unwrap().compression,
            Some(Compression::Gzip)
        );
        for bad in ["identity", "ZSTD", "br", "", "zstd, gzip"] {
            assert!(
                matches!(
                    parse(&[("content-encoding", bad.as_bytes())]),
                    Err(MetadataError::InvalidContentEncoding(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn expiration_and_deadline() {
        let meta = parse(&[("x-sn-expiration", b"ttl:30s")]).unwrap();
        assert_eq!(
            meta.expiration,
            ExpirationPolicy::TimeToLive(Duration::from_secs(30))
        );
        assert_eq!(
            meta.time_expires,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_031))
        );
        assert!(matches!(
            parse(&[("x-sn-expiration", b"ttl:")]),
            Err(MetadataError::InvalidExpiration(_))
        ));
        assert!(matches!(
            parse(&[("x-sn-expiration", "ttl:1\u{e9}".as_bytes())]),
            Err(MetadataError::NonAscii(_))
        ));
    }

    #[test]
    fn read_only_headers_are_ignored() {
        let meta = parse(&[
            ("x-sn-time-created", b"garbage"),
            ("x-sn-time-expires", b"2000-01-01T00:00:00Z"),
            ("x-sn-size", b"-1"),
        ])
        .unwrap();
        assert_eq!(meta.size, None);
        assert_eq!(meta.time_expires, None);
        assert_eq!(
            meta.time_created,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_001))
        );
    }

    #[test]
    fn free_text_decoding() {
        let meta = parse(&[
            ("x-sn-filename", b"r%C3%A9port-%F0%9F%93%84.pdf"),
            ("x-sn-origin", b"%C3%9Cnknown-%E6%BA%90"),
            ("x-snme-release", b"100%25 v%C3%A9rsion"),
            ("x-snme-tab", b"a%09b"),
            ("x-snme-stray", b"100% sure %4"),
            ("x-snme-raw-tab", b"a\tb"),
            ("X-SNME-Upper", b"x"),
        ])
        .unwrap();
        assert_eq!(meta.filename.as_deref(), Some("réport-📄.pdf"));
        assert_eq!(meta.origin.as_deref(), Some("Ünknown-源"));
        assert_eq!(meta.custom["release"], "100% vérsion");
        assert_eq!(meta.custom["tab"], "a\tb");
        assert_eq!(meta.custom["stray"], "100% sure %4");
        assert_eq!(meta.custom["raw-tab"], "a\tb");
        assert_eq!(meta.custom["upper"], "x");
        assert_eq!(meta.custom.len(), 5);
    }

    #[test]
    fn empty_filename_is_kept() {
        let meta = parse(&[("x-sn-filename", b"")]).unwrap();
        assert_eq!(meta.filename.as_deref(), Some(""));
    }

    #[test]
    fn repeated_header_last_wins() {
        let meta = parse(&[
            ("x-snme-a", b"1"),
            ("x-snme-a", b"2"),
            ("x-sn-origin", b"o1"),
            ("x-sn-origin", b"o2"),
        ])
        .unwrap();
        assert_eq!(meta.custom["a"], "2");
        assert_eq!(meta.origin.as_deref(), Some("o2"));
    }

    #[test]
    fn free_text_rejections() {
        assert_eq!(
            parse(&[("x-sn-filename", "ré".as_bytes())]),
            Err(MetadataError::NonAscii("x-sn-filename".into()))
        );
        assert_eq!(
            parse(&[("x-snme-a", b"%FF")]),
            Err(MetadataError::InvalidEncoding("x-snme-a".into()))
        );
        assert_eq!(
            parse(&[("x-sn-origin", b"%C3")]),
            Err(MetadataError::InvalidEncoding("x-sn-origin".into()))
        );
    }

    #[test]
    fn headers_out() {
        let mut custom = BTreeMap::new();
        custom.insert("release".to_owned(), "100% vérsion".to_owned());
        custom.insert("tab".to_owned(), "a\tb\u{7f}".to_owned());
        let meta = Metadata {
            content_type: "text/plain".into(),
            compression: Some(Compression::Gzip),
            expiration: ExpirationPolicy::TimeToIdle(Duration::from_secs(90_000)),
            time_created: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_001)),
            time_expires: Some(UNIX_EPOCH + Duration::from_secs(1_700_090_001)),
            origin: Some("Ünknown-源".into()),
            filename: Some("réport.pdf".into()),
            custom,
            size: Some(42),
        };
        let mut out = HeaderMap::new();
        meta.to_headers(&mut out);
        let get = |n: &str| out.get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(get("content-type"), "text/plain");
        assert_eq!(get("content-encoding"), "gzip");
        assert_eq!(get("x-sn-expiration"), "tti:1d 1h");
        assert_eq!(get("x-sn-time-created"), "2023-11-14T22:13:21Z");
        assert_eq!(get("x-sn-time-expires"), "2023-11-15T23:13:21Z");
        assert_eq!(get("x-sn-origin"), "%C3%9Cnknown-%E6%BA%90");
        assert_eq!(get("x-sn-filename"), "r%C3%A9port.pdf");
        assert_eq!(get("x-snme-release"), "100%25 v%C3%A9rsion");
        assert_eq!(get("x-snme-tab"), "a%09b%7F");
        assert_eq!(get("x-sn-size"), "42");
        assert_eq!(
            get("content-disposition"),
            "attachment; filename=\"r_port.pdf\"; filename*=UTF-8''r%C3%A9port.pdf"
        );
        assert_eq!(out.len(), 11);

        let padded = Metadata {
            origin: Some("  two sides ".into()),
            filename: Some("   ".into()),
            ..Metadata::default()
        };
        let mut out = HeaderMap::new();
        padded.to_headers(&mut out);
        assert_eq!(out["x-sn-origin"], "%20%20two sides%20");
        assert_eq!(out["x-sn-filename"], "%20%20%20");
    }

    #[test]
    fn minimal_headers_out() {
        let mut out = HeaderMap::new();
        Metadata::default().to_headers(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out["content-type"], "application/octet-stream");
    }

    #[test]
    fn disposition_rules() {
        let cd = |f: &str| content_disposition(f).unwrap().to_str().unwrap().to_owned();
        assert_eq!(cd("a.txt"), "attachment; filename=\"a.txt\"");
        assert_eq!(
            cd("../etc\\passwd"),
            "attachment; filename=\"..-etc-passwd\""
        );
        assert_eq!(cd(".."), "attachment; filename=\"--\"");
        assert_eq!(cd("."), "attachment; filename=\"-\"");
        assert_eq!(
            cd("say \"hi\".txt"),
            "attachment; filename=\"say \\\"hi\\\".txt\""
        );
        assert_eq!(cd("a\tb"), "attachment; filename=\"a_b\"");
        assert_eq!(cd(""), "attachment; filename=\"\"");
        assert_eq!(
            cd("日本/x y.pdf"),
            "attachment; filename=\"__-x y.pdf\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC-x%20y.pdf"
        );
    }

    #[test]
    fn expiry_check() {
        let t = UNIX_EPOCH + Duration::from_secs(100);
        let meta = Metadata {
            time_expires: Some(t),
            ..Metadata::default()
        };
        assert!(!meta.is_expired(t - Duration::from_millis(1)));
        assert!(meta.is_expired(t));
        assert!(meta.is_expired(t + Duration::from_secs(1)));
        assert!(!Metadata::default().is_expired(t));
    }

    /// Differential checks against `objectstore-types` 0.3.0, the crate in which the newest
    /// Rust client parses and writes these headers: what we emit it must read back to the
    /// same logical values, and what it sends we must read the same way.
    mod client_compat {
        use std::time::{Duration, UNIX_EPOCH};

        use super::super::*;
        use super::now;
        use objectstore_types::metadata as ot;
        use proptest::prelude::*;

        fn policy(secs: u64, kind: u8) -> (ExpirationPolicy, ot::ExpirationPolicy) {
            let d = Duration::from_secs(secs);
            match kind % 3 {
                0 => (ExpirationPolicy::Manual, ot::ExpirationPolicy::Manual),
                1 => (
                    ExpirationPolicy::TimeToLive(d),
                    ot::ExpirationPolicy::TimeToLive(d),
                ),
                _ => (
                    ExpirationPolicy::TimeToIdle(d),
                    ot::ExpirationPolicy::TimeToIdle(d),
                ),
            }
        }

        proptest! {
            #[test]
            fn client_reads_what_we_write(
                custom in proptest::collection::btree_map("[a-z0-9][a-z0-9_-]{0,10}", "(?s).*", 0..5),
                origin in proptest::option::of("(?s).*"),
                filename in proptest::option::of("(?s).*"),
                secs in 0u64..1_000_000_000,
                kind in any::<u8>(),
                gzip in proptest::option::of(any::<bool>()),
                size in proptest::option::of(0u64..u64::from(u32::MAX)),
                created in 0u64..253_402_300_799,
            ) {
                let (ours, theirs) = policy(secs, kind);
                let meta = Metadata {
                    content_type: "text/plain; charset=utf-8".to_owned(),
                    compression: gzip.map(|g| if g { Compression::Gzip } else { Compression::Zstd }),
                    expiration: ours,
                    time_created: Some(UNIX_EPOCH + Duration::from_secs(created)),
                    time_expires: (!ours.is_manual()).then(|| UNIX_EPOCH + Duration::from_secs(created)),
                    origin,
                    filename,
                    custom,
                    size,
                };
                let mut out = HeaderMap::new();
                meta.to_headers(&mut out);
                let parsed = ot::Metadata::from_headers(&out, "").expect("client parses our headers");
                prop_assert_eq!(parsed.expiration_policy, theirs);
                prop_assert_eq!(parsed.content_type.as_ref(), meta.content_type.as_str());
                prop_assert_eq!(parsed.compression.map(|c| c.as_str().to_owned()), meta.compression.map(|c| c.as_str().to_owned()));
                prop_assert_eq!(&parsed.origin, &meta.origin);
                prop_assert_eq!(&parsed.filename, &meta.filename);
                prop_assert_eq!(&parsed.custom, &meta.custom);
                prop_assert_eq!(parsed.size.map(|s| s as u64), meta.size);
                prop_assert_eq!(parsed.time_created.map(|t| t.as_secs()), Some(created));
                prop_assert_eq!(parsed.time_expires.map(|t| t.as_secs()), meta.time_expires.map(|_| created));
                // And the duration text is exactly the client's own.
                if let Some(value) = ours.to_header_value() {
                    prop_assert_eq!(value, theirs.to_string());
                }
            }

            #[test]
            fn we_read_what_the_client_sends(
                custom in proptest::collection::btree_map("[a-z0-9][a-z0-9_-]{0,10}", "\\PC*", 0..5),
                origin in proptest::option::of("\\PC*"),
                filename in proptest::option::of("\\PC*"),
                secs in 0u64..1_000_000_000,
                kind in any::<u8>(),
            ) {
                let (ours, theirs) = policy(secs, kind);
                let sent = ot::Metadata {
                    expiration_policy: theirs,
                    origin: origin.clone(),
                    filename: filename.clone(),
                    custom: custom.clone(),
                    ..ot::Metadata::default()
                };
                let headers = sent.to_headers("").expect("client writes headers");
                let meta = Metadata::from_headers(&headers, now()).expect("we parse the client's headers");
                prop_assert_eq!(meta.expiration, ours);
                prop_assert_eq!(meta.origin, origin);
                prop_assert_eq!(meta.filename, filename);
                prop_assert_eq!(meta.custom, custom);
                prop_assert_eq!(meta.content_type, "application/octet-stream");
            }
        }
    }

    mod props {
        use super::super::*;
        use super::now;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn custom_values_round_trip(
                custom in proptest::collection::btree_map("[a-z0-9][a-z0-9_-]{0,10}", "\\PC*|(?s).*", 0..6),
                origin in proptest::option::of("(?s).*"),
                filename in proptest::option::of("(?s).*"),
            ) {
                let meta = Metadata {
                    custom,
                    origin,
                    filename,
                    ..Metadata::default()
                };
                let mut out = HeaderMap::new();
                meta.to_headers(&mut out);
                let back = Metadata::from_headers(&out, now()).unwrap();
                prop_assert_eq!(back.custom, meta.custom);
                prop_assert_eq!(back.origin, meta.origin);
                prop_assert_eq!(back.filename, meta.filename);
            }

            #[test]
            fn arbitrary_insert_headers_never_panic(
                values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 6),
            ) {
                let names = ["content-type", "content-encoding", "x-sn-expiration", "x-sn-origin", "x-sn-filename", "x-snme-any"];
                let mut input = HeaderMap::new();
                for (name, value) in names.iter().zip(&values) {
                    if let Ok(value) = HeaderValue::from_bytes(value) {
                        input.insert(*name, value);
                    }
                }
                if let Ok(meta) = Metadata::from_headers(&input, now()) {
                    // Whatever was accepted is written back as valid headers and re-read identically.
                    let mut out = HeaderMap::new();
                    meta.to_headers(&mut out);
                    let mut back = Metadata::from_headers(&out, now()).unwrap();
                    // Sub-second durations are emitted truncated (`d h m s` only).
                    prop_assert_eq!(back.expiration.to_header_value(), meta.expiration.to_header_value());
                    back.expiration = meta.expiration;
                    back.time_expires = meta.time_expires;
                    prop_assert_eq!(back, meta);
                }
            }

            #[test]
            fn disposition_is_always_a_header(filename in ".*") {
                let value = content_disposition(&filename).unwrap();
                prop_assert!(value.to_str().is_ok());
            }

            #[test]
            fn full_metadata_round_trip(ttl in 0u64..100_000_000, tti in any::<bool>()) {
                let policy = if tti {
                    ExpirationPolicy::TimeToIdle(std::time::Duration::from_secs(ttl))
                } else {
                    ExpirationPolicy::TimeToLive(std::time::Duration::from_secs(ttl))
                };
                let mut input = HeaderMap::new();
                input.insert(HEADER_EXPIRATION, HeaderValue::from_str(&policy.to_header_value().unwrap()).unwrap());
                input.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
                let meta = Metadata::from_headers(&input, now()).unwrap();
                let mut out = HeaderMap::new();
                meta.to_headers(&mut out);
                let back = Metadata::from_headers(&out, now()).unwrap();
                prop_assert_eq!(back, meta);
            }
        }
    }
}
