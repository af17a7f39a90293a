#![no_main]
//! `/concord/genesis/1`: request and response decoders.
use concord::protocol::{GenesisRequest, GenesisResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    concord_fuzz::round_trip::<GenesisRequest>(data);
    concord_fuzz::round_trip::<GenesisResponse>(data);
});
