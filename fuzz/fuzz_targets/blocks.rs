#![no_main]
//! `/concord/blocks/1`: request and response decoders, then the validation
//! a received response goes through.
use concord::protocol::{BlocksRequest, BlocksResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    concord_fuzz::round_trip::<BlocksRequest>(data);
    if let Some(resp) = concord_fuzz::round_trip::<BlocksResponse>(data) {
        resp.blocks
            .iter()
            .for_each(concord_fuzz::check_block_limits);
        concord_fuzz::validate_all(&resp.blocks);
    }
});
