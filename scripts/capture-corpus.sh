#!/usr/bin/env bash
# Regenerates the fuzz seed corpora (fuzz/corpus/<target>/) from real client
# traffic: psql, pgbench, tokio-postgres and psycopg against a throwaway
# PostgreSQL with the example database, recorded by a loopback relay and
# cut into the inputs of each target (see integration/src/bin/capture_corpus.rs).
# Needs the PostgreSQL 15 server binaries, psql, pgbench and python3 with
# psycopg 3 (scripts/ensure-deps.sh installs the PostgreSQL parts).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each run records new sessions (fresh SCRAM nonces, process ids, dates), so
# the corpus is replaced rather than added to.
out=fuzz/corpus
rm -rf "$out"
mkdir -p "$out"
cargo run -q -p integration --bin capture_corpus -- "$out"
