//! `concord-bench`: sync throughput against this machine's own ceilings,
//! measured in one run (see BENCHMARKS.md for every figure).
//!
//! A binary of its own, built only with the `bench` feature, so that the
//! `concord` node carries none of the harness (see the note in Cargo.toml).
//! It uses the library as any embedder would, plus the one bench-only hook
//! the feature adds to it (`NetConfig::serve_rate_limit`, the slow seeder's
//! throttle). It must not be needed by anything in `src/`.
//!
//! Layout: [`run`] drives the scenarios and formats the report, [`chains`]
//! caches generated chains, [`ceilings`] measures local import and raw
//! transport, [`cpu`] what they and the syncs cost in CPU time, [`child`] is the syncing node of one scenario (run as
//! `concord-bench sync-child` in its own process), [`tip`] measures tip latency.

mod ceilings;
mod chains;
mod child;
mod cpu;
mod report;
mod run;
mod settle;
mod tip;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// Name of the hidden subcommand [`run`] starts each scenario's syncing node with.
const SYNC_CHILD: &str = "sync-child";

/// Benchmark Concord's sync throughput against this machine's own ceilings (table + JSON).
#[derive(Parser, Debug)]
#[command(
    name = "concord-bench",
    version,
    args_conflicts_with_subcommands = true,
    long_about = "Benchmark sync throughput against this machine's own ceilings.\n\n\
    Generates (and caches) a small-block and a large-block chain, measures the local import \
    and raw transport ceilings, syncs a fresh node (a child process) from 1 and 3 seeders, \
    with a 10x slower seeder and with a lying seeder, then measures tip latency in a local \
    network. Everything binds 127.0.0.1. Prints a Markdown table and writes JSON. \
    See BENCHMARKS.md for the definition of every figure."
)]
struct Cli {
    #[command(subcommand)]
    child: Option<Child>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand, Debug)]
enum Child {
    /// Internal: the syncing node of one scenario (prints one JSON line).
    #[command(name = SYNC_CHILD, hide = true)]
    SyncChild(SyncChildArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// A few thousand blocks and a 3-node tip test: for CI, well under a minute.
    #[arg(long)]
    quick: bool,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH", default_value = "target/bench.json")]
    out: PathBuf,
    /// Cache of generated chains, keyed by their parameters.
    #[arg(long, value_name = "DIR", default_value = "target/bench-chains")]
    chains_dir: PathBuf,
    /// Repetitions, interleaved (each: the chain's ceilings, then its
    /// scenarios); figures are reported as median (min–max). Default 3, 1
    /// with --quick.
    #[arg(long, value_name = "N")]
    reps: Option<usize>,
    /// Run only the scenario with this label (repeatable), e.g. "3 seeders".
    #[arg(long, value_name = "LABEL")]
    only: Vec<String>,
    /// Scratch directory (removed at the end).
    #[arg(long, value_name = "DIR", default_value = "target/bench-work")]
    work_dir: PathBuf,
}

#[derive(Args, Debug)]
struct SyncChildArgs {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    bootstrap: Vec<String>,
    #[arg(long)]
    height: u64,
    #[arg(long)]
    tip: String,
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.child {
        Some(Child::SyncChild(args)) => sync_child(args),
        None => bench(cli.bench),
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let opts = run::BenchOptions {
        quick: args.quick,
        chains_dir: args.chains_dir,
        work_dir: args.work_dir,
        exe: std::env::current_exe().context("cannot find the concord-bench binary")?,
        reps: args.reps.unwrap_or(if args.quick { 1 } else { 3 }),
        only: args.only,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run::run(&opts))?;
    print!("{}", report::table(&report));
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("bench: JSON report written to {}", args.out.display());
    Ok(())
}

fn sync_child(args: SyncChildArgs) -> anyhow::Result<()> {
    let bootstrap = args
        .bootstrap
        .iter()
        .map(|a| a.parse())
        .collect::<Result<Vec<_>, _>>()?;
    let report = child::run(child::ChildArgs {
        data_dir: args.data_dir,
        bootstrap,
        height: args.height,
        tip: concord::chain::Hash::from_hex(&args.tip)?,
        timeout: Duration::from_secs(args.timeout_secs),
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
