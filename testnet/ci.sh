#!/usr/bin/env bash
# CI hook for the testnet runner: builds the node and the runner, runs the
# testnet crate's tests and the `quick` manifest in loopback placement, and
# fails when any assertion fails. Called from the repository root or anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== testnet: cargo build (node and runner)"
cargo build -p concord -p concord-testnet
echo "== testnet: cargo test -p concord-testnet"
cargo test -p concord-testnet
out="${TESTNET_OUT:-target/testnet-quick}"
echo "== testnet: quick manifest, loopback placement (results in $out)"
./target/debug/concord testnet run testnet/manifests/quick.toml --out "$out"
echo "== testnet: namespace placement SKIPPED: not implemented yet (phase 2 of the testnet issue)"
