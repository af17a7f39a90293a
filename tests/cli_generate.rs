//! Runs the built `concord` binary: `generate` is deterministic per seed, and
//! a bad `--genesis` fails with one line and a non-zero exit.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_concord");

fn generate(dir: &std::path::Path, seed: &str) -> Output {
    Command::new(BIN)
        .args(["generate", "--data-dir"])
        .arg(dir)
        .args(["--blocks", "300", "--block-size", "64", "--seed", seed])
        .output()
        .expect("run concord")
}

fn tip_hash(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("tip height "))
        .unwrap_or_else(|| panic!("no tip line in {stdout:?}"));
    assert!(line.starts_with("tip height 300 hash "), "{line}");
    line.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn same_args_same_tip_other_seed_other_tip() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ha = tip_hash(&generate(a.path(), "0"));
    let hb = tip_hash(&generate(b.path(), "0"));
    let hc = tip_hash(&generate(c.path(), "7"));
    assert_eq!(ha.len(), 64);
    assert_eq!(ha, hb);
    assert_ne!(ha, hc);
}

#[test]
fn missing_genesis_is_one_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["generate", "--data-dir"])
        .arg(dir.path())
        .args(["--blocks", "1", "--genesis", "/nonexistent"])
        .output()
        .expect("run concord");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(stderr.contains("/nonexistent"), "{stderr:?}");
}

#[test]
fn unparsable_genesis_is_one_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("genesis.toml");
    // A TOML syntax error, then a file that parses as TOML but is no genesis.
    for text in ["name = \"unterminated\n", "colour = 3\n"] {
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(BIN)
            .args(["generate", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--blocks", "1", "--genesis"])
            .arg(&bad)
            .output()
            .expect("run concord");
        assert!(!out.status.success(), "{text:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{text:?}: {stderr:?}");
        assert!(stderr.starts_with("error: "), "{stderr:?}");
        assert!(stderr.contains("genesis.toml"), "{stderr:?}");
        assert!(
            !dir.path().join("data").exists()
                || std::fs::read_dir(dir.path().join("data"))
                    .unwrap()
                    .next()
                    .is_none(),
            "a data dir was written for a genesis that does not parse"
        );
    }
}

#[test]
fn genesis_file_written_by_the_cli_is_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    let out = Command::new(BIN)
        .args(["genesis", "--name", "t", "--timestamp-ms", "0", "--out"])
        .arg(&path)
        .output()
        .expect("run concord");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["generate", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--blocks", "5", "--genesis"])
        .arg(&path)
        .output()
        .expect("run concord");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The data dir now belongs to that network: the dev genesis is refused in one line.
    let out = Command::new(BIN)
        .args(["generate", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--blocks", "1"])
        .output()
        .expect("run concord");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("another network"), "{stderr:?}");
}
