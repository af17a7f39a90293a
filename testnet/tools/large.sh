#!/usr/bin/env bash
# Writes a `large` manifest with N nodes (3 seeders with 1,000 blocks, a
# producer, N-4 followers each bootstrapped to a seeder and one earlier
# follower) to stdout: `testnet/tools/large.sh 40 > /tmp/large40.toml`.
# testnet/manifests/large.toml is its output for the largest N measured here.
set -euo pipefail
n="${1:?usage: large.sh NODES}"
cat <<HEAD
# large: $n nodes on loopback (written by testnet/tools/large.sh $n): three
# seeders with 1,000 pre-generated blocks, a producer, $((n - 4)) followers
# started 0.25 s apart, each bootstrapped to a seeder and an earlier follower.
# The producer is stopped at 70 s so the tips can agree (with a block a
# second, $n tips read one after another rarely name the same block); then
# every running node must hold the same chain. See testnet/README.md for
# what 2 cores carried.

[network]
genesis = "dev"
seed = 0
block_size = 256

[run]
duration = "80s"
settle = "30s"
log = "warn"

[[node]]
name = "seed1"
role = "seeder"
blocks = 1000

[[node]]
name = "seed2"
role = "seeder"
blocks = 1000
bootstrap = ["seed1"]

[[node]]
name = "seed3"
role = "seeder"
blocks = 1000
bootstrap = ["seed1"]

[[node]]
name = "producer"
role = "producer"
bootstrap = ["seed1", "seed2"]
HEAD
for i in $(seq 1 $((n - 4))); do
    seeder="seed$(( (i % 3) + 1 ))"
    boot="\"$seeder\""
    if [ "$i" -gt 1 ]; then boot="$boot, \"f$(( (i * 7) % (i - 1) + 1 ))\""; fi
    printf '\n[[node]]\nname = "f%d"\nrole = "follower"\nstart_after = "%d.%02ds"\nbootstrap = [%s]\n' \
        "$i" $(( i / 4 )) $(( (i % 4) * 25 )) "$boot"
done
cat <<TAIL

[[timeline]]
at = "70s"
action = "stop"
node = "producer"

[[assert]]
kind = "height"
at_least = 1000
within = "60s"

[[assert]]
kind = "same_chain"
min_height = 1000

[[assert]]
kind = "no_honest_banned"

[[assert]]
kind = "no_crash"
TAIL
