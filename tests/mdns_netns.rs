//! mDNS discovery between two `concord run --mdns` processes, each in its own
//! Linux network namespace, linked by veth pairs to a bridge in a third
//! namespace. Everything (namespaces, links, 10.231.7.0/24 addresses) exists
//! only inside namespaces this test creates and deletes; mDNS never runs in
//! the host namespace. Needs root and iproute2; otherwise the test prints
//! `skipping mDNS test: <reason>` and passes.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{peer_id_of, Proc, BIN};

const DEADLINE: Duration = Duration::from_secs(30);

fn ip(args: &[&str]) -> Result<Output, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Owns the namespaces and the processes: kills the processes, then deletes
/// the namespaces (which removes the veths and the bridge), even on panic.
#[derive(Default)]
struct Guard {
    namespaces: Vec<String>,
    procs: Vec<Proc>,
}

impl Guard {
    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_string());
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Bridge namespace `br` with `br0`; node namespace `ns` gets `veth0` with
/// `addr`, its peer enslaved to `br0`.
fn wire(br: &str, ns: &str, port: &str, addr: &str) -> Result<(), String> {
    ip(&[
        "-n", br, "link", "add", port, "type", "veth", "peer", "name", "veth0", "netns", ns,
    ])?;
    ip(&["-n", br, "link", "set", port, "master", "br0", "up"])?;
    ip(&["-n", ns, "addr", "add", addr, "dev", "veth0"])?;
    ip(&["-n", ns, "link", "set", "veth0", "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    // Multicast (mDNS is 224.0.0.251) goes out of veth0.
    ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "veth0"])?;
    Ok(())
}

fn setup(guard: &mut Guard, tag: &str) -> Result<[String; 2], String> {
    let (a, b, br) = (format!("{tag}a"), format!("{tag}b"), format!("{tag}br"));
    guard.add_ns(&br)?;
    guard.add_ns(&a)?;
    guard.add_ns(&b)?;
    ip(&[
        "-n",
        &br,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    ip(&["-n", &br, "link", "set", "br0", "up"])?;
    wire(&br, &a, "pa", "10.231.7.1/24")?;
    wire(&br, &b, "pb", "10.231.7.2/24")?;
    Ok([a, b])
}

#[test]
fn nodes_in_two_namespaces_find_each_other_with_mdns() {
    let tag = format!("cc{}", std::process::id());
    let mut guard = Guard::default();
    let [ns_a, ns_b] = match setup(&mut guard, &tag) {
        Ok(names) => names,
        Err(reason) => {
            println!("skipping mDNS test: {reason}");
            return;
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for (name, ns, addr) in [("a", &ns_a, "10.231.7.1"), ("b", &ns_b, "10.231.7.2")] {
        let data = dir.path().join(name);
        ids.push(peer_id_of(&data));
        let args: Vec<String> = [
            "netns",
            "exec",
            ns,
            BIN,
            "run",
            "--api",
            "off",
            "--mdns",
            "--listen",
            &format!("/ip4/{addr}/tcp/7000"),
            "--data-dir",
            &data.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        guard.procs.push(Proc::spawn(name, dir.path(), "ip", &args));
    }

    let (id_a, id_b) = (ids[0].clone(), ids[1].clone());
    guard.procs[0].wait_for_line(&["peer connected", &id_b], DEADLINE);
    guard.procs[1].wait_for_line(&["peer connected", &id_a], DEADLINE);
    let log_a = guard.procs[0].log_text();
    assert!(
        log_a.contains("mDNS discovered peer")
            || guard.procs[1].log_text().contains("mDNS discovered peer")
    );
}
