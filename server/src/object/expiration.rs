//! Expiration policies (manual, TTL, TTI), their header grammar and deadline arithmetic.
//!
//! Wire rules (api §4.2, §4.3 and api-newest §4.2, §4.3, §4.7):
//! - durations are read in the humantime superset (`30s`, `1 days 3600 seconds`,
//!   `2weeks`, `2months`) but written only as `d h m s` (`1d 1h`, `90d`, `0s`), because
//!   Python 0.2.10 parses nothing else;
//! - timestamps are whole seconds, RFC 3339 UTC with `Z`; fractional instants round up;
//! - deadlines never exceed 9999-12-31T23:59:59Z, the last instant RFC 3339 can carry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Metadata;

/// The last whole second RFC 3339 can express: 9999-12-31T23:59:59Z.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// The longest TTI debounce window: deadlines of long-TTI objects move at most daily.
const MAX_TTI_DEBOUNCE: Duration = Duration::from_secs(24 * 60 * 60);

/// How an object expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ExpirationPolicy {
    /// Never expires.
    #[default]
    Manual,
    /// Expires `duration` after creation.
    TimeToLive(Duration),
    /// Expires `duration` after the last access.
    TimeToIdle(Duration),
}

/// Why an expiration policy, duration or timestamp could not be read.
///
/// On insert this becomes a 400 metadata error; in a PATCH body it makes the JSON
/// deserialization fail (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpirationError {
    /// The policy is none of `manual`, `ttl:<duration>`, `tti:<duration>`.
    #[error(
        "invalid expiration policy '{0}': expected 'manual', 'ttl:<duration>' or 'tti:<duration>'"
    )]
    InvalidPolicy(String),
    /// The duration is empty or not in the humantime grammar.
    #[error("invalid duration '{input}': {reason}")]
    InvalidDuration {
        /// The rejected text.
        input: String,
        /// What the parser disliked.
        reason: String,
    },
    /// The timestamp is not RFC 3339.
    #[error("invalid timestamp '{input}': {reason}")]
    InvalidTimestamp {
        /// The rejected text.
        input: String,
        /// What the parser disliked.
        reason: String,
    },
    /// The timestamp is before 1970 or after 9999.
    #[error("timestamp '{0}' is out of the supported range")]
    OutOfRange(String),
}

impl ExpirationPolicy {
    /// Parses an `x-sn-expiration` value: `manual`, `ttl:<duration>` or `tti:<duration>`.
    ///
    /// Why: the header is how clients choose an expiry on insert; the duration accepts
    /// every form any client version has sent ([`parse_duration`]). `ttl:` (empty) is an
    /// error; `ttl:0s` is fine and expires at once.
    pub fn parse(s: &str) -> Result<Self, ExpirationError> {
        if s == "manual" {
            Ok(ExpirationPolicy::Manual)
        } else if let Some(d) = s.strip_prefix("ttl:") {
            parse_duration(d).map(ExpirationPolicy::TimeToLive)
        } else if let Some(d) = s.strip_prefix("tti:") {
            parse_duration(d).map(ExpirationPolicy::TimeToIdle)
        } else {
            Err(ExpirationError::InvalidPolicy(s.to_owned()))
        }
    }

    /// The `x-sn-expiration` response value, or `None` for manual (the header is then
    /// left out, api §4.2).
    ///
    /// Why: the output must be the `d h m s` form of api-newest §4.2 (`ttl:1d 1h`); the
    /// older humantime form breaks Python 0.2.10.
    pub fn to_header_value(&self) -> Option<String> {
        match self {
            ExpirationPolicy::Manual => None,
            ExpirationPolicy::TimeToLive(d) => Some(format!("ttl:{}", format_duration(*d))),
            ExpirationPolicy::TimeToIdle(d) => Some(format!("tti:{}", format_duration(*d))),
        }
    }

    /// Whether this is the non-expiring policy.
    pub fn is_manual(&self) -> bool {
        matches!(self, ExpirationPolicy::Manual)
    }
}

/// Formats a duration as `d h m s` groups, largest first, zero groups left out,
/// sub-second remainder truncated, `0s` for zero (api-newest §4.2).
///
/// Why: this is the only duration form both newest clients parse.
pub fn format_duration(d: Duration) -> String {
    let total = d.as_secs();
    if total == 0 {
        return "0s".to_owned();
    }
    let parts = [
        (total / 86_400, "d"),
        (total % 86_400 / 3_600, "h"),
        (total % 3_600 / 60, "m"),
        (total % 60, "s"),
    ];
    let mut out = String::new();
    for (value, unit) in parts {
        if value > 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&value.to_string());
            out.push_str(unit);
        }
    }
    out
}

/// Parses a duration in the humantime grammar (api §4.2): `30s`, `1d 1h`,
/// `1 days 3600 seconds` (Python 0.2.0), `2weeks`, `2months`, `1.5s`.
///
/// Why: servers must keep reading what older clients send. An empty or blank input
/// is an error.
pub fn parse_duration(s: &str) -> Result<Duration, ExpirationError> {
    humantime::parse_duration(s).map_err(|e| ExpirationError::InvalidDuration {
        input: s.to_owned(),
        reason: e.to_string(),
    })
}

/// Rounds an instant up to the next whole second (unchanged when already whole).
///
/// Why: stored and emitted timestamps are whole seconds, and rounding up never makes
/// an object expire earlier than the client asked.
pub fn round_up_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(since) if since.subsec_nanos() == 0 => t,
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs() + 1),
        // Before 1970: rounding up moves towards the epoch, i.e. drops the fraction.
        Err(e) => UNIX_EPOCH - Duration::from_secs(e.duration().as_secs()),
    }
}

/// Formats an instant as RFC 3339 UTC, whole seconds, with `Z`
/// (`2023-11-14T22:13:21Z`). Fractions round up; instants outside 1970..=9999 are
/// clamped to that range.
///
/// Why: this is the `x-sn-time-*` form of api-newest §4.3, which both clients parse.
pub fn format_timestamp(t: SystemTime) -> String {
    let secs = match round_up_to_second(t).duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs().min(MAX_UNIX_SECS),
        Err(_) => 0,
    };
    // humantime writes exactly `YYYY-MM-DDTHH:MM:SSZ` for 1970..=9999.
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Parses a full RFC 3339 timestamp (any offset, any fractional digits) and rounds it
/// up to the whole second.
///
/// Why: Python sends `isoformat()` output such as `2026-10-16T12:00:00.123456+00:00`
/// in PATCH bodies; rounding up never shortens the requested lifetime.
pub fn parse_timestamp(s: &str) -> Result<SystemTime, ExpirationError> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| ExpirationError::InvalidTimestamp {
        input: s.to_owned(),
        reason: e.to_string(),
    })?;
    let nanos = dt.unix_timestamp_nanos();
    if nanos < 0 {
        return Err(ExpirationError::OutOfRange(s.to_owned()));
    }
    let nanos = nanos as u128;
    let t = UNIX_EPOCH
        + Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        );
    let t = round_up_to_second(t);
    if secs_since_epoch(t) > MAX_UNIX_SECS {
        return Err(ExpirationError::OutOfRange(s.to_owned()));
    }
    Ok(t)
}

fn secs_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The latest deadline any object can carry (9999-12-31T23:59:59Z).
fn max_deadline() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MAX_UNIX_SECS)
}

/// `base + d`, rounded up, or `None` past the year 9999.
fn deadline_after(base: SystemTime, d: Duration) -> Option<SystemTime> {
    let t = round_up_to_second(base.checked_add(d)?);
    (t <= max_deadline()).then_some(t)
}

/// The deadline set at insert: `round_up(now) + duration` for TTL and TTI, `None` for
/// manual. Deadlines past the year 9999 are clamped to 9999-12-31T23:59:59Z.
///
/// Why: one definition shared by every insert path (O1, O2, multipart, batch), whole
/// seconds so that it survives the header round trip unchanged.
pub fn initial_deadline(policy: ExpirationPolicy, now: SystemTime) -> Option<SystemTime> {
    match policy {
        ExpirationPolicy::Manual => None,
        ExpirationPolicy::TimeToLive(d) | ExpirationPolicy::TimeToIdle(d) => {
            Some(deadline_after(round_up_to_second(now), d).unwrap_or_else(max_deadline))
        }
    }
}

/// The new TTI deadline after an access at `now`, or `None` when it should not move.
///
/// Why (api-newest §4.7): writing metadata on every read is expensive, so the deadline
/// moves to `round_up(now) + tti` only when that is more than `min(tti/4, 24h)` later
/// than the stored deadline. Requires a stored deadline; only TTI objects are bumped.
pub fn tti_bump(
    policy: ExpirationPolicy,
    stored_deadline: Option<SystemTime>,
    now: SystemTime,
) -> Option<SystemTime> {
    let ExpirationPolicy::TimeToIdle(tti) = policy else {
        return None;
    };
    let stored = stored_deadline?;
    let new_deadline = deadline_after(round_up_to_second(now), tti)?;
    let debounce = Duration::from_secs((tti / 4).min(MAX_TTI_DEBOUNCE).as_secs());
    let gain = new_deadline.duration_since(stored).ok()?;
    (gain > debounce).then_some(new_deadline)
}

/// What a PATCH asks the deadline to become (at least).
///
/// The HTTP layer reads it from the PATCH body (`crate::http::patch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendExpiry {
    /// An absolute deadline, already rounded up to whole seconds.
    At(SystemTime),
    /// A deadline relative to creation or to the request time; whole seconds.
    After {
        /// The offset (fractional seconds truncated).
        after: Duration,
        /// What the offset counts from.
        from: ExtendFrom,
    },
}

/// The reference point of a relative extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtendFrom {
    /// The object's `time_created`.
    Creation,
    /// The server's request time.
    Now,
}

/// Why a valid PATCH could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtendError {
    /// The extension makes no sense for this object (manual policy, or `from:creation`
    /// without a creation time). Maps to 409.
    #[error("expiry extension could not be satisfied: {0}")]
    Rejected(String),
    /// The new deadline would be past 9999-12-31T23:59:59Z. Maps to 400.
    #[error("expiry extension is out of range: the deadline would be past the year 9999")]
    OutOfRange,
}

/// Applies a PATCH extension to stored metadata.
///
/// Returns `Ok(Some(updated))` when the deadline moves later, `Ok(None)` when the
/// current deadline already satisfies the request (deadlines are never shortened).
/// Why the TTL rewrite (#646): a TTL object's policy must keep describing its deadline,
/// so after a move it becomes `ttl:(new deadline − time_created)`; TTI keeps its
/// duration because its deadline is relative to the last access anyway.
pub fn apply_extension(
    meta: &Metadata,
    ext: &ExtendExpiry,
    now: SystemTime,
) -> Result<Option<Metadata>, ExtendError> {
    if meta.expiration.is_manual() {
        return Err(ExtendError::Rejected(
            "the object has a manual expiration policy".to_owned(),
        ));
    }
    let target = match ext {
        ExtendExpiry::At(at) => round_up_to_second(*at),
        ExtendExpiry::After { after, from } => {
            let base = match from {
                ExtendFrom::Now => round_up_to_second(now),
                ExtendFrom::Creation => meta.time_created.ok_or_else(|| {
                    ExtendError::Rejected("the object has no creation time".to_owned())
                })?,
            };
            base.checked_add(*after)
                .map(round_up_to_second)
                .ok_or(ExtendError::OutOfRange)?
        }
    };
    if target > max_deadline() {
        return Err(ExtendError::OutOfRange);
    }
    if meta.time_expires.is_some_and(|current| target <= current) {
        return Ok(None);
    }
    let mut updated = meta.clone();
    updated.time_expires = Some(target);
    if let (ExpirationPolicy::TimeToLive(_), Some(created)) = (meta.expiration, meta.time_created) {
        if let Ok(ttl) = target.duration_since(created) {
            updated.expiration = ExpirationPolicy::TimeToLive(ttl);
        }
    }
    Ok(Some(updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + secs(s)
    }

    #[test]
    fn policy_parse_forms() {
        assert_eq!(
            ExpirationPolicy::parse("manual").unwrap(),
            ExpirationPolicy::Manual
        );
        assert_eq!(
            ExpirationPolicy::parse("ttl:30s").unwrap(),
            ExpirationPolicy::TimeToLive(secs(30))
        );
        assert_eq!(
            ExpirationPolicy::parse("tti:1d 1h").unwrap(),
            ExpirationPolicy::TimeToIdle(secs(90_000))
        );
        assert_eq!(
            ExpirationPolicy::parse("ttl:1 days 3600 seconds").unwrap(),
            ExpirationPolicy::TimeToLive(secs(90_000))
        );
        assert_eq!(
            ExpirationPolicy::parse("tti:2weeks").unwrap(),
            ExpirationPolicy::TimeToIdle(secs(14 * 86_400))
        );
        assert_eq!(
            ExpirationPolicy::parse("ttl:2months").unwrap(),
            ExpirationPolicy::TimeToLive(secs(2 * 2_630_016))
        );
        assert_eq!(
            ExpirationPolicy::parse("ttl:0s").unwrap(),
            ExpirationPolicy::TimeToLive(secs(0))
        );
    }

    #[test]
    fn policy_parse_errors() {
        for bad in [
            "", "ttl:", "tti:", "ttl: ", "TTL:30s", "ttl:30", "ttl:30x", "Manual", "ttl30s",
            "never",
        ] {
            assert!(ExpirationPolicy::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn policy_header_value() {
        assert_eq!(ExpirationPolicy::Manual.to_header_value(), None);
        assert_eq!(
            ExpirationPolicy::TimeToLive(secs(90_000))
                .to_header_value()
                .unwrap(),
            "ttl:1d 1h"
        );
        assert_eq!(
            ExpirationPolicy::parse("ttl:2months")
                .unwrap()
                .to_header_value()
                .unwrap(),
            "ttl:60d 21h 7m 12s"
        );
        assert_eq!(
            ExpirationPolicy::parse("tti:2weeks")
                .unwrap()
                .to_header_value()
                .unwrap(),
            "tti:14d"
        );
    }

    #[test]
    fn duration_output_examples() {
        let cases = [
            (secs(30), "30s"),
            (secs(3600), "1h"),
            (secs(86_400), "1d"),
            (secs(25 * 3600), "1d 1h"),
            (secs(7 * 86_400), "7d"),
            (secs(90 * 86_400), "90d"),
            (secs(400 * 86_400), "400d"),
            (secs(90_061), "1d 1h 1m 1s"),
            (secs(0), "0s"),
            (Duration::from_millis(1500), "1s"),
            (Duration::from_millis(999), "0s"),
            (secs(3601), "1h 1s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    /// Found by the `parsers` fuzz target: a fractional input parses exactly, and its
    /// wire form drops the fraction, so it parses back as the whole seconds.
    #[test]
    fn fractional_duration_round_trips_to_whole_seconds() {
        let parsed = parse_duration("8.110170m").unwrap();
        assert_eq!(parsed, Duration::from_micros(486_610_200));
        let formatted = format_duration(parsed);
        assert_eq!(formatted, "8m 6s");
        assert_eq!(parse_duration(&formatted).unwrap(), secs(486));
    }

    #[test]
    fn duration_input_errors() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("   ").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn rounding() {
        assert_eq!(round_up_to_second(at(10)), at(10));
        assert_eq!(round_up_to_second(at(10) + Duration::from_nanos(1)), at(11));
        assert_eq!(
            round_up_to_second(at(10) + Duration::from_millis(999)),
            at(11)
        );
        assert_eq!(
            round_up_to_second(UNIX_EPOCH - Duration::from_millis(1500)),
            UNIX_EPOCH - secs(1)
        );
    }

    #[test]
    fn timestamp_format() {
        assert_eq!(format_timestamp(at(1_700_000_001)), "2023-11-14T22:13:21Z");
        assert_eq!(
            format_timestamp(at(1_700_000_000) + Duration::from_millis(1)),
            "2023-11-14T22:13:21Z"
        );
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_timestamp(at(MAX_UNIX_SECS + 1000)),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn timestamp_parse() {
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:21Z").unwrap(),
            at(1_700_000_001)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.000001+00:00").unwrap(),
            at(1_700_000_001)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.000000Z").unwrap(),
            at(1_700_000_000)
        );
        assert_eq!(
            parse_timestamp("2023-11-15T00:13:20+02:00").unwrap(),
            at(1_700_000_000)
        );
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59Z").unwrap(),
            at(MAX_UNIX_SECS)
        );
        assert!(matches!(
            parse_timestamp("9999-12-31T23:59:59.5Z"),
            Err(ExpirationError::OutOfRange(_))
        ));
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:21",
            "yesterday",
            "2023-11-14T22:13:21 +01:00",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn initial_deadlines() {
        let now = at(100) + Duration::from_millis(300);
        assert_eq!(initial_deadline(ExpirationPolicy::Manual, now), None);
        assert_eq!(
            initial_deadline(ExpirationPolicy::TimeToLive(secs(30)), now),
            Some(at(131))
        );
        assert_eq!(
            initial_deadline(ExpirationPolicy::TimeToIdle(secs(0)), now),
            Some(at(101))
        );
        assert_eq!(
            initial_deadline(
                ExpirationPolicy::TimeToLive(Duration::from_millis(500)),
                now
            ),
            Some(at(102))
        );
        assert_eq!(
            initial_deadline(ExpirationPolicy::TimeToLive(secs(u64::MAX)), now),
            Some(at(MAX_UNIX_SECS))
        );
    }

    #[test]
    fn tti_bump_rules() {
        let tti = ExpirationPolicy::TimeToIdle(secs(400));
        // Debounce is 100 s: a gain of exactly 100 s does not bump, 101 s does.
        assert_eq!(tti_bump(tti, Some(at(1_300)), at(1_000)), None);
        assert_eq!(tti_bump(tti, Some(at(1_299)), at(1_000)), Some(at(1_400)));
        // Fractional access time rounds up first.
        assert_eq!(
            tti_bump(tti, Some(at(1_299)), at(999) + Duration::from_millis(1)),
            Some(at(1_400))
        );
        // Requires a stored deadline and a TTI policy.
        assert_eq!(tti_bump(tti, None, at(1_000)), None);
        assert_eq!(
            tti_bump(
                ExpirationPolicy::TimeToLive(secs(400)),
                Some(at(0)),
                at(1_000)
            ),
            None
        );
        assert_eq!(
            tti_bump(ExpirationPolicy::Manual, Some(at(0)), at(1_000)),
            None
        );
        // A stored deadline later than the new one never moves backwards.
        assert_eq!(tti_bump(tti, Some(at(5_000)), at(1_000)), None);
        // Long TTIs debounce by at most 24 h.
        let long = ExpirationPolicy::TimeToIdle(secs(30 * 86_400));
        let now = at(10_000_000);
        let new = now + secs(30 * 86_400);
        assert_eq!(tti_bump(long, Some(new - secs(86_400)), now), None);
        assert_eq!(tti_bump(long, Some(new - secs(86_401)), now), Some(new));
        // Zero TTI: any later access bumps.
        let zero = ExpirationPolicy::TimeToIdle(secs(0));
        assert_eq!(tti_bump(zero, Some(at(5)), at(6)), Some(at(6)));
        assert_eq!(tti_bump(zero, Some(at(6)), at(6)), None);
    }

    fn ttl_meta(created: u64, ttl: u64) -> Metadata {
        Metadata {
            expiration: ExpirationPolicy::TimeToLive(secs(ttl)),
            time_created: Some(at(created)),
            time_expires: Some(at(created + ttl)),
            ..Metadata::default()
        }
    }

    #[test]
    fn extension_moves_ttl_and_recalculates() {
        let meta = ttl_meta(1_000, 86_400);
        let ext = ExtendExpiry::After {
            after: secs(3 * 86_400),
            from: ExtendFrom::Creation,
        };
        let updated = apply_extension(&meta, &ext, at(2_000)).unwrap().unwrap();
        assert_eq!(updated.time_expires, Some(at(1_000 + 3 * 86_400)));
        assert_eq!(updated.expiration.to_header_value().unwrap(), "ttl:3d");
        assert_eq!(updated.time_created, meta.time_created);
    }

    #[test]
    fn extension_from_now_and_at() {
        let meta = ttl_meta(1_000, 100);
        let ext = ExtendExpiry::After {
            after: secs(500),
            from: ExtendFrom::Now,
        };
        let updated = apply_extension(&meta, &ext, at(1_050) + Duration::from_millis(10))
            .unwrap()
            .unwrap();
        assert_eq!(updated.time_expires, Some(at(1_551)));
        assert_eq!(updated.expiration, ExpirationPolicy::TimeToLive(secs(551)));

        let ext = ExtendExpiry::At(at(5_000));
        let updated = apply_extension(&meta, &ext, at(1_050)).unwrap().unwrap();
        assert_eq!(updated.time_expires, Some(at(5_000)));
        assert_eq!(
            updated.expiration,
            ExpirationPolicy::TimeToLive(secs(4_000))
        );
    }

    #[test]
    fn extension_never_shortens() {
        let meta = ttl_meta(1_000, 1_000);
        assert_eq!(
            apply_extension(&meta, &ExtendExpiry::At(at(1_500)), at(1_100)),
            Ok(None)
        );
        assert_eq!(
            apply_extension(&meta, &ExtendExpiry::At(at(2_000)), at(1_100)),
            Ok(None)
        );
    }

    #[test]
    fn extension_keeps_tti_duration() {
        let meta = Metadata {
            expiration: ExpirationPolicy::TimeToIdle(secs(60)),
            time_created: Some(at(1_000)),
            time_expires: Some(at(1_060)),
            ..Metadata::default()
        };
        let updated = apply_extension(&meta, &ExtendExpiry::At(at(9_000)), at(1_010))
            .unwrap()
            .unwrap();
        assert_eq!(updated.expiration, ExpirationPolicy::TimeToIdle(secs(60)));
        assert_eq!(updated.time_expires, Some(at(9_000)));
    }

    #[test]
    fn extension_rejections() {
        let manual = Metadata {
            time_created: Some(at(1)),
            ..Metadata::default()
        };
        assert!(matches!(
            apply_extension(&manual, &ExtendExpiry::At(at(9_000)), at(10)),
            Err(ExtendError::Rejected(_))
        ));
        let mut no_created = ttl_meta(1_000, 10);
        no_created.time_created = None;
        let from_creation = ExtendExpiry::After {
            after: secs(100),
            from: ExtendFrom::Creation,
        };
        assert!(matches!(
            apply_extension(&no_created, &from_creation, at(10)),
            Err(ExtendError::Rejected(_))
        ));
        // `from: now` still works without a creation time, and keeps the TTL value.
        let from_now = ExtendExpiry::After {
            after: secs(100),
            from: ExtendFrom::Now,
        };
        let updated = apply_extension(&no_created, &from_now, at(1_000))
            .unwrap()
            .unwrap();
        assert_eq!(updated.time_expires, Some(at(1_100)));
        assert_eq!(updated.expiration, ExpirationPolicy::TimeToLive(secs(10)));
        // Past the year 9999.
        let huge = ExtendExpiry::After {
            after: secs(MAX_UNIX_SECS),
            from: ExtendFrom::Now,
        };
        assert_eq!(
            apply_extension(&ttl_meta(1_000, 10), &huge, at(1_000)),
            Err(ExtendError::OutOfRange)
        );
        let overflow = ExtendExpiry::After {
            after: Duration::MAX,
            from: ExtendFrom::Now,
        };
        assert_eq!(
            apply_extension(&ttl_meta(1_000, 10), &overflow, at(1_000)),
            Err(ExtendError::OutOfRange)
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn duration_round_trip(s in 0u64..=(MAX_UNIX_SECS), nanos in 0u32..1_000_000_000) {
                let d = Duration::new(s, nanos);
                let text = format_duration(d);
                prop_assert_eq!(parse_duration(&text).unwrap(), Duration::from_secs(s));
                // Only d/h/m/s units are ever emitted.
                prop_assert!(text.split(' ').all(|g| g.ends_with(['d', 'h', 'm', 's'])));
            }

            #[test]
            fn policy_round_trip(s in 0u64..10_000_000, ttl in any::<bool>()) {
                let p = if ttl {
                    ExpirationPolicy::TimeToLive(Duration::from_secs(s))
                } else {
                    ExpirationPolicy::TimeToIdle(Duration::from_secs(s))
                };
                prop_assert_eq!(ExpirationPolicy::parse(&p.to_header_value().unwrap()).unwrap(), p);
            }

            #[test]
            fn timestamp_round_trip(s in 0u64..=MAX_UNIX_SECS) {
                let t = UNIX_EPOCH + Duration::from_secs(s);
                prop_assert_eq!(parse_timestamp(&format_timestamp(t)).unwrap(), t);
            }
        }
    }
}
