//! Assertion evaluation on canned histories (no process, no network).

use concord_testnet::assertions::{self, ChainView, When};
use concord_testnet::history::{Life, NodeHistory, Sample};
use concord_testnet::manifest::Role;

fn node(name: &str, role: Role, heights: &[(f64, u64)]) -> NodeHistory {
    let mut h = NodeHistory::new(name, role, &format!("id-{name}"));
    h.samples = heights
        .iter()
        .map(|&(t, height)| Sample {
            t,
            height,
            peers: 3,
            mode: "normal".into(),
            syncing: false,
            target: Some(height),
            stalled: None,
        })
        .collect();
    h
}

#[test]
fn height_within_passes_on_time_and_names_the_late_node() {
    let a = node("a", Role::Follower, &[(1.0, 5), (2.0, 10)]);
    let b = node("b", Role::Follower, &[(1.0, 5), (9.0, 10)]);
    let o = assertions::height(&[&a], 10, When::Within(3.0));
    assert!(o.pass, "{}", o.why);
    let o = assertions::height(&[&a, &b], 10, When::Within(3.0));
    assert!(!o.pass);
    assert!(o.why.contains("b reached it late, at 9.0s"), "{}", o.why);
    let o = assertions::height(&[&a], 11, When::Within(3.0));
    assert!(o.why.contains("never reached it (best 10)"), "{}", o.why);
    assert_eq!(o.details["a"]["best_height"], 10);
}

#[test]
fn height_at_uses_the_last_sample_before_the_time() {
    let a = node("a", Role::Seeder, &[(1.0, 5), (2.0, 10)]);
    assert!(!assertions::height(&[&a], 10, When::At(1.5)).pass);
    assert!(assertions::height(&[&a], 10, When::At(2.5)).pass);
    assert!(!assertions::height(&[&a], 1, When::At(0.5)).pass);
}

fn view(name: &str, hashes: &[&str]) -> ChainView {
    ChainView {
        name: name.into(),
        height: hashes.len() as u64,
        tip: hashes.last().map_or(String::new(), |h| h.to_string()),
        hashes: hashes.iter().map(|h| h.to_string()).collect(),
    }
}

#[test]
fn same_chain_compares_every_height_not_only_the_tip() {
    let ok = assertions::same_chain(&[view("a", &["x", "y"]), view("b", &["x", "y"])], 2, &[]);
    assert!(ok.pass, "{}", ok.why);
    assert_eq!(ok.details["heights_compared"], 2);
    // Same tip, another block below it: caught, with the height.
    let bad = assertions::same_chain(&[view("a", &["x", "y"]), view("b", &["q", "y"])], 1, &[]);
    assert!(!bad.pass);
    assert_eq!(bad.details["first_difference"], 1);
    assert!(bad.why.contains("differ at #1"), "{}", bad.why);
    // Different tips.
    let bad = assertions::same_chain(&[view("a", &["x"]), view("b", &["x", "y"])], 1, &[]);
    assert!(bad.why.contains("a tip #1"), "{}", bad.why);
    // Too low.
    let low = assertions::same_chain(&[view("a", &["x"])], 5, &[]);
    assert!(low.why.contains("below min_height 5"), "{}", low.why);
    assert!(!assertions::same_chain(&[], 0, &[]).pass);
}

#[test]
fn adversaries_must_be_met_and_judged() {
    let mut h1 = node("h1", Role::Seeder, &[]);
    let mut h2 = node("h2", Role::Follower, &[]);
    let evil = node("evil", Role::Adversary, &[]);
    h1.met.insert("id-evil".into());
    h1.judged.insert("id-evil".into(), 1);
    let o = assertions::adversaries_judged(&[&h1, &h2], &[&evil]);
    assert!(o.pass, "{}", o.why);
    assert_eq!(o.details["evil"]["met_by"], serde_json::json!(["h1"]));
    // h2 met it and never judged it.
    h2.met.insert("id-evil".into());
    let o = assertions::adversaries_judged(&[&h1, &h2], &[&evil]);
    assert!(
        o.why.contains("h2 met evil but never judged it"),
        "{}",
        o.why
    );
    // A ban in the log counts as judged.
    h2.log
        .banned
        .insert("id-evil".into(), vec!["invalid_block".into()]);
    assert!(assertions::adversaries_judged(&[&h1, &h2], &[&evil]).pass);
    // Nobody met it: vacuous, so a failure.
    let lonely = node("lonely", Role::Adversary, &[]);
    let o = assertions::adversaries_judged(&[&h1, &h2], &[&lonely]);
    assert!(o.why.contains("no honest node met lonely"), "{}", o.why);
}

#[test]
fn garbage_is_met_on_connecting_and_a_flooder_on_being_refused() {
    let mut h1 = node("h1", Role::Seeder, &[]);
    let h2 = node("h2", Role::Follower, &[]);
    let mut garbage = node("garbage", Role::Adversary, &[]);
    garbage.behaviour = Some("garbage".into());
    let mut flood = node("flood", Role::Adversary, &[]);
    flood.behaviour = Some("flood".into());
    // Never verified (its genesis answer is garbage), but connected: met.
    h1.log.connected.insert("id-garbage".into());
    let o = assertions::adversaries_judged(&[&h1, &h2], &[&garbage]);
    assert!(
        o.why.contains("h1 met garbage but never judged it"),
        "{}",
        o.why
    );
    h1.log
        .banned
        .insert("id-garbage".into(), vec!["wrong_genesis".into()]);
    assert!(assertions::adversaries_judged(&[&h1, &h2], &[&garbage]).pass);
    // A flooder verified but never refused is not met yet.
    h1.met.insert("id-flood".into());
    let o = assertions::adversaries_judged(&[&h1, &h2], &[&flood]);
    assert!(o.why.contains("no honest node met flood"), "{}", o.why);
    h1.log.flooded.insert("id-flood".into());
    let o = assertions::adversaries_judged(&[&h1, &h2], &[&flood]);
    assert!(
        o.why.contains("h1 met flood but never judged it"),
        "{}",
        o.why
    );
    h1.log
        .banned
        .insert("id-flood".into(), vec!["bad_request".into()]);
    assert!(assertions::adversaries_judged(&[&h1, &h2], &[&flood]).pass);
}

#[test]
fn log_counts_lines_per_node_within_the_bounds() {
    let mut a = node("a", Role::Follower, &[]);
    let mut b = node("b", Role::Seeder, &[]);
    a.log.matches.insert("ahead".into(), 3);
    b.log.matches.insert("ahead".into(), 0);
    assert!(assertions::log(&[&a], "ahead", 1, None).pass);
    let o = assertions::log(&[&a, &b], "ahead", 1, None);
    assert!(o.why.contains("b has 0"), "{}", o.why);
    assert!(assertions::log(&[&b], "ahead", 0, Some(0)).pass);
    assert!(!assertions::log(&[&a], "ahead", 0, Some(2)).pass);
    assert_eq!(assertions::log(&[&a], "ahead", 1, None).details["a"], 3);
}

#[test]
fn an_honest_ban_fails_and_an_adversary_ban_does_not() {
    let mut h1 = node("h1", Role::Seeder, &[]);
    let h2 = node("h2", Role::Follower, &[]);
    h1.log
        .banned
        .insert("id-evil".into(), vec!["invalid_block".into()]);
    assert!(assertions::no_honest_banned(&[&h1, &h2], &[&h1, &h2]).pass);
    h1.log.banned.insert("id-h2".into(), vec!["timeout".into()]);
    let o = assertions::no_honest_banned(&[&h1, &h2], &[&h1, &h2]);
    assert!(o.why.contains("h1 banned h2 (timeout)"), "{}", o.why);
}

#[test]
fn kills_are_no_crash_but_exits_and_panics_are() {
    let mut a = node("a", Role::Follower, &[]);
    a.lives.push(Life {
        started: 0.0,
        ended: Some(3.0),
        exit_code: None,
        signal: Some(9),
        ended_by: Some("kill".into()),
    });
    a.lives.push(Life {
        started: 5.0,
        ended: Some(9.0),
        exit_code: Some(0),
        signal: None,
        ended_by: Some("cleanup".into()),
    });
    assert!(assertions::no_crash(&[&a]).pass);
    let mut b = node("b", Role::Seeder, &[]);
    b.lives.push(Life {
        started: 0.0,
        ended: Some(4.0),
        exit_code: Some(101),
        signal: None,
        ended_by: None,
    });
    let o = assertions::no_crash(&[&a, &b]);
    assert!(
        o.why.contains("b ended at 4.0s (exit Some(101)"),
        "{}",
        o.why
    );
    a.log
        .panics
        .push("thread 'main' panicked at src/x.rs".into());
    assert!(assertions::no_crash(&[&a]).why.contains("a panicked"));
}
