//! Structure-aware companion of `log_decoder`: builds valid sealed segments (commits of
//! records whose payloads may carry forged records), inflicts a crash cut, garbage or a
//! flipped byte, and checks that recovery's scan keeps every intact record, cuts only a
//! torn tail and reports damage that a later commit follows (see
//! `strata_server::backend::filesystem::check_scan`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_server::backend::filesystem::{check_scan, ScanCase};

fuzz_target!(|case: ScanCase| {
    check_scan(&case);
});
