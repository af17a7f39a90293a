//! Operator recovery: `concord reset` (asks a running node to drop its sync
//! work and, out of a halt, follow the majority once), `concord rollback`
//! (cuts a stopped node's chain back to a height, for when a restart would
//! halt again on the same too-deep fork) and `concord check` (verifies a
//! stopped node's store; repairs it by rolling back below the first damaged
//! block, or rebuilds its index from `blocks.dat`).
//!
//! Only wires library calls and the API together; what a reset or a rollback
//! does is the sync engine's and the store's business.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use concord::chain::Genesis;
use concord::store::{check::CheckReport, set_index_aside, Store};

use super::http;

#[derive(Args, Debug)]
#[command(
    long_about = "Ask a running node to reset its sync (POST /sync/reset).\n\n\
    The node drops every download and vote in flight and checks its tip with its peers \
    again. A node halted because the majority's chain forks from ours deeper than \
    max_reorg_depth follows the majority once: inspect first (`concord status`, GET /peers), \
    then reset. Exit 0 when the node accepted the request."
)]
pub struct ResetArgs {
    /// Address of the node's HTTP API (`concord run --api`).
    #[arg(long, value_name = "ADDR", default_value = concord::api::DEFAULT_API_ADDR)]
    pub api: String,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Cut a stopped node's chain back to HEIGHT (offline).\n\n\
    Every block above HEIGHT is removed from the data dir and the block at HEIGHT becomes \
    the tip; at the next start the node syncs forward from there with its peers. Use it \
    when a node halts at every start on a fork deeper than max_reorg_depth and you have \
    decided the majority is right: roll back below the fork height the halt names. \
    The node must be stopped (the data dir is locked while it runs). The genesis block \
    cannot be removed."
)]
pub struct RollbackArgs {
    /// Data dir of the node.
    #[arg(long, value_name = "DIR", default_value = "./concord-data")]
    pub data_dir: PathBuf,
    /// `dev` for the built-in dev network, or the path of the genesis TOML file the node runs.
    #[arg(long, value_name = "dev|PATH", default_value = "dev")]
    pub genesis: String,
    /// The height that becomes the tip (0 keeps only the genesis block).
    #[arg(long, value_name = "HEIGHT")]
    pub to: u64,
}

#[derive(Args, Debug)]
#[command(
    long_about = "Verify every block of a stopped node's store (offline).\n\n\
    Each block from genesis to the tip is read back and checked as sync validates blocks: \
    its checksum, encoding and hash, the link to its parent, its slot, body hash and \
    signature. Exit 0 with a summary when all pass; exit 1 naming the first bad height \
    otherwise. With --repair, the chain is rolled back to below the first bad block \
    (as `concord rollback` does) and the node fetches the rest again from its peers at \
    the next start. With --rebuild-index, sled's files are moved aside into \
    index-damaged-<time>/ in the data dir and the index is rebuilt from blocks.dat \
    (every block validated again) before the check; use it when the node says its \
    index is damaged. The node must be stopped (the data dir is locked while it runs)."
)]
pub struct CheckArgs {
    /// Data dir of the node.
    #[arg(long, value_name = "DIR", default_value = "./concord-data")]
    pub data_dir: PathBuf,
    /// `dev` for the built-in dev network, or the path of the genesis TOML file the node runs.
    #[arg(long, value_name = "dev|PATH", default_value = "dev")]
    pub genesis: String,
    /// Roll back to below the first bad block, if any.
    #[arg(long)]
    pub repair: bool,
    /// Rebuild the index (sled's files) from blocks.dat first.
    #[arg(long)]
    pub rebuild_index: bool,
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let genesis = Genesis::resolve(&args.genesis)?;
    let dir = &args.data_dir;
    if !dir.join("blocks.dat").is_file() {
        bail!("{} holds no store (no blocks.dat)", dir.display());
    }
    if args.rebuild_index {
        match set_index_aside(dir).context("cannot move the index aside")? {
            Some(aside) => println!("moved the old index to {}", aside.display()),
            None => println!("no index files found; building one"),
        }
    }
    let store = Store::open(dir, &genesis)
        .with_context(|| format!("cannot open data dir {}", dir.display()))?;
    let tip = store.tip();
    println!("checking #0..=#{} in {}", tip.height, dir.display());
    let report = store
        .check(&genesis, |_| {})
        .context("cannot read the store")?;
    let CheckReport {
        good,
        bytes,
        first_bad,
        ..
    } = report;
    let Some(bad) = first_bad else {
        println!(
            "ok: {good} blocks ({bytes} bytes) checked, tip #{} {}",
            tip.height, tip.hash
        );
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "damaged: first bad block at height {}: it {}",
        bad.height, bad.reason
    );
    if bad.height == 0 {
        println!("the genesis block itself is damaged: move the data dir away and sync a new one");
        return Ok(ExitCode::FAILURE);
    }
    let below = bad.height - 1;
    if !args.repair {
        println!(
            "repair: `concord check --data-dir {} --repair` rolls back to #{below}; the node \
             fetches the blocks above it again from its peers",
            dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let after = store.rollback_to(below).context("cannot roll back")?;
    store.flush().context("cannot flush the store")?;
    println!(
        "repaired: rolled back {} blocks, tip is now #{} {}; start the node to fetch the rest from peers",
        tip.height - after.height,
        after.height,
        after.hash
    );
    Ok(ExitCode::SUCCESS)
}

pub fn reset(args: ResetArgs) -> anyhow::Result<ExitCode> {
    let addr = http::parse_api(&args.api)?;
    let body = http::request(addr, "POST", "/sync/reset")?;
    let status = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    println!("node at {addr}: {status}");
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let genesis = Genesis::resolve(&args.genesis)?;
    if !args.data_dir.is_dir() {
        // Store::open would create an empty chain here, which is never what a
        // rollback of an existing node means.
        bail!("data dir {} does not exist", args.data_dir.display());
    }
    let store = Store::open(&args.data_dir, &genesis)
        .with_context(|| format!("cannot open data dir {}", args.data_dir.display()))?;
    let before = store.tip();
    if args.to > before.height {
        bail!(
            "--to {} is above the tip: data dir {} holds blocks up to #{}",
            args.to,
            args.data_dir.display(),
            before.height
        );
    }
    let after = store.rollback_to(args.to).context("cannot roll back")?;
    store.flush().context("cannot flush the store")?;
    println!(
        "rolled back {} blocks: tip was #{} {}, now #{} {}",
        before.height - after.height,
        before.height,
        before.hash,
        after.height,
        after.hash
    );
    Ok(ExitCode::SUCCESS)
}
