//! The `run` and `key` subcommands: start a node, print the node's peer id.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use concord::chain::{AuthorityKey, Genesis};
use concord::config::{validate_net, validate_sync, FileConfig, NetSection, SyncSection};
use concord::net::{keys, NetConfig};
use concord::node::{self, NodeConfig};
use concord::sync::{Checkpoint, SyncConfig};
use libp2p::{multiaddr::Protocol, Multiaddr};

#[derive(Args, Debug)]
#[command(
    long_about = "Run a node: serve the chain, discover peers, optionally produce blocks.\n\n\
    At start the node logs its peer id and every listen address with /p2p/<peer id>, \
    ready to paste into another node's --bootstrap. Ctrl-C or SIGTERM stops it gracefully \
    (API, network, sync, store flush; exit code 0); a second signal exits at once (130)."
)]
pub struct RunArgs {
    /// Read settings from this TOML file (see concord.example.toml); flags given
    /// on the command line win over the file.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the effective config (file, then flags, then defaults) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Data dir: the chain store and the node key (node.key) live here [default: ./concord-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `dev` for the built-in dev network, or the path of a genesis TOML file [default: dev].
    #[arg(long, value_name = "dev|PATH")]
    pub genesis: Option<String>,
    /// Address to listen on (repeatable) [default: /ip4/127.0.0.1/tcp/7070].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Peer to connect to at start; must end in /p2p/<peer id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Discover peers on the local link with mDNS (off by default).
    #[arg(long)]
    pub mdns: bool,
    /// Produce blocks in our authority's slots, signed with --authority-key
    /// (or --dev-authority). Production waits while the node is catching up
    /// or resolving a fork, and never signs two blocks for one slot.
    #[arg(long)]
    pub produce: bool,
    /// Authority key file to produce with (from `concord authority new`); its
    /// public key must be an authority of the genesis.
    #[arg(long, value_name = "FILE", conflicts_with = "dev_authority")]
    pub authority_key: Option<PathBuf>,
    /// Use the well-known dev authority key to produce (never on a real network).
    #[arg(long)]
    pub dev_authority: bool,
    /// HTTP API address (status, peers, blocks, metrics), or `off` [default: 127.0.0.1:7080].
    #[arg(long, value_name = "ADDR|off")]
    pub api: Option<String>,
    /// Log format; the level comes from RUST_LOG (default `info`) [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// A block you vouch for, HEIGHT:HASH (repeatable): the node never keeps a
    /// chain with another block at that height and disconnects peers whose chain
    /// has one. Breaks a split; protects a fresh node from an eclipse.
    #[arg(long, value_name = "HEIGHT:HASH")]
    pub checkpoint: Vec<String>,
    /// Testnet only: move the node's clock (producer and drift check) by this many ms.
    #[cfg(feature = "testnet")]
    #[arg(long, hide = true, allow_hyphen_values = true, value_name = "MS")]
    pub testnet_clock_offset_ms: Option<i64>,
    /// Testnet only: refuse the peers listed in this file (peer ids, one a line; re-read as it changes).
    #[cfg(feature = "testnet")]
    #[arg(long, hide = true, value_name = "PATH")]
    pub testnet_deny_file: Option<std::path::PathBuf>,
    /// Testnet only: tell peers this address instead of the listen addresses (a relay in front).
    #[cfg(feature = "testnet")]
    #[arg(long, hide = true, value_name = "MULTIADDR")]
    pub testnet_advertise: Option<libp2p::Multiaddr>,
    /// Testnet only: misbehave (inflate_heights, wrong_votes, garbage, stall, flood).
    #[cfg(feature = "testnet")]
    #[arg(long, hide = true, value_name = "MODE")]
    pub testnet_misbehave: Option<concord::net::misbehave::Mode>,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Data dir holding node.key (created with a new key if absent).
    #[arg(long, value_name = "DIR", default_value = "./concord-data")]
    pub data_dir: PathBuf,
}

/// Where the producer's key comes from.
enum KeySource {
    File(PathBuf),
    Dev,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

const DEFAULT_DATA_DIR: &str = "./concord-data";
const DEFAULT_LISTEN: &str = "/ip4/127.0.0.1/tcp/7070";

/// The effective settings: each flag given wins, then the file, then the
/// default. Boolean flags can only switch a setting on.
fn effective(args: &RunArgs, file: FileConfig) -> FileConfig {
    let list = |flag: &Vec<String>, file: Option<Vec<String>>, default: &[&str]| {
        if !flag.is_empty() {
            flag.clone()
        } else {
            file.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
        }
    };
    let (mut net, mut sync) = (NetConfig::default(), SyncConfig::default());
    file.net.apply(&mut net);
    file.sync.apply(&mut sync);
    FileConfig {
        data_dir: Some(
            args.data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        ),
        genesis: Some(
            args.genesis
                .clone()
                .or(file.genesis)
                .unwrap_or_else(|| "dev".into()),
        ),
        listen: Some(list(&args.listen, file.listen, &[DEFAULT_LISTEN])),
        bootstrap: Some(list(&args.bootstrap, file.bootstrap, &[])),
        mdns: Some(args.mdns || file.mdns.unwrap_or(false)),
        produce: Some(args.produce || file.produce.unwrap_or(false)),
        authority_key: args.authority_key.clone().or(file.authority_key),
        dev_authority: Some(args.dev_authority || file.dev_authority.unwrap_or(false)),
        api: Some(
            args.api
                .clone()
                .or(file.api)
                .unwrap_or_else(|| concord::api::DEFAULT_API_ADDR.into()),
        ),
        log_format: Some(
            args.log_format
                .map(|f| f.name().to_string())
                .or(file.log_format)
                .unwrap_or_else(|| "text".into()),
        ),
        checkpoint: Some(list(&args.checkpoint, file.checkpoint, &[])),
        net: NetSection::from_values(&net),
        sync: SyncSection::from_values(&sync),
    }
}

/// A command-line mistake: one `error:` line and exit code 2.
fn usage_error(message: String) -> anyhow::Result<ExitCode> {
    eprintln!("error: {}", message.replace('\n', " "));
    Ok(ExitCode::from(2))
}

pub fn key(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let key = keys::load_or_generate(&args.data_dir)?;
    println!("{}", key.public().to_peer_id());
    Ok(ExitCode::SUCCESS)
}

fn parse_addrs(
    flag: &str,
    values: &[String],
    need_peer_id: bool,
) -> Result<Vec<Multiaddr>, String> {
    values
        .iter()
        .map(|s| {
            let addr: Multiaddr = s
                .parse()
                .map_err(|e| format!("invalid {flag} address {s:?}: {e}"))?;
            if need_peer_id && !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                return Err(format!(
                    "invalid {flag} address {s:?}: it must end in /p2p/<peer id>"
                ));
            }
            Ok(addr)
        })
        .collect()
}

/// `off` or a socket address such as `127.0.0.1:7080`.
pub fn parse_api(value: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|e| {
        format!("invalid --api {value:?}: {e} (expected IP:PORT such as 127.0.0.1:7080, or off)")
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // libp2p-request-response warns once per stream refused over the
        // per-connection stream cap, naming no peer: a flooder would write a
        // line per stream. Those streams are bounded by the caps and the
        // quotas, and counted (`StreamCapLayer`, which has its own filter);
        // the node's own (rate-limited) warnings name the peer.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,libp2p_request_response::handler=error")
        });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(concord::net::stream_cap::StreamCapLayer::filtered())
        .init();
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "testnet")]
    if let Some(offset) = args.testnet_clock_offset_ms {
        concord::testnet::set_clock_offset_ms(offset);
    }
    #[cfg(feature = "testnet")]
    if let Some(path) = &args.testnet_deny_file {
        concord::testnet::set_deny_file(path.clone());
    }
    #[cfg(feature = "testnet")]
    if let Some(addr) = &args.testnet_advertise {
        concord::testnet::set_advertise(addr.clone());
    }
    #[cfg(feature = "testnet")]
    if let Some(mode) = args.testnet_misbehave {
        concord::net::misbehave::set_mode(mode);
    }
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let eff = effective(&args, file);
    let listen = match parse_addrs("--listen", eff.listen.as_deref().unwrap_or_default(), false) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let bootstrap = match parse_addrs(
        "--bootstrap",
        eff.bootstrap.as_deref().unwrap_or_default(),
        true,
    ) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let key_source = match (&eff.authority_key, eff.dev_authority.unwrap_or(false)) {
        (Some(_), true) => {
            return usage_error(
                "give either an authority key file (--authority-key, authority_key) or \
                 --dev-authority (dev_authority), not both"
                    .into(),
            )
        }
        (Some(path), false) => Some(KeySource::File(path.clone())),
        (None, true) => Some(KeySource::Dev),
        (None, false) => None,
    };
    let produce = eff.produce.unwrap_or(false);
    if produce && key_source.is_none() {
        return usage_error(
            "--produce needs an authority key: pass --authority-key FILE (made by \
             `concord authority new`), or --dev-authority on a test network"
                .into(),
        );
    }
    let api = match parse_api(eff.api.as_deref().unwrap_or(concord::api::DEFAULT_API_ADDR)) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let checkpoints: Result<Vec<Checkpoint>, _> = eff
        .checkpoint
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| c.parse::<Checkpoint>())
        .collect();
    let mut checkpoints = match checkpoints {
        Ok(c) => c,
        Err(e) => return usage_error(format!("invalid --checkpoint: {e}")),
    };
    checkpoints.sort();
    if let Some(w) = checkpoints
        .windows(2)
        .find(|w| w[0].height == w[1].height && w[0].hash != w[1].hash)
    {
        return usage_error(format!(
            "invalid --checkpoint: two different blocks at height {}",
            w[0].height
        ));
    }
    checkpoints.dedup();
    let log_format = match eff.log_format.as_deref() {
        None => LogFormat::Text,
        Some(name) => match LogFormat::from_str(name, true) {
            Ok(f) => f,
            Err(_) => {
                return usage_error(format!(
                    "invalid log_format {name:?}: expected text or json"
                ))
            }
        },
    };
    // Every tunable is checked before anything starts (or is printed): one
    // line naming the key, exit 2, instead of a panic or a spinning node.
    let (mut net_check, mut sync_check) = (NetConfig::default(), SyncConfig::default());
    eff.net.apply(&mut net_check);
    eff.sync.apply(&mut sync_check);
    if let Err(e) = validate_sync(&sync_check).and_then(|()| validate_net(&net_check)) {
        return usage_error(e.to_string());
    }
    if args.print_config {
        print!("{}", eff.to_toml()?);
        return Ok(ExitCode::SUCCESS);
    }
    let genesis_name = eff.genesis.as_deref().unwrap_or("dev");
    let genesis = Genesis::resolve(genesis_name)?;
    // The key is checked even without --produce: a wrong key file in the
    // config is better found now than on the day production is turned on.
    let key = match key_source {
        Some(KeySource::File(path)) => {
            super::authority::load_authorities(&[path], &genesis, genesis_name)?.pop()
        }
        Some(KeySource::Dev) => Some(AuthorityKey::dev()),
        None => None,
    };
    let produce = if produce { key } else { None };
    init_logging(log_format);

    let mut net = NetConfig {
        listen_addrs: listen,
        bootstrap,
        mdns: eff.mdns.unwrap_or(false),
        ..NetConfig::default()
    };
    eff.net.apply(&mut net);
    let mut sync = SyncConfig::default();
    eff.sync.apply(&mut sync);
    sync.checkpoints = checkpoints;

    let config = NodeConfig {
        data_dir: eff.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        genesis,
        net,
        produce,
        sync,
        api,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(node::run(config, async {
        shutdown_signal().await;
        // The graceful stop (API, network, sync, store flush) takes a few
        // seconds at most; a second signal means "now".
        tokio::spawn(async {
            shutdown_signal().await;
            eprintln!("second signal: exiting immediately");
            std::process::exit(130);
        });
    }));
    // Blocking tasks (a store write in progress) get a moment to finish;
    // sled's batches are atomic, so one cut short is simply absent.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
