//! The `Range` request header of GET (api §4.6).
//!
//! Accepted: `bytes=S-E`, `bytes=S-`, `bytes=-N` (prefix case-insensitive, no
//! whitespace). A list (`,`) is ignored and the full object is served. Everything else
//! is a 400. Resolution against the stored size decides between 206 and 416.

use std::ops::RangeInclusive;

use http::HeaderValue;

/// One parsed byte range, not yet resolved against the object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=S-E`: from S to E inclusive (S ≤ E).
    FromTo(u64, u64),
    /// `bytes=S-`: from S to the end.
    From(u64),
    /// `bytes=-N`: the last N bytes (N > 0).
    Suffix(u64),
}

/// Why a `Range` header was rejected (400). The HTTP layer prefixes the Display text
/// with `client error: invalid Range header: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The value has bytes outside visible ASCII.
    #[error("value is not ASCII")]
    NotAscii,
    /// The unit is not `bytes`; no other unit exists for objects.
    #[error("unsupported unit, expected 'bytes='")]
    UnsupportedUnit,
    /// The part after `bytes=` is not `S-E`, `S-` or `-N` with decimal numbers.
    #[error("malformed range '{0}', expected 'S-E', 'S-' or '-N'")]
    Malformed(String),
    /// `S > E` in `bytes=S-E`.
    #[error("range start {0} is after range end {1}")]
    StartAfterEnd(u64, u64),
    /// `bytes=-0` asks for nothing.
    #[error("suffix length must be greater than zero")]
    ZeroSuffix,
}

/// The range cannot be served from an object of `total` bytes (416 with
/// `content-range: bytes */total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable for an object of {total} bytes")]
pub struct Unsatisfiable {
    /// The stored size the range was resolved against.
    pub total: u64,
}

impl Unsatisfiable {
    /// The `content-range` value of the 416 response: `bytes */T`.
    pub fn content_range(&self) -> String {
        format!("bytes */{}", self.total)
    }
}

/// Parses a `Range` header. `Ok(None)` means "ignore it and serve the whole object",
/// which is what a multi-range list (any `,`) gets.
///
/// Why strict: a malformed range is a client bug worth surfacing (400), while
/// multi-range requests are legal HTTP that this server simply does not serve.
pub fn parse_range(value: &HeaderValue) -> Result<Option<ByteRange>, RangeError> {
    let text = value.to_str().map_err(|_| RangeError::NotAscii)?;
    if text.contains(',') {
        return Ok(None);
    }
    let spec = match text.get(..6) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bytes=") => &text[6..],
        _ => return Err(RangeError::UnsupportedUnit),
    };
    let malformed = || RangeError::Malformed(spec.to_owned());
    let (start, end) = spec.split_once('-').ok_or_else(malformed)?;
    match (start.is_empty(), end.is_empty()) {
        (true, true) => Err(malformed()),
        (true, false) => match number(end).ok_or_else(malformed)? {
            0 => Err(RangeError::ZeroSuffix),
            n => Ok(Some(ByteRange::Suffix(n))),
        },
        (false, true) => Ok(Some(ByteRange::From(number(start).ok_or_else(malformed)?))),
        (false, false) => {
            let s = number(start).ok_or_else(malformed)?;
            let e = number(end).ok_or_else(malformed)?;
            if s > e {
                return Err(RangeError::StartAfterEnd(s, e));
            }
            Ok(Some(ByteRange::FromTo(s, e)))
        }
    }
}

/// Decimal digits only (no sign, no whitespace), fitting in u64.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl ByteRange {
    /// Resolves the range against the stored size `total` into inclusive offsets.
    ///
    /// Why here: the rules (api §4.6) are easy to get subtly wrong: an empty object
    /// satisfies no range, a start at or past the end is 416, the end is clamped to
    /// `total − 1`, and a suffix longer than the object means the whole object.
    pub fn resolve(&self, total: u64) -> Result<RangeInclusive<u64>, Unsatisfiable> {
        if total == 0 {
            return Err(Unsatisfiable { total });
        }
        let last = total - 1;
        match *self {
            ByteRange::FromTo(s, _) | ByteRange::From(s) if s >= total => {
                Err(Unsatisfiable { total })
            }
            ByteRange::FromTo(s, e) => Ok(s..=e.min(last)),
            ByteRange::From(s) => Ok(s..=last),
            ByteRange::Suffix(n) => Ok(total.saturating_sub(n)..=last),
        }
    }
}

/// The `content-range` value of a 206 response: `bytes S-E/T`.
///
/// Why: keeps the exact format next to the parser it answers.
pub fn content_range(span: &RangeInclusive<u64>, total: u64) -> String {
    format!("bytes {}-{}/{}", span.start(), span.end(), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<ByteRange>, RangeError> {
        parse_range(&HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse("bytes=0-4"), Ok(Some(ByteRange::FromTo(0, 4))));
        assert_eq!(parse("bytes=3-3"), Ok(Some(ByteRange::FromTo(3, 3))));
        assert_eq!(parse("bytes=5-"), Ok(Some(ByteRange::From(5))));
        assert_eq!(parse("bytes=-7"), Ok(Some(ByteRange::Suffix(7))));
        assert_eq!(parse("BYTES=1-2"), Ok(Some(ByteRange::FromTo(1, 2))));
        assert_eq!(parse("Bytes=1-"), Ok(Some(ByteRange::From(1))));
        assert_eq!(
            parse("bytes=0-18446744073709551615"),
            Ok(Some(ByteRange::FromTo(0, u64::MAX)))
        );
    }

    #[test]
    fn lists_are_ignored() {
        assert_eq!(parse("bytes=0-1,3-4"), Ok(None));
        assert_eq!(parse("bytes=0-1, 3-4"), Ok(None));
        // Even a malformed list is ignored.
        assert_eq!(parse("items=x,y"), Ok(None));
    }

    #[test]
    fn rejected_forms() {
        assert_eq!(parse("items=0-1"), Err(RangeError::UnsupportedUnit));
        assert_eq!(parse("bytes"), Err(RangeError::UnsupportedUnit));
        assert_eq!(parse(""), Err(RangeError::UnsupportedUnit));
        assert_eq!(parse("bytes 0-1"), Err(RangeError::UnsupportedUnit));
        assert_eq!(parse("bytes=5-1"), Err(RangeError::StartAfterEnd(5, 1)));
        assert_eq!(parse("bytes=-0"), Err(RangeError::ZeroSuffix));
        for bad in [
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes= 1-2",
            "bytes=1 -2",
            "bytes=1-2 ",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=-+2",
            "bytes=1--2",
            "bytes=1-2-3",
            "bytes=0x1-2",
            "bytes=18446744073709551616-",
        ] {
            assert!(
                matches!(parse(bad), Err(RangeError::Malformed(_))),
                "{bad:?}"
            );
        }
        let non_ascii = HeaderValue::from_bytes(b"bytes=\xc3\xa9-1").unwrap();
        assert_eq!(parse_range(&non_ascii), Err(RangeError::NotAscii));
    }

    #[test]
    fn messages() {
        assert_eq!(
            RangeError::StartAfterEnd(5, 1).to_string(),
            "range start 5 is after range end 1"
        );
        assert_eq!(Unsatisfiable { total: 9 }.content_range(), "bytes */9");
        assert_eq!(content_range(&(2..=4), 10), "bytes 2-4/10");
    }

    #[test]
    fn resolution() {
        use ByteRange::*;
        assert_eq!(FromTo(0, 4).resolve(10), Ok(0..=4));
        assert_eq!(FromTo(5, 100).resolve(10), Ok(5..=9));
        assert_eq!(FromTo(9, 9).resolve(10), Ok(9..=9));
        assert_eq!(FromTo(10, 12).resolve(10), Err(Unsatisfiable { total: 10 }));
        assert_eq!(From(3).resolve(10), Ok(3..=9));
        assert_eq!(From(10).resolve(10), Err(Unsatisfiable { total: 10 }));
        assert_eq!(Suffix(3).resolve(10), Ok(7..=9));
        assert_eq!(Suffix(30).resolve(10), Ok(0..=9));
        assert_eq!(Suffix(1).resolve(1), Ok(0..=0));
        for r in [FromTo(0, 0), From(0), Suffix(5)] {
            assert_eq!(r.resolve(0), Err(Unsatisfiable { total: 0 }));
        }
    }

    /// Differential check against `objectstore-types` 0.3.0 (upstream's own parser). The
    /// two deliberately differ on lists (api §4.6: ignored here, an error there) and on a
    /// leading `+` (u64 parsing accepts it; a sign is not a digit), so those are excluded.
    mod upstream_compat {
        use super::super::*;
        use objectstore_types::range as ot;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn same_verdicts_and_spans(
                prefix in prop_oneof![Just("bytes="), Just("BYTES="), Just("Bytes="), Just("items="), Just("bytes"), Just("")],
                spec in "[0-9-]{0,8}",
                total in 0u64..200,
            ) {
                let text = format!("{prefix}{spec}");
                let ours = parse_range(&HeaderValue::from_str(&text).unwrap());
                let theirs: Result<ot::ByteRange, _> = text.parse();
                prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{}", text);
                if let (Ok(Some(ours)), Ok(theirs)) = (ours, theirs) {
                    let ours = ours.resolve(total).ok().map(|r| (*r.start(), *r.end()));
                    let theirs = theirs.resolve(total).map(|c| (c.start, c.end));
                    prop_assert_eq!(ours, theirs, "{} of {}", text, total);
                }
            }
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn any_range() -> impl Strategy<Value = ByteRange> {
            prop_oneof![
                (0u64..1000, 0u64..1000).prop_map(|(a, b)| ByteRange::FromTo(a.min(b), a.max(b))),
                (0u64..1000).prop_map(ByteRange::From),
                (1u64..1000).prop_map(ByteRange::Suffix),
            ]
        }

        proptest! {
            #[test]
            fn resolved_spans_lie_inside_the_object(range in any_range(), total in 0u64..1000) {
                if let Ok(span) = range.resolve(total) {
                    prop_assert!(span.start() <= span.end());
                    prop_assert!(*span.end() < total);
                }
            }

            #[test]
            fn arbitrary_values_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), total in any::<u64>()) {
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    if let Ok(Some(range)) = parse_range(&value) {
                        let _ = range.resolve(total);
                    }
                }
            }

            #[test]
            fn header_text_round_trip(range in any_range()) {
                let text = match range {
                    ByteRange::FromTo(s, e) => format!("bytes={s}-{e}"),
                    ByteRange::From(s) => format!("bytes={s}-"),
                    ByteRange::Suffix(n) => format!("bytes=-{n}"),
                };
                prop_assert_eq!(parse_range(&HeaderValue::from_str(&text).unwrap()).unwrap(), Some(range));
            }
        }
    }
}
