//! Runs the built `concord` binary: authority key files (create, show,
//! refuse to overwrite, mode 0600, garbled), a chain generated with two of
//! three authorities' keys, and the one-line errors for a key or genesis
//! that does not fit.

use std::path::Path;
use std::process::{Command, Output};

use concord::chain::validate::validate_segment;
use concord::chain::{AuthorityKey, BlockRef, Genesis};
use concord::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_concord");

fn concord(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run concord")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Fails with exactly one `error:` line on stderr that contains `needle`;
/// returns the exit code.
fn fails_in_one_line(out: &Output, needle: &str) -> i32 {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    out.status.code().expect("exit code")
}

fn new_key(path: &Path) -> String {
    let out = concord(&["authority", "new", "--out", path.to_str().unwrap()]);
    ok(&out).trim().to_string()
}

#[test]
fn authority_new_prints_the_public_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.key");
    let public = new_key(&path);
    assert_eq!(public.len(), 64, "{public:?}");
    assert!(public.chars().all(|c| c.is_ascii_hexdigit()), "{public:?}");
    assert_eq!(AuthorityKey::load(&path).unwrap().public().to_hex(), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let show = ok(&concord(&["authority", "show", path.to_str().unwrap()]));
    assert_eq!(show.trim(), public);

    let before = std::fs::read(&path).unwrap();
    let code = fails_in_one_line(
        &concord(&["authority", "new", "--out", path.to_str().unwrap()]),
        "already exists",
    );
    assert_eq!(code, 1);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the key was kept");

    // Garbled and missing files: one line naming the file.
    let garbled = dir.path().join("garbled.key");
    std::fs::write(&garbled, "public_key = \"00\"\n").unwrap();
    fails_in_one_line(
        &concord(&["authority", "show", garbled.to_str().unwrap()]),
        "garbled.key",
    );
    let missing = dir.path().join("missing.key");
    fails_in_one_line(
        &concord(&["authority", "show", missing.to_str().unwrap()]),
        "missing.key",
    );
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.key");
    let public = new_key(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = concord(&["authority", "show", path.to_str().unwrap()]);
    assert_eq!(ok(&out).trim(), public);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("warning: "), "{stderr:?}");
    assert!(stderr.contains("a.key"), "{stderr:?}");
}

#[test]
fn generate_with_two_of_three_keys_fills_only_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.key")))
        .collect();
    let publics: Vec<String> = keys.iter().map(|k| new_key(k)).collect();
    let genesis_path = dir.path().join("net.toml");
    let mut args = vec![
        "genesis",
        "--name",
        "three",
        "--timestamp-ms",
        "0",
        "--out",
        genesis_path.to_str().unwrap(),
    ];
    for p in &publics {
        args.extend(["--authority", p.as_str()]);
    }
    ok(&concord(&args));
    let data = dir.path().join("data");
    let out = concord(&[
        "generate",
        "--data-dir",
        data.to_str().unwrap(),
        "--blocks",
        "30",
        "--block-size",
        "16",
        "--genesis",
        genesis_path.to_str().unwrap(),
        "--authority-key",
        keys[0].to_str().unwrap(),
        "--authority-key",
        keys[2].to_str().unwrap(),
    ]);
    assert!(ok(&out).contains("tip height 30 "));

    let genesis = Genesis::load(&genesis_path).unwrap();
    let store = Store::open(&data, &genesis).unwrap();
    let blocks = store.blocks_range(1, 30, usize::MAX).unwrap();
    assert_eq!(blocks.len(), 30);
    validate_segment(&genesis, &BlockRef::of(genesis.block()), &blocks).unwrap();
    let missing = &genesis.authorities[1];
    for b in &blocks {
        let slot = genesis.slot_of(b.header.timestamp_ms);
        assert_eq!(&b.header.producer, genesis.producer_for_slot(slot));
        assert_ne!(
            &b.header.producer, missing,
            "a block in the missing authority's slot"
        );
    }
    let by_a = blocks
        .iter()
        .filter(|b| b.header.producer == genesis.authorities[0])
        .count();
    assert_eq!(by_a, 15, "the two keys alternate");
    drop(store);

    // A key that is not an authority of this genesis: one line, nothing written.
    let stranger = dir.path().join("stranger.key");
    new_key(&stranger);
    let code = fails_in_one_line(
        &concord(&[
            "generate",
            "--data-dir",
            data.to_str().unwrap(),
            "--blocks",
            "5",
            "--genesis",
            genesis_path.to_str().unwrap(),
            "--authority-key",
            stranger.to_str().unwrap(),
        ]),
        "stranger.key",
    );
    assert_eq!(code, 1);
    let store = Store::open(&data, &genesis).unwrap();
    assert_eq!(store.tip().height, 30);
}

#[test]
fn run_refuses_a_key_the_genesis_does_not_list_and_a_genesis_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a.key");
    new_key(&key);
    let data = dir.path().join("data");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "off",
        ];
        args.extend(extra);
        concord(&args)
    };
    // The dev genesis lists only the dev key.
    let code = fails_in_one_line(
        &run(&["--produce", "--authority-key", key.to_str().unwrap()]),
        "is not an authority of genesis dev",
    );
    assert_eq!(code, 1);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \n").unwrap();
    fails_in_one_line(
        &run(&[
            "--produce",
            "--authority-key",
            key.to_str().unwrap(),
            "--genesis",
            bad.to_str().unwrap(),
        ]),
        "bad.toml",
    );
    // A missing key file names itself.
    fails_in_one_line(
        &run(&["--produce", "--authority-key", "/nonexistent/a.key"]),
        "/nonexistent/a.key",
    );
    // Command-line mistakes are exit code 2, as elsewhere.
    let out = run(&["--produce"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "--produce",
        "--dev-authority",
        "--authority-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // The key file in a config file conflicts with the flag just the same.
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("authority_key = {:?}\n", key.to_str().unwrap()),
    )
    .unwrap();
    let out = run(&["--config", config.to_str().unwrap(), "--dev-authority"]);
    assert_eq!(out.status.code(), Some(2));
    let printed = ok(&run(&[
        "--config",
        config.to_str().unwrap(),
        "--print-config",
    ]));
    assert!(printed.contains("authority_key = "), "{printed}");
    assert!(printed.contains("max_future_drift_ms = 2000"), "{printed}");
}
