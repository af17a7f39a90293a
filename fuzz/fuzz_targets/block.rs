#![no_main]
//! One block as stored in `blocks.dat` and carried on the wire
//! (`Block::decode`, what the store reads back), then block validation.
use concord::chain::Block;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::decode(data) {
        let canonical = block.encode();
        let again = Block::decode(&canonical).expect("a canonical block decodes");
        assert_eq!(again, block);
        assert_eq!(again.encode(), canonical);
        concord_fuzz::check_block_limits(&block);
        concord_fuzz::validate_all(std::slice::from_ref(&block));
    }
});
