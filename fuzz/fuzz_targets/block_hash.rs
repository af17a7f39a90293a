#![no_main]
//! `/concord/block-hash/1`: request and response decoders.
use concord::protocol::{BlockHashRequest, BlockHashResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    concord_fuzz::round_trip::<BlockHashRequest>(data);
    concord_fuzz::round_trip::<BlockHashResponse>(data);
});
