//! The `concord` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use concord::chain::{AuthorityKey, Genesis};
use concord::net::{keys, NetConfig};
use concord::node::{self, NodeConfig};
use libp2p::{multiaddr::Protocol, Multiaddr};

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "A libp2p node that keeps a blockchain synchronized"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: serve the chain, discover peers, optionally produce blocks.
    Run(RunArgs),
    /// Print this node's peer id (creates the node key if absent).
    Key {
        #[arg(long, default_value = "./concord-data")]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Holds the chain store and the node key.
    #[arg(long, default_value = "./concord-data")]
    data_dir: PathBuf,
    /// `dev` or the path of a genesis TOML file.
    #[arg(long, default_value = "dev")]
    genesis: String,
    /// Address to listen on (repeatable).
    #[arg(
        long,
        value_name = "MULTIADDR",
        default_value = "/ip4/127.0.0.1/tcp/7070"
    )]
    listen: Vec<String>,
    /// Peer to connect to at start, ending in /p2p/<peer id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Discover peers on the local link with mDNS.
    #[arg(long)]
    mdns: bool,
    /// Produce blocks in our authority's slots (needs an authority key: --dev-authority).
    #[arg(long)]
    produce: bool,
    /// Use the well-known dev authority key (never on a real network).
    #[arg(long)]
    dev_authority: bool,
    /// Log output format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A command-line mistake: printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            let code = if e.is::<UsageError>() { 2 } else { 1 };
            Ok(ExitCode::from(code))
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Key { data_dir } => {
            let key = keys::load_or_generate(&data_dir)?;
            println!("{}", key.public().to_peer_id());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args),
    }
}

fn parse_addrs(
    flag: &str,
    values: &[String],
    need_peer_id: bool,
) -> Result<Vec<Multiaddr>, UsageError> {
    values
        .iter()
        .map(|s| {
            let addr: Multiaddr = s
                .parse()
                .map_err(|e| UsageError(format!("invalid {flag} address {s:?}: {e}")))?;
            if need_peer_id && !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                return Err(UsageError(format!(
                    "invalid {flag} address {s:?}: it must end in /p2p/<peer id>"
                )));
            }
            Ok(addr)
        })
        .collect()
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

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let listen = parse_addrs("--listen", &args.listen, false)?;
    let bootstrap = parse_addrs("--bootstrap", &args.bootstrap, true)?;
    let produce = match (args.produce, args.dev_authority) {
        (true, true) => Some(AuthorityKey::dev()),
        (true, false) => return Err(UsageError(
            "--produce needs an authority key: pass --dev-authority (the only key source so far)"
                .into(),
        )
        .into()),
        (false, _) => None,
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
