//! The hidden `--testnet-advertise` flag (feature `testnet`, on in tests
//! through the self dev-dependency): a node started with it tells peers
//! only that address, so the testnet runner's relay in front of its
//! listener is the only way in they learn of. Two `concord run` processes
//! on 127.0.0.1; the relay's port is held by the test and never used.

mod common;

use std::time::Duration;

use common::{address_in, peer_id_of, run_args, Proc, BIN};

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn an_advertising_node_is_known_to_its_peer_by_the_advertised_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let id_a = peer_id_of(&data_a);
    let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();

    let mut b = Proc::spawn("b", dir.path(), BIN, &run_args(&data_b, &[]));
    let addr_b = address_in(&b.wait_for_line(&["listening", "/ip4/127.0.0.1/tcp/"], DEADLINE));

    // A dials B, so B knows A's addresses only from what identify says.
    let advertise = format!("--testnet-advertise=/ip4/127.0.0.1/tcp/{relay_port}");
    let mut a = Proc::spawn(
        "a",
        dir.path(),
        BIN,
        &run_args(&data_a, &[&advertise, "--bootstrap", &addr_b]),
    );
    let listen_a = address_in(&a.wait_for_line(&["listening", "/ip4/127.0.0.1/tcp/"], DEADLINE));
    let real_port = listen_a
        .split('/')
        .nth(4)
        .expect("a port in the listen address")
        .to_string();

    // Identify sent one address (two without the flag: the listener's and
    // the advertised one), and it is the advertised one: B, which did not
    // dial A, has it and no other in its routing table.
    b.wait_for_line(&["identify received", &id_a, "listen_addrs=1"], DEADLINE);
    let line = b.wait_for_line(&["Kademlia: new peer in routing table", &id_a], DEADLINE);
    assert!(
        line.contains(&format!("/tcp/{relay_port}/")),
        "B should know A by the advertised port {relay_port}: {line}"
    );
    assert!(
        !line.contains(&format!("/tcp/{real_port}/")),
        "B learned A's real listen port {real_port}: {line}"
    );
    // The node itself still reports where it listens (the runner waits on it).
    let api_a = common::api_addr(&mut a, DEADLINE);
    let status = common::get_json(&api_a, "/status");
    assert!(
        status["listen_addrs"].to_string().contains(&real_port),
        "{status}"
    );
}
