//! Operator recovery: `concord reset` (asks a running node to drop its sync
//! work and, out of a halt, follow the majority once) and `concord rollback`
//! (cuts a stopped node's chain back to a height, for when a restart would
//! halt again on the same too-deep fork).
//!
//! Only wires library calls and the API together; what a reset or a rollback
//! does is the sync engine's and the store's business.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use concord::chain::Genesis;
use concord::store::Store;

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
