#!/usr/bin/env bash
# CI hook for the testnet runner: builds the node (with the `testnet`
# feature: the runner's hidden hooks) and the runner, runs the testnet
# crate's tests and the `quick` manifest in loopback placement, then in the
# namespaces placement where `ip netns` works (it says plainly when it
# skips), and fails when any assertion fails. Called from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== testnet: cargo build (node with --features testnet, and the runner)"
cargo build -p concord --features testnet -p concord-testnet
echo "== testnet: cargo test -p concord-testnet"
cargo test -p concord-testnet
out="${TESTNET_OUT:-target/testnet-quick}"
echo "== testnet: quick manifest, loopback placement (results in $out)"
./target/debug/concord testnet run testnet/manifests/quick.toml --out "$out"

probe="ctn-ci-probe-$$"
if ip netns add "$probe" 2>/dev/null && ip -n "$probe" link set lo up 2>/dev/null; then
    ip netns del "$probe"
    echo "== testnet: quick manifest, namespaces placement (results in $out-ns)"
    ./target/debug/concord testnet run testnet/manifests/quick.toml --out "$out-ns" --placement namespaces
else
    ip netns del "$probe" 2>/dev/null || true
    echo "== testnet: namespaces placement SKIPPED: \`ip netns add\` does not work here (needs root and iproute2)"
fi
