//! The `status` subcommand: asks a running node's HTTP API for `/status`
//! and prints a summary (or the raw JSON).
//!
//! Must not know anything about the node beyond the documented JSON fields
//! of `/status`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::http;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Address of the node's HTTP API (`concord run --api`).
    #[arg(long, value_name = "ADDR", default_value = concord::api::DEFAULT_API_ADDR)]
    pub api: String,
    /// Print the raw JSON of `/status` instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let addr = http::parse_api(&args.api)?;
    let body = http::request(addr, "GET", "/status")?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: Value =
        serde_json::from_str(&body).with_context(|| format!("node at {addr} sent invalid JSON"))?;
    print!("{}", summary(&v));
    Ok(ExitCode::SUCCESS)
}

fn summary(v: &Value) -> String {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let num = |k: &str| v.get(k).and_then(Value::as_u64);
    let height = num("height").map_or("?".into(), |h| h.to_string());
    let target = num("target").map_or("unknown".into(), |t| t.to_string());
    let state = if v.get("syncing").and_then(Value::as_bool).unwrap_or(false) {
        "syncing"
    } else {
        "synced"
    };
    let mut out = String::new();
    out.push_str(&format!("peer id:  {}\n", text("peer_id")));
    out.push_str(&format!("height:   {height} / target {target} ({state})\n"));
    out.push_str(&format!(
        "peers:    {}\n",
        num("peers").map_or("?".into(), |p| p.to_string())
    ));
    out.push_str(&format!("tip:      {}\n", text("tip")));
    if let Some(mode) = v
        .get("mode")
        .and_then(Value::as_str)
        .filter(|m| *m != "normal")
    {
        out.push_str(&format!("mode:     {mode}\n"));
    }
    if let Some(reason) = v.get("stalled").and_then(Value::as_str) {
        out.push_str(&format!("stalled:  {reason}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_essentials() {
        let v: Value = serde_json::json!({
            "peer_id": "12D3KooWabc", "height": 5, "target": 9, "syncing": true,
            "peers": 2, "tip": "ab12", "stalled": null
        });
        let s = summary(&v);
        assert!(s.contains("12D3KooWabc"), "{s}");
        assert!(s.contains("5 / target 9 (syncing)"), "{s}");
        assert!(s.contains("peers:    2"), "{s}");
        assert!(s.contains("ab12"), "{s}");
    }
}
