//! Feeds arbitrary bytes to the JWT and pre-signed query parsers and the whole
//! credential path; none of them may panic, and a verifier without keys must refuse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_server::auth::{credentials, jwt, presigned, KeyDirectory, RequestHead};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let keys = KeyDirectory::default();
    let _ = jwt::parse(text);
    let _ = jwt::claims(data, 1_700_000_000);
    assert!(jwt::verify(&keys, text, 1_700_000_000).is_err());
    let _ = presigned::parse_params(text);
    let _ = presigned::parse_timestamp(text);
    let (path, query) = text.split_once('\n').unwrap_or((text, text));
    let _ = presigned::canonical_string("GET", path, query);
    let headers = http::HeaderMap::new();
    for method in [http::Method::GET, http::Method::PUT] {
        let head = RequestHead {
            method: &method,
            path,
            query: Some(query),
            headers: &headers,
        };
        assert!(credentials::verify(&keys, None, head, 1_700_000_000).is_err());
    }
});
