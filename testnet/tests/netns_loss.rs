//! Loss without netem, for real: the runner's own namespaces ([`Netns`],
//! two nodes on its bridge) and its `shape` with a [`LossMask`] of 1/4;
//! 2,048 UDP datagrams from node 0 to node 1 on a connected socket (whose
//! IP ID increments by one per datagram) lose exactly one in four, counted
//! by the `pfifo limit 0` drop counter and by the receiver. Needs root and
//! `ip netns`; prints SKIPPED and passes otherwise. Traffic stays inside
//! the namespaces the test makes.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_testnet::lossmask::LossMask;
use concord_testnet::netns::{self, Netns, Shaping};

const SENT: usize = 2048;
const PORT: u16 = 7999;

/// Moves the calling thread into namespace `ns` (sockets it then makes
/// live there).
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    // SAFETY: a valid fd to a network namespace; affects this thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn pfifo_dropped(ns: &str) -> usize {
    let out = std::process::Command::new("tc")
        .args(["-n", ns, "-s", "qdisc", "show", "dev", "eth0"])
        .output()
        .expect("tc");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "qdisc pfifo 20: parent 1:2 limit 0p\n Sent 0 bytes 0 pkt (dropped N, ..."
    let after = text.split("qdisc pfifo 20:").nth(1).expect("pfifo 20");
    let n = after.split("dropped ").nth(1).expect("dropped");
    n.split(',')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("count")
}

#[test]
fn loss_mask_drops_one_in_four_between_namespaces() {
    if let Err(why) = netns::probe() {
        println!("SKIPPED: ip netns not usable here: {why}");
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let net = Netns::create(out.path(), 2).expect("namespaces");
    let mask = LossMask::from_percent(25.0).expect("25%").expect("mask");
    net.shape(0, Some(&Shaping::DropMask { mask, rate: None }))
        .expect("shape");
    let to: SocketAddr = (net.addr(1), PORT).into();
    let from_ns = net.namespace(0).to_string();
    let to_ns = net.namespace(1).to_string();

    let received = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let count = received.clone();
    let receiver = std::thread::spawn(move || {
        enter(&to_ns);
        let sock = UdpSocket::bind(to).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        ready_tx.send(()).expect("ready");
        let mut buf = [0u8; 64];
        while sock.recv(&mut buf).is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    ready_rx.recv().expect("receiver up");
    let sender = std::thread::spawn(move || {
        enter(&from_ns);
        let sock = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
        sock.connect(to).expect("connect");
        for i in 0..SENT {
            // Paced so neither queue nor receive buffer overflows: every
            // missing datagram is then the mask's.
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(2));
            }
            sock.send(&(i as u32).to_be_bytes()).expect("send");
        }
    });
    sender.join().expect("sender");
    let dropped_want = SENT >> mask.bits();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) < SENT - dropped_want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let dropped = pfifo_dropped(net.namespace(0));
    let got = received.load(Ordering::SeqCst);
    println!(
        "sent {SENT}, pfifo dropped {dropped}, received {got} ({:.2}% lost; mask 1/{})",
        100.0 * (SENT - got) as f64 / SENT as f64,
        1u32 << mask.bits()
    );
    // Consecutive IP IDs: exactly every 4th datagram, give or take one
    // at the ends.
    assert!(
        dropped.abs_diff(dropped_want) <= 1,
        "dropped {dropped}, want {dropped_want}"
    );
    assert_eq!(got + dropped, SENT, "only the mask drops");
    net.shape(0, None).expect("unshape");
    receiver.join().expect("receiver");
}
