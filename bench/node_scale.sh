#!/usr/bin/env bash
# Node RSS at chain length N (issue 15: "node RSS while serving and while
# syncing <= 256 MiB" at 10 M small blocks). Two real `concord run` processes
# on 127.0.0.1: a seeder holding N signed blocks and a fresh follower that
# syncs all of them from it. Every second it samples both processes' VmRSS
# (and VmHWM at the end) from /proc and the follower's height from its API,
# and prints the follower's sync rate per million blocks, so the rate at the
# last million can be set against the first.
#
#   cargo build --release --bin concord
#   bench/node_scale.sh WORKDIR [BLOCKS]      # default 10000000
#
# WORKDIR/seed is generated once (`concord generate`, 256-byte bodies,
# signed, about 10 min and 4.6 GB at 10 M) and reused; WORKDIR/sync is made
# fresh every run. Samples go to WORKDIR/samples.tsv. Nothing listens beyond
# 127.0.0.1; no mDNS.
set -euo pipefail

work=${1:?usage: bench/node_scale.sh WORKDIR [BLOCKS]}
blocks=${2:-10000000}
bin=${CONCORD_BIN:-target/release/concord}
seed_port=7601 sync_port=7602 seed_api=127.0.0.1:7681 sync_api=127.0.0.1:7682

[ -x "$bin" ] || { echo "no $bin: cargo build --release --bin concord" >&2; exit 2; }
mkdir -p "$work"
if [ "$(cat "$work/seed.height" 2>/dev/null)" != "$blocks" ]; then
    rm -rf "$work/seed"
    echo "generating $blocks signed blocks into $work/seed"
    start=$(date +%s)
    "$bin" generate --data-dir "$work/seed" --blocks "$blocks"
    echo "generated in $(( $(date +%s) - start )) s"
    echo "$blocks" > "$work/seed.height"
fi
rm -rf "$work/sync"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

seed_id=$("$bin" key --data-dir "$work/seed")
"$bin" run --data-dir "$work/seed" --listen "/ip4/127.0.0.1/tcp/$seed_port" \
    --api "$seed_api" > "$work/seed.log" 2>&1 &
pids+=($!); seed_pid=$!
# Wait for the seeder's API before the follower dials it.
for _ in $(seq 1 300); do
    curl -sf "http://$seed_api/status" >/dev/null && break
    sleep 0.1
done
curl -sf "http://$seed_api/status" >/dev/null || { echo "seeder API never came up; see $work/seed.log" >&2; exit 1; }

"$bin" run --data-dir "$work/sync" --listen "/ip4/127.0.0.1/tcp/$sync_port" \
    --api "$sync_api" --bootstrap "/ip4/127.0.0.1/tcp/$seed_port/p2p/$seed_id" \
    > "$work/sync.log" 2>&1 &
pids+=($!); sync_pid=$!

kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
height() { curl -sf "http://$sync_api/status" | jq -r '.height // 0' 2>/dev/null || echo 0; }

printf 't_s\theight\tseed_rss_kib\tsync_rss_kib\n' > "$work/samples.tsv"
t0=$(date +%s.%N)
next_mark=1000000 mark_t=$t0 mark_h=0
echo "syncing $blocks blocks; per million: rate, RSS seeder / follower"
while :; do
    h=$(height); now=$(date +%s.%N)
    t=$(echo "$now - $t0" | bc)
    printf '%.1f\t%s\t%s\t%s\n' "$t" "$h" "$(kib $seed_pid VmRSS)" "$(kib $sync_pid VmRSS)" >> "$work/samples.tsv"
    while [ "$h" -ge "$next_mark" ] && [ "$next_mark" -le "$blocks" ]; do
        rate=$(echo "($h - $mark_h) / ($now - $mark_t)" | bc)
        echo "  #$mark_h..#$h: $rate blocks/s; RSS $(( $(kib $seed_pid VmRSS) / 1024 )) / $(( $(kib $sync_pid VmRSS) / 1024 )) MiB"
        mark_h=$h mark_t=$now next_mark=$(( next_mark + 1000000 ))
    done
    [ "$h" -ge "$blocks" ] && break
    kill -0 "$sync_pid" 2>/dev/null || { echo "follower exited; see $work/sync.log" >&2; exit 1; }
    sleep 1   # sampling period, not synchronization
done
total=$(echo "$(date +%s.%N) - $t0" | bc)
echo "synced #$blocks in ${total%.*} s"
echo "peak RSS (VmHWM): seeder $(( $(kib $seed_pid VmHWM) / 1024 )) MiB, follower $(( $(kib $sync_pid VmHWM) / 1024 )) MiB"
