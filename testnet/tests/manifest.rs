//! Manifest parsing: the shipped manifests parse; broken ones give one
//! clear error naming the key or the line.

use concord_testnet::manifest::{Action, AssertKind, Manifest, Placement, Role};
use concord_testnet::netns::Shaping;

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
            "timeline at 5.0s (pause): unknown node \"nobody\"",
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
fn authority_manifests_check_their_keys() {
    let authorities = GOOD.replace(
        "seed = 1\n",
        "seed = 1\ngenesis = \"authorities\"\nauthorities = 3\n",
    );
    let e = error(&authorities);
    assert!(e.contains("a producer needs authority = K"), "{e}");
    let with_key = authorities.replace(
        "role = \"producer\"\n",
        "role = \"producer\"\nauthority = 2\n",
    );
    Manifest::parse(&with_key).expect("authority 2 of 3");
    let e = error(&authorities.replace(
        "role = \"producer\"\n",
        "role = \"producer\"\nauthority = 3\n",
    ));
    assert!(e.contains("authority = 3: the keys are 0 to 2"), "{e}");
    let e = error(&GOOD.replace("seed = 1\n", "seed = 1\ngenesis = \"authorities\"\n"));
    assert!(e.contains("needs network.authorities"), "{e}");
    Manifest::parse(&GOOD.replace("behaviour = \"fork\"", "behaviour = \"flood\""))
        .expect("flood adversary");
    let e = error(&GOOD.replace("behaviour = \"fork\"", "behaviour = \"shout\""));
    assert!(e.contains("unknown behaviour \"shout\""), "{e}");
}

const FAULTS: &str = r#"
[[timeline]]
at = "6s"
action = "partition"
groups = [["a", "p"], ["evil", "late"]]

[[timeline]]
at = "9s"
action = "heal"

[[timeline]]
at = "7s"
action = "netem"
node = "late"
rate = "1mbit"

[[assert]]
kind = "minority_reorgs"
within = "10s"
"#;

#[test]
fn loopback_shapes_but_refuses_loss_cuts_run_anywhere_and_groups_are_well_formed() {
    let text = format!("{GOOD}{FAULTS}");
    // A rate, a delay and jitter are the loopback shaper's.
    Manifest::parse(&text).expect("rate on loopback");
    let delayed = text.replace("rate = \"1mbit\"", "delay = \"150ms\"\njitter = \"20ms\"");
    let m = Manifest::parse(&delayed).expect("delay on loopback");
    let shape = m
        .timeline
        .iter()
        .find(|e| e.action == Action::Netem)
        .expect("netem")
        .loopback_shape();
    assert_eq!(shape.delay, std::time::Duration::from_millis(150));
    assert_eq!(shape.jitter, std::time::Duration::from_millis(20));
    assert_eq!(shape.rate, None);
    // ping_rtt: nodes, a time inside a netem period and a bound.
    let rtt = |fields: &str| format!("{delayed}\n[[assert]]\nkind = \"ping_rtt\"\n{fields}\n");
    Manifest::parse(&rtt("nodes = [\"late\"]\nat = \"8s\"\nat_least = 250")).expect("ping_rtt");
    for (fields, want) in [
        ("at = \"8s\"\nat_least = 250", "needs nodes and at"),
        ("nodes = [\"late\"]\nat_least = 250", "needs nodes and at"),
        (
            "nodes = [\"late\"]\nat = \"8s\"",
            "needs at_least and/or at_most",
        ),
        (
            "nodes = [\"late\"]\nat = \"6s\"\nat_least = 250",
            "before the first netem",
        ),
        (
            "nodes = [\"late\"]\nat = \"8s\"\nat_least = 250\nat_most = 100",
            "at_most is below at_least",
        ),
    ] {
        let e = error(&rtt(fields));
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
    // Loss is not: a relay of TCP streams has no packet to drop.
    let lossy = text.replace("rate = \"1mbit\"", "loss = 1.0");
    let e = error(&lossy);
    assert!(e.contains("loss cannot be modelled on loopback"), "{e}");
    let lossy_ns = lossy.replace(
        "duration = \"30s\"",
        "duration = \"30s\"\nplacement = \"namespaces\"",
    );
    let m = Manifest::parse(&lossy_ns).expect("loss in namespaces");
    // Without netem, loss alone becomes the IP ID mask; delay is refused.
    let netem = |m: &Manifest| {
        m.timeline
            .iter()
            .find(|e| e.action == Action::Netem)
            .expect("netem")
            .clone()
    };
    let e = netem(&m);
    match e.shaping(false) {
        Ok(Some(Shaping::DropMask { mask, rate: None })) => assert_eq!(mask.bits(), 7),
        _ => panic!("loss 1% without netem should be a 1/128 drop mask"),
    }
    assert!(matches!(e.shaping(true), Ok(Some(Shaping::Netem(_)))));
    let note = e.loss_note().expect("note");
    assert!(note.contains("1/128 = 0.7812%"), "{note}");
    let with_rate = netem(
        &Manifest::parse(&lossy_ns.replace("loss = 1.0", "loss = 1.0\nrate = \"2mbit\""))
            .expect("loss and rate"),
    );
    assert!(matches!(
        with_rate.shaping(false),
        Ok(Some(Shaping::DropMask { rate: Some(r), .. })) if r == "2mbit"
    ));
    let delayed_ns = netem(
        &Manifest::parse(&lossy_ns.replace("loss = 1.0", "loss = 1.0\ndelay = \"50ms\""))
            .expect("delay in namespaces"),
    );
    let refused = delayed_ns.shaping(false).err().expect("delay refused");
    assert!(refused.contains("delay needs the netem qdisc"), "{refused}");
    let zero = netem(&Manifest::parse(&lossy_ns.replace("loss = 1.0", "loss = 0.0")).expect("0"));
    assert!(matches!(zero.shaping(false), Ok(None)));
    let all =
        netem(&Manifest::parse(&lossy_ns.replace("loss = 1.0", "loss = 100.0")).expect("100"));
    assert!(all.shaping(false).is_err());
    // Cuts alone run on loopback too (each node's deny list).
    let cuts = text.replace(
        "action = \"netem\"\nnode = \"late\"\nrate = \"1mbit\"",
        "action = \"disconnect\"\nnode = \"late\"",
    );
    Manifest::parse(&cuts).expect("cuts on loopback");
    let placed = text.replace(
        "duration = \"30s\"",
        "duration = \"30s\"\nplacement = \"namespaces\"",
    );
    let m = Manifest::parse(&placed).expect("faults in namespaces");
    assert!(m.timeline.iter().any(|e| e.action == Action::Partition));
    // The command-line override does the same.
    Manifest::parse_placed(&text, Some(Placement::Namespaces)).expect("override");
    let cases = [
        (
            placed.replace("[\"evil\", \"late\"]", "[\"evil\"]"),
            "node \"late\" is in no group",
        ),
        (
            placed.replace("[\"evil\", \"late\"]", "[\"evil\", \"a\", \"late\"]"),
            "\"a\" is in two groups",
        ),
        (
            placed.replace("rate = \"1mbit\"", "rate = \"fast\""),
            "rate \"fast\"",
        ),
        (
            placed.replace("rate = \"1mbit\"", "loss = 120.0"),
            "loss is a percentage",
        ),
        (
            placed.replace("action = \"heal\"", "action = \"heal\"\nnode = \"a\""),
            "takes no node",
        ),
        (
            placed.replace("action = \"heal\"", "action = \"reconnect\""),
            "needs node",
        ),
        (
            placed.replace(
                "at = \"9s\"\naction = \"heal\"",
                "at = \"9s\"\naction = \"pause\"\nnode = \"a\"",
            ),
            "needs a partition and a heal",
        ),
        (
            GOOD.replace(
                "role = \"follower\"\n",
                "role = \"follower\"\nmdns = true\n",
            ),
            "mdns needs run.placement",
        ),
    ];
    for (text, want) in cases {
        let e = error(&text);
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
}

#[test]
fn chaos_adds_the_same_faults_for_the_same_seed() {
    let chaos = |seed: u64| {
        format!("{GOOD}\n[chaos]\nseed = {seed}\nfaults = 4\nfrom = \"2s\"\nuntil = \"25s\"\nnodes = [\"late\", \"a\"]\n")
    };
    let list = |text: &str| -> Vec<(u128, String, Option<String>)> {
        Manifest::parse(text)
            .expect("chaos")
            .timeline
            .iter()
            .map(|e| {
                (
                    e.at.0.as_millis(),
                    e.action.name().to_string(),
                    e.node.clone(),
                )
            })
            .collect()
    };
    let (one, again, other) = (list(&chaos(5)), list(&chaos(5)), list(&chaos(6)));
    assert!(one.len() > 1, "{one:?}");
    assert_eq!(one, again);
    assert_ne!(one, other);
    let e = error(&chaos(5).replace("nodes = [\"late\", \"a\"]", "nodes = [\"zz\"]"));
    assert!(e.contains("chaos: unknown node \"zz\""), "{e}");
}
