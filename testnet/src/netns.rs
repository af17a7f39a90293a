//! The namespaces placement: one Linux network namespace per node on a
//! bridge the runner makes, and the link faults applied to it.
//!
//! Layout of one run (id `R`, six hex digits; subnet `10.231.S.0/24` with
//! `S` picked free at setup):
//! - namespace `ctnR-br` holds the bridge `br0` (multicast snooping off, so
//!   mDNS floods like on a dumb switch);
//! - node `i` lives in namespace `ctnR-i`, with `eth0` = `10.231.S.(10+i)`
//!   (a veth whose other end, `pI`, is a port of `br0`), `lo` up, and the
//!   multicast route, so `--mdns` works there and only there;
//! - the runner (root namespace) reaches the nodes' HTTP APIs through the
//!   veth `ctrR` = `10.231.S.1`, whose other end `up0` is a port of `br0`
//!   with multicast flooding off (no mDNS packet reaches the root namespace).
//!
//! Every name made is written to `netns.state` in the out dir before it is
//! made; [`Netns`] deletes them on drop (normal end, error, panic, Ctrl-C),
//! and a new run on the same out dir deletes what a killed run left
//! ([`remove_stale`]). Deleting a namespace removes its veths and bridge.
//!
//! Link faults (all inside the node namespaces, never in the root one):
//! - a node's **disconnect** / a **partition**: `ip rule ... blackhole`
//!   pairs (`to ADDR` and `from ADDR`) in the node's namespace for every
//!   node address it must not reach: packets both ways are dropped silently,
//!   like a cut cable (no reset, no ICMP); the runner's address stays
//!   reachable so the node is still observed. mDNS multicast still crosses
//!   (discovery may see a peer it cannot reach).
//! - **netem**: `tc qdisc replace dev eth0 root netem ...` in the node's
//!   namespace and on its bridge port (delay, jitter, loss, rate); a rate
//!   alone is a `tbf`; on a kernel without netem, loss alone (with or
//!   without a rate) is the htb + u32 + `pfifo limit 0` construction of
//!   [`crate::lossmask`].
//!
//! Owns no process: nodes are started by [`crate::process`] with the prefix
//! from [`Netns::exec_prefix`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lossmask::LossMask;

/// What `ip`/`tc` said when a step failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free 10.231.S.0/24 subnet in the root namespace")]
    NoSubnet,
}

/// The node's p2p and API ports inside its namespace (each node has its own
/// address, so every node uses the same ports).
pub const P2P_PORT: u16 = 7000;
pub const API_PORT: u16 = 8080;
const STATE: &str = "netns.state";

fn run(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetnsError::Command {
            command: command.clone(),
            detail: format!("cannot run {program}: {e}"),
        })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            command,
            detail: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run("ip", args)
}

/// Whether this machine can make network namespaces: `Err(reason)` if not.
/// Makes and deletes one throwaway namespace.
pub fn probe() -> Result<(), String> {
    let name = format!("ctn-probe-{}", std::process::id());
    ip(&["netns", "add", &name]).map_err(|e| e.to_string())?;
    let linked = ip(&["-n", &name, "link", "set", "lo", "up"]);
    let _ = ip(&["netns", "del", &name]);
    linked.map(|_| ()).map_err(|e| e.to_string())
}

/// Deletes what an earlier run on this out dir left (names in its
/// `netns.state`); how many namespaces it removed.
pub fn remove_stale(out: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(out.join(STATE)) else {
        return 0;
    };
    let mut removed = 0;
    for line in text.lines() {
        if let Some(ns) = line.strip_prefix("netns ") {
            if ip(&["netns", "del", ns.trim()]).is_ok() {
                removed += 1;
            }
        } else if let Some(link) = line.strip_prefix("link ") {
            let _ = ip(&["link", "del", link.trim()]);
        }
    }
    removed
}

/// One run's namespaces, bridge and addresses; deleted on drop.
pub struct Netns {
    id: String,
    subnet: u8,
    bridge_ns: String,
    root_link: String,
    nodes: Vec<String>,
    made: Vec<String>,
    state: PathBuf,
    /// Per node: the addresses it blackholes now (disconnect / partition).
    blocked: Vec<BTreeSet<usize>>,
    /// Whether the kernel has netem (see [`probe_netem`]); assumed until
    /// [`Netns::set_netem`] says otherwise.
    netem: bool,
}

impl Netns {
    /// Makes the bridge and `count` node namespaces. Names go to the state
    /// file in `out` before they are made.
    pub fn create(out: &Path, count: usize) -> Result<Netns, NetnsError> {
        if count > 200 {
            return Err(NetnsError::Command {
                command: "plan".into(),
                detail: "at most 200 nodes in the namespaces placement".into(),
            });
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!(
            "{:06x}",
            (std::process::id() ^ nanos.rotate_left(7)) & 0xff_ffff
        );
        let subnet = free_subnet(&id)?;
        let mut net = Netns {
            bridge_ns: format!("ctn{id}-br"),
            root_link: format!("ctr{id}"),
            nodes: (0..count).map(|i| format!("ctn{id}-{i}")).collect(),
            id,
            subnet,
            made: Vec::new(),
            state: out.join(STATE),
            blocked: vec![BTreeSet::new(); count],
            netem: true,
        };
        net.build()?;
        Ok(net)
    }

    fn record(&mut self, line: String) -> Result<(), NetnsError> {
        self.made.push(line);
        let text = self.made.join("\n") + "\n";
        std::fs::write(&self.state, text).map_err(|source| NetnsError::State {
            path: self.state.clone(),
            source,
        })
    }

    fn add_ns(&mut self, name: &str) -> Result<(), NetnsError> {
        self.record(format!("netns {name}"))?;
        ip(&["netns", "add", name])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build(&mut self) -> Result<(), NetnsError> {
        let br = self.bridge_ns.clone();
        self.add_ns(&br)?;
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
        // The runner's own link: made in the bridge namespace, one end moved
        // to the runner's (root) namespace, so deleting the bridge namespace
        // removes it too.
        let root = self.root_link.clone();
        self.record(format!("link {root}"))?;
        let runner_pid = std::process::id().to_string();
        ip(&[
            "-n",
            &br,
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            &root,
            "netns",
            &runner_pid,
        ])?;
        ip(&["-n", &br, "link", "set", "up0", "master", "br0"])?;
        ip(&[
            "-n",
            &br,
            "link",
            "set",
            "up0",
            "type",
            "bridge_slave",
            "mcast_flood",
            "off",
        ])?;
        ip(&["-n", &br, "link", "set", "up0", "up"])?;
        let cidr = format!("{}/24", self.runner_addr());
        ip(&["addr", "add", &cidr, "dev", &root])?;
        ip(&["link", "set", &root, "up"])?;
        for i in 0..self.nodes.len() {
            let ns = self.nodes[i].clone();
            self.add_ns(&ns)?;
            let port = format!("p{i}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            let cidr = format!("{}/24", self.addr(i));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(())
    }

    /// Records whether this kernel has netem (what [`probe_netem`] found).
    pub fn set_netem(&mut self, netem: bool) {
        self.netem = netem;
    }

    pub fn has_netem(&self) -> bool {
        self.netem
    }

    /// The run id in every name (`ctn<id>-…`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Node `i`'s address on the bridge.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 10 + i as u8)
    }

    /// The runner's address on the bridge.
    pub fn runner_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.subnet, 1)
    }

    pub fn namespace(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// The command prefix that runs a program in node `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.nodes[i].clone()]
    }

    /// Makes node `i` blackhole exactly the nodes in `others` (adds and
    /// removes rules to get there).
    pub fn block(&mut self, i: usize, others: &BTreeSet<usize>) -> Result<(), NetnsError> {
        let ns = self.nodes[i].clone();
        let now = self.blocked[i].clone();
        for &j in now.difference(others) {
            let a = self.addr(j).to_string();
            ip(&["-n", &ns, "rule", "del", "to", &a, "blackhole"])?;
            ip(&["-n", &ns, "rule", "del", "from", &a, "blackhole"])?;
            self.blocked[i].remove(&j);
        }
        for &j in others.difference(&now) {
            let a = self.addr(j).to_string();
            ip(&["-n", &ns, "rule", "add", "to", &a, "blackhole"])?;
            ip(&["-n", &ns, "rule", "add", "from", &a, "blackhole"])?;
            self.blocked[i].insert(j);
        }
        Ok(())
    }

    /// Shapes node `i`'s link both ways (its `eth0` and its bridge port):
    /// `tc qdisc replace ... netem ARGS`; with only a `rate`, a token bucket
    /// (`tbf`), which kernels without `sch_netem` have too; loss without
    /// netem: the [`crate::lossmask`] construction; with `None`, removes
    /// the shaping.
    pub fn shape(&self, i: usize, shaping: Option<&Shaping>) -> Result<(), NetnsError> {
        let sides = [
            (self.nodes[i].clone(), "eth0".to_string()),
            (self.bridge_ns.clone(), format!("p{i}")),
        ];
        for (ns, dev) in &sides {
            let mut args: Vec<String> = ["-n", ns, "qdisc"].map(String::from).to_vec();
            match shaping {
                None => {
                    args.extend(["del", "dev", dev, "root"].map(String::from));
                    // Nothing to remove is fine.
                    let _ = run("tc", &args.iter().map(String::as_str).collect::<Vec<_>>());
                    continue;
                }
                Some(Shaping::Netem(netem)) => {
                    args.extend(["replace", "dev", dev, "root", "netem"].map(String::from));
                    args.extend(netem.iter().cloned());
                }
                Some(Shaping::DropMask { mask, rate }) => {
                    // The `add`s must not meet what an earlier event left.
                    args.extend(["del", "dev", dev, "root"].map(String::from));
                    let _ = run("tc", &args.iter().map(String::as_str).collect::<Vec<_>>());
                    for cmd in mask.tc_commands(ns, dev, rate.as_deref()) {
                        run("tc", &cmd.iter().map(String::as_str).collect::<Vec<_>>())?;
                    }
                    continue;
                }
                Some(Shaping::Rate(rate)) => {
                    args.extend(["replace", "dev", dev, "root", "tbf", "rate"].map(String::from));
                    args.extend([
                        rate.clone(),
                        "burst".into(),
                        "32kbit".into(),
                        "latency".into(),
                        "400ms".into(),
                    ]);
                }
            }
            run("tc", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    }
}

/// How a link is shaped.
pub enum Shaping {
    /// `tc ... netem` arguments (delay, jitter, loss, rate).
    Netem(Vec<String>),
    /// A rate limit alone, as a token bucket.
    Rate(String),
    /// Loss without netem: drop 1/2^k by IP ID (htb + u32 + pfifo limit
    /// 0), with the rate, if any, on the passing htb class.
    DropMask {
        mask: LossMask,
        rate: Option<String>,
    },
}

/// Whether this kernel has the netem qdisc (`sch_netem`): `Err(reason)` if
/// not. Tries it on a veth in a throwaway namespace.
pub fn probe_netem() -> Result<(), String> {
    let name = format!("ctn-netem-{}", std::process::id());
    ip(&["netns", "add", &name]).map_err(|e| e.to_string())?;
    let tried = ip(&[
        "-n", &name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ])
    .and_then(|_| ip(&["-n", &name, "link", "set", "v0", "up"]))
    .and_then(|_| {
        run(
            "tc",
            &[
                "-n", &name, "qdisc", "add", "dev", "v0", "root", "netem", "delay", "1ms",
            ],
        )
    });
    let _ = ip(&["netns", "del", &name]);
    tried.map(|_| ()).map_err(|e| e.to_string())
}

impl Drop for Netns {
    fn drop(&mut self) {
        for line in self.made.iter().rev() {
            if let Some(ns) = line.strip_prefix("netns ") {
                if let Err(e) = ip(&["netns", "del", ns]) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
        // The root link went with the bridge namespace; this is for the case
        // the bridge namespace was never made.
        if ip(&["link", "show", &self.root_link]).is_ok() {
            let _ = ip(&["link", "del", &self.root_link]);
        }
        let _ = std::fs::remove_file(&self.state);
    }
}

/// A `10.231.S.0/24` the root namespace does not use yet (no address or
/// route in it), starting from one derived from the run id.
fn free_subnet(id: &str) -> Result<u8, NetnsError> {
    let used = ip(&["-4", "route", "show", "table", "all"])? + &ip(&["-4", "addr", "show"])?;
    let start = u32::from_str_radix(id, 16).unwrap_or(0) % 200;
    (0..200)
        .map(|k| ((start + k) % 200 + 40) as u8)
        .find(|s| !used.contains(&format!("10.231.{s}.")))
        .ok_or(NetnsError::NoSubnet)
}
