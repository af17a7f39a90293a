#!/usr/bin/env bash
# Runs fuzz targets one after the other, each for SECS seconds (default 600),
# niced and as one libFuzzer job, and prints one line per target:
# target, seconds, executions, result. Usage: fuzz/run-all.sh [TARGET…]
set -u
cd "$(dirname "$0")"
SECS=${SECS:-600}
TARGETS=${*:-blocks block blocks_wire height genesis_protocol block_hash announce genesis_file config_file}
mkdir -p logs
for t in $TARGETS; do
    mkdir -p "corpus/$t" "logs/$t"
    start=$(date +%s)
    (cd "logs/$t" && RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run --fuzz-dir ../.. -s none -a "$t" \
        "../../corpus/$t" "../../seeds/$t" -- \
        -jobs=1 -workers=1 -max_total_time="$SECS" -max_len=8192 -print_final_stats=1 \
        >"../$t.out" 2>&1)
    rc=$?
    secs=$(( $(date +%s) - start ))
    log="logs/$t/fuzz-0.log"
    execs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "$log" 2>/dev/null | tail -1 | grep -o '[0-9]*$')
    if grep -q 'SUMMARY\|panicked\|==ERROR' "$log" 2>/dev/null; then result="CRASH (see $log)"; else result="no crash (rc $rc)"; fi
    echo "$t ${secs}s ${execs:-?} executions: $result" | tee -a logs/summary.txt
done
