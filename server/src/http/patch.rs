//! The body of `PATCH /v1/objects/{u}/{s}/{key}` (api-newest §4.7) and how it becomes
//! the service's [`ExtendExpiry`].

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::object::expiration::{parse_duration, parse_timestamp, ExtendExpiry, ExtendFrom};

/// Body of `PATCH /v1/objects/{u}/{s}/{key}` (api-newest §4.7).
///
/// Unknown fields are rejected so that a misspelt request fails loudly (422) instead of
/// silently doing nothing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataUpdate {
    /// The requested lifetime extension.
    pub extend_expiry: ExtendExpiry,
}

/// The JSON shape before validation; both forms share one field set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtendExpiry {
    at: Option<String>,
    after: Option<String>,
    from: Option<ExtendFrom>,
}

impl TryFrom<RawExtendExpiry> for ExtendExpiry {
    type Error = String;

    fn try_from(raw: RawExtendExpiry) -> Result<Self, Self::Error> {
        match (raw.at, raw.after, raw.from) {
            (Some(at), None, None) => parse_timestamp(&at)
                .map(ExtendExpiry::At)
                .map_err(|e| e.to_string()),
            (None, Some(after), Some(from)) => {
                let after = parse_duration(&after).map_err(|e| e.to_string())?;
                Ok(ExtendExpiry::After {
                    after: Duration::from_secs(after.as_secs()),
                    from,
                })
            }
            _ => Err(
                "extend_expiry must be {\"at\": <timestamp>} or {\"after\": <duration>, \"from\": \"creation\"|\"now\"}"
                    .to_owned(),
            ),
        }
    }
}

/// Accepts exactly `{"at":"<RFC3339>"}` or `{"after":"<duration>","from":"creation"|"now"}`;
/// anything else fails deserialization.
impl<'de> Deserialize<'de> for ExtendExpiry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawExtendExpiry::deserialize(deserializer)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn parse_update(json: &str) -> Result<MetadataUpdate, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn update_body_forms() {
        assert_eq!(
            parse_update(r#"{"extend_expiry":{"at":"2026-10-16T12:00:00.123456+00:00"}}"#)
                .unwrap()
                .extend_expiry,
            ExtendExpiry::At(parse_timestamp("2026-10-16T12:00:01Z").unwrap())
        );
        assert_eq!(
            parse_update(r#"{"extend_expiry":{"after":"30d","from":"creation"}}"#)
                .unwrap()
                .extend_expiry,
            ExtendExpiry::After {
                after: secs(30 * 86_400),
                from: ExtendFrom::Creation
            }
        );
        assert_eq!(
            parse_update(r#"{"extend_expiry":{"from":"now","after":"1d 1h 1.5s"}}"#)
                .unwrap()
                .extend_expiry,
            ExtendExpiry::After {
                after: secs(90_001),
                from: ExtendFrom::Now
            }
        );
    }

    #[test]
    fn update_body_rejections() {
        for bad in [
            r#"{}"#,
            r#"{"extend_expiry":{}}"#,
            r#"{"extend_expiry":{"at":"2026-10-16T12:00:00Z"},"x":1}"#,
            r#"{"extend_expiry":{"at":"2026-10-16T12:00:00Z","x":1}}"#,
            r#"{"extend_expiry":{"at":"2026-10-16T12:00:00Z","after":"1d","from":"now"}}"#,
            r#"{"extend_expiry":{"at":"tomorrow"}}"#,
            r#"{"extend_expiry":{"at":null}}"#,
            r#"{"extend_expiry":{"after":"1d"}}"#,
            r#"{"extend_expiry":{"from":"now"}}"#,
            r#"{"extend_expiry":{"after":"1d","from":"later"}}"#,
            r#"{"extend_expiry":{"after":"","from":"now"}}"#,
            r#"{"extend_expiry":{"after":"soon","from":"now"}}"#,
            r#"{"extend_expiry":{"after":5,"from":"now"}}"#,
            r#"{"extend_expiry":"1d"}"#,
        ] {
            assert!(parse_update(bad).is_err(), "{bad}");
        }
    }
}
