//! The loopback link shaper's relay over real sockets on 127.0.0.1: bytes
//! cross both ways in order, the dialer is named (this test process,
//! registered as a node), both ends' delays apply to the round trip, and
//! a half-close is passed on. Lower bounds only: a loaded machine makes
//! things slower, never faster.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use concord_testnet::shaper::line::Shape;
use concord_testnet::shaper::Shaper;

/// A "node": echoes every byte until EOF, then closes.
fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn delay(ms: u64) -> Shape {
    Shape {
        delay: Duration::from_millis(ms),
        ..Shape::default()
    }
}

#[test]
fn relay_carries_both_ways_names_the_dialer_and_adds_both_ends_delay() {
    let node = echo_server();
    let public = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let relay_addr = public.local_addr().expect("addr");
    // Node 0 is the echo server behind the relay; node 1 is this process.
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let other_target = other.local_addr().expect("addr");
    let shaper = Shaper::start(vec![public, other], vec![node, other_target], 1).expect("start");
    shaper.set_pid(1, Some(std::process::id()));
    shaper.set(0, delay(100));
    shaper.set(1, delay(50));

    let mut conn = TcpStream::connect(relay_addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let sent = Instant::now();
    conn.write_all(&message).expect("write");
    conn.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    // EOF arrives only if the relay passed our half-close to the node and
    // the node's close back to us.
    conn.read_to_end(&mut back).expect("read to EOF");
    let took = sent.elapsed();
    assert_eq!(back, message, "every byte back, in order");
    // There and back, each way across both links: 2 x (100 + 50) ms.
    assert!(took >= Duration::from_millis(300), "round trip {took:?}");
    let (accepted, unnamed) = shaper.counts();
    assert_eq!((accepted, unnamed), (1, 0), "the dialer was named");
}

#[test]
fn a_dialer_that_is_not_a_node_gets_the_listeners_link_alone() {
    let node = echo_server();
    let public = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let relay_addr = public.local_addr().expect("addr");
    let shaper = Shaper::start(vec![public], vec![node], 2).expect("start");
    shaper.set(0, delay(120));
    let mut conn = TcpStream::connect(relay_addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let sent = Instant::now();
    conn.write_all(b"ping").expect("write");
    let mut back = [0u8; 4];
    conn.read_exact(&mut back).expect("read");
    assert_eq!(&back, b"ping");
    assert!(
        sent.elapsed() >= Duration::from_millis(240),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(shaper.counts(), (1, 1));
}

#[test]
fn a_rate_limit_holds_a_transfer_back() {
    let node = echo_server();
    let public = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let relay_addr = public.local_addr().expect("addr");
    let shaper = Shaper::start(vec![public], vec![node], 3).expect("start");
    let rate = 125_000.0; // 1 Mbit/s, each way
    shaper.set(
        0,
        Shape {
            rate: Some(rate),
            ..Shape::default()
        },
    );
    let mut conn = TcpStream::connect(relay_addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let message = vec![7u8; 150_000];
    let sent = Instant::now();
    conn.write_all(&message).expect("write");
    let mut back = vec![0u8; message.len()];
    conn.read_exact(&mut back).expect("read");
    let took = sent.elapsed().as_secs_f64();
    assert_eq!(back, message);
    // Each way is limited on its own and the two overlap, so the whole
    // echo takes at least one way's time: (150 kB - the burst) / rate.
    let least = (150_000.0 - concord_testnet::shaper::line::BURST) / rate;
    assert!(took >= least, "took {took:.2} s, at least {least:.2} s");
}
