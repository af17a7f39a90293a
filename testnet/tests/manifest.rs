//! Manifest parsing: the shipped manifests parse; broken ones give one
//! clear error naming the key or the line.

use concord_testnet::manifest::{Action, AssertKind, Manifest, ManifestError, Role};

const GOOD: &str = r#"
[network]
seed = 1

[run]
duration = "30s"

[[node]]
name = "a"
role = "seeder"
blocks = 10

[[node]]
name = "p"
role = "producer"
bootstrap = ["a"]

[[node]]
name = "evil"
role = "adversary"
behaviour = "fork"
blocks = 10
seed = 2
bootstrap = ["a"]

[[node]]
name = "late"
role = "follower"
start_after = "1500ms"
bootstrap = ["a", "p"]
config = { sync = { batch_blocks = 8 } }

[[timeline]]
at = "5s"
action = "pause"
node = "late"

[[assert]]
kind = "height"
at_least = 10
within = "20s"
"#;

fn error(text: &str) -> String {
    match Manifest::parse(text) {
        Ok(_) => panic!("parsed a broken manifest"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_manifest_parses_with_defaults() {
    let m = Manifest::parse(GOOD).expect("good manifest");
    assert_eq!(m.network.genesis, "dev");
    assert_eq!(m.network.block_size, 256);
    assert_eq!(m.nodes.len(), 4);
    assert_eq!(m.nodes[2].role, Role::Adversary);
    assert_eq!(m.nodes[3].start_after.0.as_millis(), 1500);
    assert_eq!(m.timeline[0].action, Action::Pause);
    assert_eq!(m.honest(), vec!["a", "p", "late"]);
    // no_crash and no_honest_banned are added when not listed.
    let kinds: Vec<_> = m.assertions().iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![
            AssertKind::Height,
            AssertKind::NoCrash,
            AssertKind::NoHonestBanned
        ]
    );
}

#[test]
fn shipped_manifests_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("manifests dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        if let Err(e) = Manifest::parse(&text) {
            panic!("{}: {e}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = GOOD.replace("start_after = \"1500ms\"", "start_afterr = \"1500ms\"");
    let e = error(&text);
    assert!(
        e.starts_with("line 29: unknown field `start_afterr`"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn a_bad_duration_and_a_bad_role_are_clear() {
    let e = error(&GOOD.replace("\"1500ms\"", "\"soon\""));
    assert!(e.contains("line 29") && e.contains("needs a unit"), "{e}");
    let e = error(&GOOD.replace("role = \"producer\"", "role = \"miner\""));
    assert!(
        e.contains("line 15") && e.contains("unknown variant `miner`"),
        "{e}"
    );
}

#[test]
fn cross_references_are_checked() {
    let cases = [
        (
            GOOD.replace("bootstrap = [\"a\", \"p\"]", "bootstrap = [\"zz\"]"),
            "node \"late\": bootstrap names unknown node \"zz\"",
        ),
        (
            GOOD.replace("node = \"late\"", "node = \"nobody\""),
            "timeline at 5.0s: unknown node \"nobody\"",
        ),
        (
            GOOD.replace("seed = 2\n", "seed = 1\n"),
            "a fork adversary needs a seed other than network.seed = 1",
        ),
        (
            GOOD.replace("behaviour = \"fork\"", "behaviour = \"lie\""),
            "unknown behaviour \"lie\"",
        ),
        (
            GOOD.replace("at = \"5s\"", "at = \"50s\""),
            "after run.duration",
        ),
        (
            GOOD.replace("at_least = 10\n", ""),
            "assert height: needs at_least",
        ),
        (
            GOOD.replace("name = \"p\"", "name = \"a\""),
            "node \"a\" is defined twice",
        ),
    ];
    for (text, want) in cases {
        let e = error(&text);
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

#[test]
fn phase_two_features_say_so() {
    let e = Manifest::parse(&GOOD.replace(
        "seed = 1\n",
        "seed = 1\ngenesis = \"authorities\"\nauthorities = 3\n",
    ))
    .expect_err("not yet");
    assert!(matches!(e, ManifestError::NotYet(_)), "{e}");
    let e = error(&GOOD.replace("behaviour = \"fork\"", "behaviour = \"flood\""));
    assert!(e.contains("not implemented in phase 1"), "{e}");
}
