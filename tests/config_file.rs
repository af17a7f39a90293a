//! `concord run --config`: the file's settings apply, flags win over them,
//! `--print-config` shows the result; a node runs from a config file.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{get_json, Proc, BIN};

fn print_config(args: &[&str]) -> toml::Table {
    let out = Command::new(BIN)
        .arg("run")
        .args(args)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "--print-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.parse()
        .unwrap_or_else(|e| panic!("--print-config is not TOML ({e}):\n{text}"))
}

#[test]
fn config_file_applies_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.toml");
    std::fs::write(
        &path,
        r#"
data_dir = "/tmp/from-file"
api = "off"
listen = ["/ip4/127.0.0.1/tcp/7171"]
log_format = "json"
[net]
target_peers = 3
[sync]
batch_blocks = 100
vote_timeout_ms = 1500
"#,
    )
    .unwrap();
    let file = path.display().to_string();

    // The file alone.
    let c = print_config(&["--config", &file]);
    assert_eq!(c["data_dir"].as_str(), Some("/tmp/from-file"));
    assert_eq!(c["api"].as_str(), Some("off"));
    assert_eq!(c["log_format"].as_str(), Some("json"));
    assert_eq!(c["genesis"].as_str(), Some("dev"), "default kept");
    assert_eq!(c["net"]["target_peers"].as_integer(), Some(3));
    assert_eq!(c["net"]["max_established"].as_integer(), Some(80));
    assert_eq!(c["sync"]["batch_blocks"].as_integer(), Some(100));
    assert_eq!(c["sync"]["vote_timeout_ms"].as_integer(), Some(1500));
    assert_eq!(c["sync"]["retry_backoff_ms"].as_integer(), Some(500));

    // Flags win.
    let c = print_config(&[
        "--config",
        &file,
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--log-format",
        "text",
        "--data-dir",
        "/tmp/from-flag",
    ]);
    assert_eq!(c["api"].as_str(), Some("127.0.0.1:0"));
    assert_eq!(c["data_dir"].as_str(), Some("/tmp/from-flag"));
    assert_eq!(c["log_format"].as_str(), Some("text"));
    let listen = c["listen"].as_array().unwrap();
    assert_eq!(listen.len(), 1);
    assert_eq!(listen[0].as_str(), Some("/ip4/127.0.0.1/tcp/0"));
    assert_eq!(c["sync"]["batch_blocks"].as_integer(), Some(100));

    // No file: the defaults, which the example file documents.
    let c = print_config(&[]);
    let example: toml::Table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("concord.example.toml"),
    )
    .unwrap()
    .parse()
    .unwrap();
    assert_eq!(c, example, "concord.example.toml must list the defaults");

    // Checkpoints: the flag wins over the file; a malformed one is one line, exit 2.
    let hash = "ab".repeat(32);
    std::fs::write(&path, format!("checkpoint = [\"10:{hash}\"]\n")).unwrap();
    let c = print_config(&["--config", &file]);
    assert_eq!(
        c["checkpoint"][0].as_str(),
        Some(format!("10:{hash}").as_str())
    );
    let c = print_config(&["--config", &file, "--checkpoint", &format!("20:{hash}")]);
    let cps = c["checkpoint"].as_array().unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].as_str(), Some(format!("20:{hash}").as_str()));
    // Repeatable: every one given is kept.
    let c = print_config(&[
        "--checkpoint",
        &format!("20:{hash}"),
        "--checkpoint",
        &format!("30:{hash}"),
    ]);
    let cps: Vec<&str> = c["checkpoint"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(cps, [format!("20:{hash}"), format!("30:{hash}")]);
    for bad in ["12", "x:ab", "0:ab", &format!("5:{hash}x")] {
        let out = Command::new(BIN)
            .args(["run", "--checkpoint", bad, "--print-config"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: invalid --checkpoint"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    // Values that cannot work: one line naming the key, exit 2.
    for (text, key) in [
        ("[sync]\nbatch_blocks = 0\n", "sync.batch_blocks"),
        ("[sync]\nhedge_factor = -1.0\n", "sync.hedge_factor"),
        (
            "[sync]\nstatus_interval_ms = 0\n",
            "sync.status_interval_ms",
        ),
        ("[net]\nmax_established = 0\n", "net.max_established"),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["run", "--config", &file, "--print-config"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("error: invalid {key} = ")),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    // Mistakes are one-line errors.
    std::fs::write(&path, "[sync]\nbatch_blockz = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config", &file, "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: invalid config file"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn node_runs_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("concord.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\napi = \"127.0.0.1:0\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nlog_format = \"json\"\n[sync]\nstatus_interval_ms = 1000\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut node = Proc::spawn(
        "node",
        dir.path(),
        BIN,
        &["run".into(), "--config".into(), path.display().to_string()],
    );
    // JSON logs: the API line is a JSON object with the address field.
    let line = node.wait_for_line(&["API listening"], Duration::from_secs(30));
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    let api = v["fields"]["address"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    assert_eq!(get_json(&api, "/status")["height"], 0);
    assert!(
        data.join("node.key").exists(),
        "data_dir from the file is used"
    );
}
