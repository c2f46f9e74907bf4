//! Feeds arbitrary bytes to the filesystem backend's segment and record decoder (what
//! recovery reads after a crash); it may reject them but must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_server::backend::filesystem::decode_segment;

fuzz_target!(|data: &[u8]| {
    let _ = decode_segment(data);
});
