#![no_main]
//! `/concord/announce/1`: request and response decoders.
use concord::protocol::{AnnounceRequest, AnnounceResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    concord_fuzz::round_trip::<AnnounceRequest>(data);
    concord_fuzz::round_trip::<AnnounceResponse>(data);
});
