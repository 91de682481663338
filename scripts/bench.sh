#!/usr/bin/env bash
# The benchmark of issue 8: the agent and the PDP measured on this machine
# against direct PostgreSQL and pgbouncer (see README.md, "Benchmarks").
#
# Installs what it needs (PostgreSQL, pgbouncer), builds the release agent and
# PDP, and runs integration/src/bin/bench.rs. Arguments go to the benchmark:
#
#   scripts/bench.sh                          # 2 rounds of 15 s per run, all sections (~15 min)
#   scripts/bench.sh --rounds 1 --seconds 3   # a quick look
#   scripts/bench.sh --only rpc               # only the Decide RPC benchmark
#   scripts/bench.sh --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-deps.sh --with-pgbouncer --no-python --no-buf

# 1,000 idle connections mean ~1,000 sockets in the benchmark, ~2,000 in the
# agent and 1,000 PostgreSQL backends: raise the soft descriptor limit (the
# agent inherits it) as far as the hard limit allows.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -Sn "$hard" 2>/dev/null || true

cargo build --release -p palisade-agent -p palisade-pdp
exec cargo run --release -p integration --bin bench -- "$@"
