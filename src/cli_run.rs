//! The `run` and `key` subcommands: start a node, print the node's peer id.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use concord::chain::{AuthorityKey, Genesis};
use concord::net::{keys, NetConfig};
use concord::node::{self, NodeConfig};
use libp2p::{multiaddr::Protocol, Multiaddr};

#[derive(Args, Debug)]
#[command(
    long_about = "Run a node: serve the chain, discover peers, optionally produce blocks.\n\n\
    At start the node logs its peer id and every listen address with /p2p/<peer id>, \
    ready to paste into another node's --bootstrap. Ctrl-C or SIGTERM stops it gracefully."
)]
pub struct RunArgs {
    /// Data dir: the chain store and the node key (node.key) live here.
    #[arg(long, value_name = "DIR", default_value = "./concord-data")]
    pub data_dir: PathBuf,
    /// `dev` for the built-in dev network, or the path of a genesis TOML file.
    #[arg(long, value_name = "dev|PATH", default_value = "dev")]
    pub genesis: String,
    /// Address to listen on (repeatable).
    #[arg(
        long,
        value_name = "MULTIADDR",
        default_value = "/ip4/127.0.0.1/tcp/7070"
    )]
    pub listen: Vec<String>,
    /// Peer to connect to at start; must end in /p2p/<peer id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Discover peers on the local link with mDNS (off by default).
    #[arg(long)]
    pub mdns: bool,
    /// Produce blocks in our authority's slots (needs --dev-authority for now).
    #[arg(long)]
    pub produce: bool,
    /// Use the well-known dev authority key to produce (never on a real network).
    #[arg(long)]
    pub dev_authority: bool,
    /// HTTP API address (status, peers, blocks, metrics), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = concord::api::DEFAULT_API_ADDR)]
    pub api: String,
    /// Log format; the level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Data dir holding node.key (created with a new key if absent).
    #[arg(long, value_name = "DIR", default_value = "./concord-data")]
    pub data_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let listen = match parse_addrs("--listen", &args.listen, false) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let bootstrap = match parse_addrs("--bootstrap", &args.bootstrap, true) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let produce = match (args.produce, args.dev_authority) {
        (true, true) => Some(AuthorityKey::dev()),
        (true, false) => return usage_error(
            "--produce needs an authority key: pass --dev-authority (the only key source so far)"
                .into(),
        ),
        (false, _) => None,
    };
    let api = match parse_api(&args.api) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let genesis = Genesis::resolve(&args.genesis)?;
    init_logging(args.log_format);

    let config = NodeConfig {
        data_dir: args.data_dir,
        genesis,
        net: NetConfig {
            listen_addrs: listen,
            bootstrap,
            mdns: args.mdns,
            ..NetConfig::default()
        },
        produce,
        sync: concord::sync::SyncConfig::default(),
        api,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(node::run(config, shutdown_signal()))?;
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
