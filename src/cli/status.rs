//! The `status` subcommand: asks a running node's HTTP API for `/status`
//! and prints a summary (or the raw JSON).
//!
//! A minimal HTTP/1.1 GET over a `TcpStream` (one request, `Connection:
//! close`): no HTTP client dependency for one call. Must not know anything
//! about the node beyond the documented JSON fields of `/status`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Address of the node's HTTP API (`concord run --api`).
    #[arg(long, value_name = "ADDR", default_value = concord::api::DEFAULT_API_ADDR)]
    pub api: String,
    /// Print the raw JSON of `/status` instead of the summary.
    #[arg(long)]
    pub json: bool,
}

const TIMEOUT: Duration = Duration::from_secs(5);
/// `/status` is well under this; anything larger is not our node.
const MAX_RESPONSE: u64 = 1024 * 1024;

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let addr: SocketAddr = args
        .api
        .parse()
        .map_err(|e| anyhow!("invalid --api {:?}: {e} (expected IP:PORT)", args.api))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, http_get(addr, "/status")).await })
        .map_err(|_| anyhow!("node at {addr} did not answer within {TIMEOUT:?}"))??;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: Value =
        serde_json::from_str(&body).with_context(|| format!("node at {addr} sent invalid JSON"))?;
    print!("{}", summary(&v));
    Ok(ExitCode::SUCCESS)
}

/// GET `path`; the body of a 200 answer, an error otherwise.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await.with_context(|| {
        format!("cannot reach the node API at {addr} (is `concord run` running with --api {addr}?)")
    })?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .with_context(|| format!("cannot send the request to {addr}"))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .with_context(|| format!("cannot read the answer from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("node at {addr} sent an incomplete HTTP answer");
    };
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        bail!("node at {addr} answered {status_line:?}: {}", body.trim());
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// Decodes a chunked body (best effort; hyper sends Content-Length for JSON).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
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

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
