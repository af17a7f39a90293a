//! The command line: argument definitions (clap derive) and one function per
//! subcommand.
//!
//! Owns user-facing wording and exit codes. It must not hold chain or store
//! logic: each subcommand only wires library calls together. To add a
//! subcommand, add a variant to [`Command`], an `Args` struct and a match arm
//! in [`run`](fn@run) (a subcommand with more than a screen of code gets its own file
//! here, as [`run`](mod@run), [`status`] and [`admin`] have).
//!
//! The benchmark's command line is not here: it belongs to the `concord-bench`
//! binary (`bench/main.rs`), which the node does not contain.

mod admin;
mod authority;
mod http;
mod run;
mod status;
mod testnet;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use concord::chain::generate::ChainGenerator;
use concord::chain::{AuthorityKey, Genesis, PublicKey, MAX_BODY_SIZE};
use concord::store::Store;

/// Concord: a libp2p node that keeps a blockchain synchronized across a peer-to-peer network.
#[derive(Parser, Debug)]
#[command(name = "concord", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Append deterministic, validly signed blocks to a data dir (for tests and benchmarks).
    Generate(GenerateArgs),
    /// Write a genesis file (TOML) for a new network.
    Genesis(GenesisArgs),
    /// Create or inspect authority key files (the keys that sign blocks).
    Authority(authority::AuthorityArgs),
    /// Run a node: serve the chain, discover peers, optionally produce blocks.
    Run(run::RunArgs),
    /// Print this node's peer id (creates the node key if absent).
    Key(run::KeyArgs),
    /// Show a running node's status (asks its HTTP API).
    Status(status::StatusArgs),
    /// Ask a running node to reset its sync; out of a halt, follow the majority once.
    Reset(admin::ResetArgs),
    /// Cut a stopped node's chain back to a height (offline recovery from a halt).
    Rollback(admin::RollbackArgs),
    /// Verify every stored block of a stopped node; repair or rebuild the index.
    Check(admin::CheckArgs),
    /// Run a manifest-driven local testnet (runs `concord-testnet`, built with
    /// `cargo build -p concord-testnet`; `concord testnet --help` for its options).
    #[command(disable_help_flag = true)]
    Testnet {
        /// Arguments passed on to `concord-testnet` unchanged.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Args, Debug)]
#[command(
    long_about = "Append deterministic, validly signed blocks to a data dir.\n\n\
    Each block goes in the next slot owned by one of the --authority-key keys and is signed \
    by that key, so a multi-authority chain can be generated; with keys for only some \
    authorities, the other authorities' slots stay empty. Without --authority-key, blocks are \
    signed with the well-known dev authority key, so the genesis must list it (the built-in \
    `dev` genesis does). The same genesis, keys, seed, size and starting tip always give the \
    same blocks; another seed gives a fork. The data dir is created if needed; an existing \
    one is extended from its tip. Timestamps advance one slot per block from the tip, so \
    blocks past the current time are refused by peers until their time comes."
)]
pub struct GenerateArgs {
    /// Data dir of the chain store (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Number of blocks to append.
    #[arg(long, value_name = "N")]
    pub blocks: u64,
    /// Body size of each block in bytes (pseudo-random content).
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    pub block_size: usize,
    /// Seed of the body contents: another seed gives another chain (a fork).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// `dev` for the built-in dev network, or the path of a genesis TOML file.
    #[arg(long, value_name = "dev|PATH", default_value = "dev")]
    pub genesis: String,
    /// An authority key file (from `concord authority new`) to sign this
    /// authority's slots with; repeat for several [default: the dev key].
    #[arg(long = "authority-key", value_name = "FILE")]
    pub authority_keys: Vec<PathBuf>,
}

#[derive(Args, Debug)]
#[command(long_about = "Write a genesis file (TOML) for a new network.\n\n\
    Every field goes into the genesis hash, which identifies the network: nodes only sync \
    with peers whose genesis hash is the same. With no --authority the dev authority key is \
    used (fine for local testing, never for a real network). The genesis hash is printed on stderr.")]
pub struct GenesisArgs {
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Network name.
    #[arg(long, value_name = "N", default_value = "local")]
    pub name: String,
    /// Slot length in milliseconds: each slot has one authority allowed to produce.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub slot_ms: u64,
    /// Genesis timestamp in ms since the Unix epoch [default: now].
    #[arg(long, value_name = "MS")]
    pub timestamp_ms: Option<u64>,
    /// An authority's ed25519 public key (64 hex digits); repeat for several, in slot order.
    #[arg(long = "authority", value_name = "HEX")]
    pub authorities: Vec<String>,
    /// Initial payload (UTF-8 text) committed to by the genesis hash.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub payload: String,
    /// Write the built-in dev genesis exactly (the other options must not be given).
    #[arg(long, conflicts_with_all = ["name", "slot_ms", "timestamp_ms", "authorities", "payload"])]
    pub dev: bool,
}

/// Runs one command. Errors are reported by `main` as one line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Generate(args) => generate(args),
        Command::Genesis(args) => genesis(args),
        Command::Authority(args) => authority::authority(args),
        Command::Run(args) => run::run(args),
        Command::Key(args) => run::key(args),
        Command::Status(args) => status::status(args),
        Command::Reset(args) => admin::reset(args),
        Command::Rollback(args) => admin::rollback(args),
        Command::Check(args) => admin::check(args),
        Command::Testnet { args } => testnet::exec(&args),
    }
}

/// Blocks per store write: large enough to amortize a sled batch, small
/// enough that generating one keeps both cores busy without much memory.
const GENERATE_BATCH: u64 = 2000;

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    if args.block_size > MAX_BODY_SIZE {
        bail!(
            "--block-size {} exceeds the maximum body size of {MAX_BODY_SIZE} bytes",
            args.block_size
        );
    }
    let genesis = Genesis::resolve(&args.genesis)?;
    let keys = if args.authority_keys.is_empty() {
        let key = AuthorityKey::dev();
        if !genesis.is_authority(&key.public()) {
            bail!(
                "genesis {} does not list the dev authority {}; pass its authorities' keys with --authority-key",
                args.genesis,
                key.public()
            );
        }
        vec![key]
    } else {
        authority::load_authorities(&args.authority_keys, &genesis, &args.genesis)?
    };
    let store = Store::open(&args.data_dir, &genesis)
        .with_context(|| format!("cannot open data dir {}", args.data_dir.display()))?;
    let start_tip = store.tip();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();

    // Generation (hash chain, then parallel signing) runs on its own thread so
    // that store writes overlap with signing the next batch.
    let (tx, rx) = mpsc::sync_channel(2);
    let mut gen = ChainGenerator::with_keys(&genesis, keys, start_tip, args.block_size, args.seed)?;
    let total = args.blocks;
    let producer = std::thread::spawn(move || {
        let mut left = total;
        while left > 0 {
            let n = left.min(GENERATE_BATCH);
            // `n` is at most GENERATE_BATCH, which fits any usize.
            if tx.send(gen.next_batch(n as usize, threads)).is_err() {
                break;
            }
            left -= n;
        }
    });
    let mut tip = start_tip;
    let mut result = Ok(());
    for batch in rx {
        match store.import(&batch) {
            Ok(t) => tip = t,
            Err(e) => {
                result = Err(e);
                // Dropping the receiver stops the generator thread.
                break;
            }
        }
    }
    let _ = producer.join();
    result.context("cannot write blocks")?;
    store.flush().context("cannot flush the store")?;

    let secs = started.elapsed().as_secs_f64();
    let made = tip.height - start_tip.height;
    println!(
        "generated {made} blocks of {} bytes in {secs:.2}s ({:.0} blocks/s)",
        args.block_size,
        made as f64 / secs.max(1e-9)
    );
    println!("tip height {} hash {}", tip.height, tip.hash);
    let now = concord::sync::driver::now_ms();
    if tip.timestamp_ms > now {
        eprintln!(
            "note: the tip is stamped {} s in the future; peers accept blocks only up to \
             sync.max_future_drift_ms ahead of their clock",
            (tip.timestamp_ms - now) / 1000
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn genesis(args: GenesisArgs) -> anyhow::Result<ExitCode> {
    let genesis = if args.dev {
        Genesis::dev()
    } else {
        let mut authorities = Vec::with_capacity(args.authorities.len());
        for hex in &args.authorities {
            let key = PublicKey::from_hex(hex.trim())
                .map_err(|e| anyhow::anyhow!("--authority {hex:?} is not 64 hex digits: {e}"))?;
            authorities.push(key);
        }
        if authorities.is_empty() {
            eprintln!(
                "note: no --authority given, using the dev authority {} (never use it on a real network)",
                AuthorityKey::dev().public()
            );
            authorities.push(AuthorityKey::dev().public());
        }
        let timestamp_ms = match args.timestamp_ms {
            Some(t) => t,
            None => u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .context("system clock is before 1970")?
                    .as_millis(),
            )
            .context("system clock is out of range")?,
        };
        Genesis::new(
            args.name,
            timestamp_ms,
            args.slot_ms,
            authorities,
            args.payload.into_bytes(),
        )
        .map_err(|reason| anyhow::anyhow!("invalid genesis: {reason}"))?
    };
    let text = genesis.to_toml();
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    eprintln!("genesis hash {}", genesis.hash());
    Ok(ExitCode::SUCCESS)
}
