//! Feeds arbitrary text to the parsers of client and operator input: scope and key path
//! segments, metadata headers, expiration durations and timestamps, `Range` and the
//! config schema. None may panic; what parses must format and parse back the same
//! (durations to the whole second).
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use strata_server::config::Config;
use strata_server::http::range;
use strata_server::object::expiration::{self, ExpirationPolicy};
use strata_server::object::id::{self, Scopes};
use strata_server::object::metadata::Metadata;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Scope and path segments.
    let _ = Scopes::parse(text);
    let _ = id::validate_usecase(text);
    let _ = id::percent_decode_param(text);
    // Durations and timestamps: formatting what parsed parses back equal, to the whole
    // second (the wire form truncates fractions such as `8.110170m`, api-newest §4.2).
    if let Ok(duration) = expiration::parse_duration(text) {
        let formatted = expiration::format_duration(duration);
        assert_eq!(
            expiration::parse_duration(&formatted).ok(),
            Some(Duration::from_secs(duration.as_secs())),
            "{formatted}"
        );
    }
    let _ = ExpirationPolicy::parse(text);
    if let Ok(at) = expiration::parse_timestamp(text) {
        let _ = expiration::format_timestamp(at);
    }
    // Headers: `name: value` lines into a header map, then metadata and Range.
    let mut headers = http::HeaderMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let _ = Metadata::from_headers(&headers, now);
    if let Ok(value) = http::HeaderValue::from_str(text) {
        let _ = range::parse_range(&value);
    }
    // The config schema (what `config::load` checks after merging).
    let _ = Config::from_yaml_str(text);
});
