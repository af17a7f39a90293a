//! Setup stage: the out dir, pre-generated chains, node keys, ports and each
//! node's `concord run` command line.
//!
//! Owns the layout of `--out DIR` (`nodes/NAME/{data,log,config.toml}`,
//! `chains/`, `manifest.toml`, `pids`, the `.concord-testnet` marker) and the
//! loopback placement: every node listens on 127.0.0.1 with a p2p and an
//! API port picked free by the OS (and, when the loopback link shaper is
//! on, a public port for its relay, whose listener is kept bound and
//! handed to [`crate::shaper`]). Uses only the `concord` binary's
//! commands (`generate`, `key`, `run`), never the node's code.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::manifest::{Action, Manifest, Placement, Role};
use crate::netns::{self, Netns};
use crate::process;

/// Marks a directory as a testnet out dir, which a new run may wipe.
pub const MARKER: &str = ".concord-testnet";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    OutDir(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`concord {command}` failed: {detail}")]
    Concord { command: String, detail: String },
    #[error("cannot pick a free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything needed to start (and restart) one node.
#[derive(Clone, Debug)]
pub struct NodePlan {
    pub name: String,
    pub role: Role,
    pub peer_id: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The address peers reach the node at (in bootstrap addresses).
    pub p2p: SocketAddr,
    /// With the loopback shaper: where the node really listens (its relay
    /// on `p2p` forwards there); otherwise `p2p`.
    pub listen: SocketAddr,
    pub api: SocketAddr,
    pub args: Vec<String>,
    pub start_after: f64,
    /// The pre-generated chain's tip (`height hash`), if any.
    pub chain_tip: Option<String>,
    /// Namespaces placement: `ip` and these arguments come before the
    /// `concord` command line (`netns exec NS`); empty on loopback.
    pub exec_prefix: Vec<String>,
    /// Loopback with link cuts in the timeline: the node's deny list
    /// (`--testnet-deny-file`), the peer ids it must refuse, one a line.
    pub deny_file: Option<PathBuf>,
}

impl NodePlan {
    pub fn multiaddr(&self) -> String {
        format!(
            "/ip4/{}/tcp/{}/p2p/{}",
            self.p2p.ip(),
            self.p2p.port(),
            self.peer_id
        )
    }
}

/// Prepares `out` (wiping an earlier run's) and returns the absolute out dir
/// and how many leftover processes of an earlier run it killed.
pub fn prepare_out_dir(out: &Path) -> Result<(PathBuf, usize), SetupError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let out = out.canonicalize().map_err(io(out))?;
    let mut entries = std::fs::read_dir(&out).map_err(io(&out))?;
    let empty = entries.next().is_none();
    let mut killed = 0;
    if !empty {
        if !out.join(MARKER).exists() {
            return Err(SetupError::OutDir(format!(
                "{} is not empty and not a testnet out dir (no {MARKER}); give an empty or new directory",
                out.display()
            )));
        }
        killed = process::kill_leftovers(&out.join("pids"), &out.display().to_string());
        // After the processes: a namespace with a process left in it lives on.
        netns::remove_stale(&out);
        std::fs::remove_dir_all(&out).map_err(io(&out))?;
        std::fs::create_dir_all(&out).map_err(io(&out))?;
    }
    std::fs::write(
        out.join(MARKER),
        "concord-testnet out dir: a new run wipes it\n",
    )
    .map_err(io(&out))?;
    Ok((out, killed))
}

fn concord(bin: &Path, args: &[String]) -> Result<String, SetupError> {
    let output = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| SetupError::Concord {
            command: args.join(" "),
            detail: format!("cannot run {}: {e}", bin.display()),
        })?;
    if !output.status.success() {
        return Err(SetupError::Concord {
            command: args.join(" "),
            detail: String::from_utf8_lossy(&output.stderr)
                .trim()
                .replace('\n', " "),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The genesis every node runs and the authority keys pre-generated
/// chains are signed with (none: the dev key).
struct NetworkFiles {
    genesis: String,
    keys: Vec<PathBuf>,
}

/// `dev`, or for `genesis = "authorities"`: N keys (`concord authority
/// new`) and a genesis listing them in slot order (`concord genesis`),
/// under `authorities/`. The genesis time is set far enough back that every
/// pre-generated block (one per slot from genesis) is already in the past.
fn network(manifest: &Manifest, out: &Path, bin: &Path) -> Result<NetworkFiles, SetupError> {
    let net = &manifest.network;
    let Some(count) = net.authorities.filter(|_| net.genesis == "authorities") else {
        return Ok(NetworkFiles {
            genesis: net.genesis.clone(),
            keys: Vec::new(),
        });
    };
    let dir = out.join("authorities");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut keys = Vec::new();
    let mut args = vec!["genesis".to_string()];
    for i in 0..count {
        let key = dir.join(format!("a{i}.key"));
        let public = concord(
            bin,
            &[
                "authority".into(),
                "new".into(),
                "--out".into(),
                key.display().to_string(),
            ],
        )?;
        args.extend(["--authority".into(), public.trim().to_string()]);
        keys.push(key);
    }
    let slot_ms = 1000u64;
    let deepest = manifest.nodes.iter().map(|n| n.blocks).max().unwrap_or(0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Blocks fill every slot (all keys sign), plus a minute of margin.
    let start = now_ms.saturating_sub((deepest + 60) * slot_ms);
    let genesis = dir.join("genesis.toml");
    args.extend([
        "--out".into(),
        genesis.display().to_string(),
        "--name".into(),
        format!("testnet-{}", std::process::id()),
        "--slot-ms".into(),
        slot_ms.to_string(),
        "--timestamp-ms".into(),
        start.to_string(),
    ]);
    concord(bin, &args)?;
    Ok(NetworkFiles {
        genesis: genesis.display().to_string(),
        keys,
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), SetupError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io(from))?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io(&target))?;
        }
    }
    Ok(())
}

/// Whether a manifest needs the loopback link shaper: `netem` on loopback.
pub fn needs_shaper(manifest: &Manifest) -> bool {
    manifest.run.placement == Placement::Loopback
        && manifest.timeline.iter().any(|e| e.action == Action::Netem)
}

/// The nodes' plans, and with the loopback shaper each node's public
/// listener (bound, for its relay), in manifest order.
pub struct Planned {
    pub plans: Vec<NodePlan>,
    pub relays: Vec<TcpListener>,
}

/// Generates each distinct pre-generated chain once (in `chains/`), copies it
/// into the nodes' data dirs, makes node keys, picks ports and writes
/// configs. Returns the nodes' plans in manifest order. With `net`, node `i`
/// runs in its namespace on its bridge address, with mDNS unless the
/// manifest turns it off. With the loopback shaper ([`needs_shaper`]), node
/// `i` listens on a private port and advertises the public one, whose
/// listener is returned bound.
pub fn plan(
    manifest: &Manifest,
    out: &Path,
    bin: &Path,
    net_ns: Option<&Netns>,
) -> Result<Planned, SetupError> {
    let net = &manifest.network;
    let network = network(manifest, out, bin)?;
    let shaped = net_ns.is_none() && needs_shaper(manifest);
    // Ports first, all at once, so no two nodes get the same one.
    let count = manifest.nodes.len();
    let listeners = (0..count * 2)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SetupError::Port)?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()
        .map_err(SetupError::Port)?;
    drop(listeners);
    // The relays' listeners stay bound: nothing else can take their ports.
    let relays = if shaped {
        (0..count)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SetupError::Port)?
    } else {
        Vec::new()
    };

    let mut plans = Vec::new();
    for (i, node) in manifest.nodes.iter().enumerate() {
        let dir = out.join("nodes").join(&node.name);
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut chain_tip = None;
        if node.blocks > 0 {
            let seed = node.chain_seed(net);
            let name = format!("seed{seed}-{}x{}", node.blocks, net.block_size);
            let chain = out.join("chains").join(&name);
            let tip_file = out.join("chains").join(format!("{name}.tip"));
            if !chain.exists() {
                let said = concord(
                    bin,
                    &[
                        "generate".into(),
                        "--data-dir".into(),
                        chain.display().to_string(),
                        "--blocks".into(),
                        node.blocks.to_string(),
                        "--block-size".into(),
                        net.block_size.to_string(),
                        "--seed".into(),
                        seed.to_string(),
                        "--genesis".into(),
                        network.genesis.clone(),
                    ]
                    .into_iter()
                    .chain(
                        network
                            .keys
                            .iter()
                            .flat_map(|k| ["--authority-key".to_string(), k.display().to_string()]),
                    )
                    .collect::<Vec<_>>(),
                )?;
                let tip = said
                    .lines()
                    .find_map(|l| l.strip_prefix("tip height "))
                    .unwrap_or_default()
                    .replace(" hash ", " ");
                std::fs::write(&tip_file, &tip).map_err(io(&tip_file))?;
            }
            chain_tip = std::fs::read_to_string(&tip_file).ok();
            copy_dir(&chain, &data_dir)?;
        }
        let peer_id = concord(
            bin,
            &[
                "key".into(),
                "--data-dir".into(),
                data_dir.display().to_string(),
            ],
        )?
        .trim()
        .to_string();
        let (listen, api) = match net_ns {
            Some(ns) => (
                SocketAddr::from((ns.addr(i), netns::P2P_PORT)),
                SocketAddr::from((ns.addr(i), netns::API_PORT)),
            ),
            None => (ports[2 * i], ports[2 * i + 1]),
        };
        let p2p = match relays.get(i) {
            Some(relay) => relay.local_addr().map_err(SetupError::Port)?,
            None => listen,
        };
        let mut args = vec![
            "run".to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--genesis".into(),
            network.genesis.clone(),
            "--listen".into(),
            format!("/ip4/{}/tcp/{}", listen.ip(), listen.port()),
            "--api".into(),
            api.to_string(),
            "--log-format".into(),
            "text".into(),
        ];
        if shaped {
            // Hidden flag of a node built with `--features testnet`: peers
            // learn only the relay's address.
            args.push(format!(
                "--testnet-advertise=/ip4/{}/tcp/{}",
                p2p.ip(),
                p2p.port()
            ));
        }
        match (node.role, node.authority) {
            (Role::Producer, Some(k)) => {
                let key = network.keys[k as usize].display().to_string();
                args.extend(["--produce".into(), "--authority-key".into(), key]);
            }
            (Role::Producer, None) => {
                args.extend(["--produce".into(), "--dev-authority".into()]);
            }
            _ => {}
        }
        if let Some(mode) = node.behaviour.as_deref().filter(|b| *b != "fork") {
            // Hidden flag of a node built with `--features testnet`.
            args.push(format!("--testnet-misbehave={mode}"));
        }
        if let Some(offset) = node.clock_offset_ms {
            // Hidden flag of a node built with `--features testnet`.
            args.push(format!("--testnet-clock-offset-ms={offset}"));
        }
        let deny_file = (net_ns.is_none()
            && manifest.timeline.iter().any(|e| e.action.is_link_fault()))
        .then(|| dir.join("deny"));
        if let Some(path) = &deny_file {
            std::fs::write(path, "").map_err(io(path))?;
            // Hidden flag of a node built with `--features testnet`.
            args.push(format!("--testnet-deny-file={}", path.display()));
        }
        if net_ns.is_some() && node.mdns != Some(false) {
            args.push("--mdns".into());
        }
        if let Some(table) = &node.config {
            let path = dir.join("config.toml");
            let text = toml::to_string(table).map_err(|e| SetupError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            std::fs::write(&path, text).map_err(io(&path))?;
            args.extend(["--config".into(), path.display().to_string()]);
        }
        plans.push(NodePlan {
            name: node.name.clone(),
            role: node.role,
            peer_id,
            log: dir.join("log"),
            data_dir,
            p2p,
            listen,
            api,
            args,
            start_after: node.start_after.0.as_secs_f64(),
            chain_tip: chain_tip.map(|t| t.trim().to_string()),
            exec_prefix: net_ns.map(|ns| ns.exec_prefix(i)).unwrap_or_default(),
            deny_file,
        });
    }
    // Bootstrap addresses need every peer id.
    let addrs: Vec<(String, String)> = plans
        .iter()
        .map(|p| (p.name.clone(), p.multiaddr()))
        .collect();
    for (plan, node) in plans.iter_mut().zip(&manifest.nodes) {
        for name in &node.bootstrap {
            if let Some((_, addr)) = addrs.iter().find(|(n, _)| n == name) {
                plan.args.extend(["--bootstrap".into(), addr.clone()]);
            }
        }
    }
    Ok(Planned { plans, relays })
}
