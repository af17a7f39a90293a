#![no_main]
//! `/concord/height/1`: request and response decoders.
use concord::protocol::{HeightRequest, HeightResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    concord_fuzz::round_trip::<HeightRequest>(data);
    concord_fuzz::round_trip::<HeightResponse>(data);
});
