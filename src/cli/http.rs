//! The one HTTP client the CLI needs: a single HTTP/1.1 request to a local
//! node's API over a `TcpStream` (`Connection: close`), for `status` and
//! `reset`. No HTTP client dependency for a handful of calls; must not know
//! what the endpoints mean.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Our answers are well under this; anything larger is not our node.
const MAX_RESPONSE: u64 = 1024 * 1024;

/// `--api` as a socket address, or a one-line error naming the flag.
pub fn parse_api(api: &str) -> anyhow::Result<SocketAddr> {
    api.parse()
        .map_err(|e| anyhow!("invalid --api {api:?}: {e} (expected IP:PORT)"))
}

/// Sends `method path` with an empty body; the body of a 2xx answer, an error
/// (with the node's own message) otherwise.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, exchange(addr, method, path)).await })
        .map_err(|_| anyhow!("node at {addr} did not answer within {TIMEOUT:?}"))?
}

async fn exchange(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await.with_context(|| {
        format!("cannot reach the node API at {addr} (is `concord run` running with --api {addr}?)")
    })?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
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
    if !code.starts_with('2') {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn a_bad_api_address_names_the_flag() {
        let e = parse_api("localhost").unwrap_err().to_string();
        assert!(e.starts_with("invalid --api \"localhost\""), "{e}");
    }
}
