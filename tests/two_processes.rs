//! Two `concord run` processes on 127.0.0.1: a producer and a follower that
//! bootstraps to it. The same commands as the README demo, with port 0.

mod common;

use std::time::Duration;

use common::{address_in, peer_id_of, Proc, BIN};

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn producer_and_follower_connect_and_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let id_a = peer_id_of(&data_a);
    let id_b = peer_id_of(&data_b);
    let s = |x: &str| x.to_string();

    let mut a = Proc::spawn(
        "producer",
        dir.path(),
        BIN,
        &[
            s("run"),
            s("--data-dir"),
            data_a.display().to_string(),
            s("--listen"),
            s("/ip4/127.0.0.1/tcp/0"),
            s("--api"),
            s("127.0.0.1:0"),
            s("--produce"),
            s("--dev-authority"),
        ],
    );
    let line = a.wait_for_line(&["listening", "/ip4/127.0.0.1/tcp/"], DEADLINE);
    let addr_a = address_in(&line);
    assert!(addr_a.ends_with(&format!("/p2p/{id_a}")), "{addr_a}");

    let mut b = Proc::spawn(
        "follower",
        dir.path(),
        BIN,
        &[
            s("run"),
            s("--data-dir"),
            data_b.display().to_string(),
            s("--listen"),
            s("/ip4/127.0.0.1/tcp/0"),
            s("--api"),
            s("127.0.0.1:0"),
            s("--bootstrap"),
            addr_a.clone(),
        ],
    );

    // Connection, identify and Kademlia on both sides.
    b.wait_for_line(&["peer connected", &id_a], DEADLINE);
    a.wait_for_line(&["peer connected", &id_b], DEADLINE);
    b.wait_for_line(&["identify received", &id_a, "/concord/id/1.0.0"], DEADLINE);
    a.wait_for_line(&["identify received", &id_b, "/concord/id/1.0.0"], DEADLINE);
    b.wait_for_line(&["Kademlia", &id_a], DEADLINE);
    a.wait_for_line(&["Kademlia", &id_b], DEADLINE);

    // The producer produces; the follower hears the announcements and imports.
    a.wait_for_line(&["Produced block #2 "], DEADLINE);
    b.wait_for_line(&["Imported block #", "(following)"], DEADLINE);
    // The same block, not just a log line: the follower's #2 is the producer's.
    let (api_a, api_b) = (
        common::api_addr(&mut a, DEADLINE),
        common::api_addr(&mut b, DEADLINE),
    );
    let theirs = common::wait_until(DEADLINE, "the follower to hold block #2", || {
        let (code, body) = common::http(&api_b, "GET", "/blocks/2");
        (code == 200).then(|| serde_json::from_str::<serde_json::Value>(&body).unwrap())
    });
    assert_eq!(
        theirs["hash"],
        common::get_json(&api_a, "/blocks/2")["hash"]
    );

    // Graceful stop on SIGTERM flushes and exits 0.
    for p in [&mut a, &mut b] {
        let pid = p.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let end = std::time::Instant::now() + DEADLINE;
        let status = loop {
            if let Some(st) = p.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < end,
                "{} did not stop on SIGTERM",
                p.name
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{} exited with {status}", p.name);
        p.wait_for_line(&["node stopped, store flushed"], Duration::from_secs(1));
    }
}

#[test]
fn bad_bootstrap_address_is_one_line_and_exit_code_2() {
    for bad in ["not-a-multiaddr", "/ip4/127.0.0.1/tcp/1"] {
        let out = std::process::Command::new(BIN)
            .args(["run", "--bootstrap", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}
