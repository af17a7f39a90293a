#![no_main]
//! Genesis files (TOML): `Genesis::from_toml`, what `Genesis::load` parses.
use concord::chain::Genesis;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(g) = Genesis::from_toml(text) {
        let written = g.to_toml();
        let again = Genesis::from_toml(&written).expect("a written genesis parses");
        assert_eq!(again.hash(), g.hash(), "genesis changed through its file");
        assert_eq!(again.to_toml(), written);
    }
});
