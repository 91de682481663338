#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ once, then runs them one after the
# other at the lowest CPU priority and prints executions and coverage per
# target (the figures in fuzz/RESULTS.md).
#
#   scripts/fuzz.sh                 # every target, 10 minutes each
#   scripts/fuzz.sh 60 masking      # one target, one minute
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Seeds come from fuzz/corpus/<target> (committed; scripts/capture-corpus.sh
# regenerates them); what libFuzzer finds goes to fuzz/run/<target>, crashes
# to fuzz/artifacts/<target>/, full logs to fuzz/logs/<target>.log (none of
# them in git). Each run is what `cargo fuzz run <target> run/<target>
# corpus/<target> -- <flags>` does, without cargo re-checking the build
# between targets.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  targets=(frontend masking backend token sql_analyze)
fi
nice -n 10 cargo +nightly fuzz build
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "run/$t" "artifacts/$t"
  status=0
  nice -n 19 "$bin/$t" "run/$t" "corpus/$t" \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1 || status=$?
  runs=$(awk '/^stat::number_of_executed_units/ {print $2}' "logs/$t.log")
  last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1 || true)
  echo "$t: exit $status, ${runs:-?} executions; ${last}"
done
