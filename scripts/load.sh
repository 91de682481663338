#!/usr/bin/env bash
# The load test: N concurrent sessions through one agent (a release build,
# its own process) for several minutes of mixed work; see README "Load test".
#
#   scripts/load.sh                         # 500 sessions, 3 minutes
#   scripts/load.sh --sessions 50 --seconds 20
#
# Arguments go to the `load` binary (--sessions, --minutes | --seconds,
# --think-ms, --sample-seconds, --dba-every, --kinds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh >/dev/null 2>&1 || true
cargo build --release -p palisade-agent --bin palisade-agent -p palisade-pdp --bin palisade-pdp -p integration --bin load
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
    args=(--sessions 500 --minutes 3)
fi
exec target/release/load "${args[@]}"
