#![no_main]
//! Config files (TOML): `FileConfig::parse`, what `FileConfig::load` parses,
//! then applying and checking the tunables.
use concord::config::{validate_net, validate_sync, FileConfig};
use concord::net::NetConfig;
use concord::sync::SyncConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = FileConfig::parse(text) else {
        return;
    };
    let (mut net, mut sync) = (NetConfig::default(), SyncConfig::default());
    file.net.apply(&mut net);
    file.sync.apply(&mut sync);
    let _ = validate_net(&net);
    let _ = validate_sync(&sync);
    // Compared as text: a NaN hedge_factor is not equal to itself.
    if let Ok(written) = file.to_toml() {
        let again = FileConfig::parse(&written).expect("a written config parses");
        assert_eq!(again.to_toml().ok(), Some(written));
    }
});
