#!/usr/bin/env bash
# Brings up the whole stack locally: a throwaway PostgreSQL with the example
# database, the PDP with ./policies and an agent, and prints how to connect.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/ensure-deps.sh --no-buf
exec cargo run -q -p integration --bin palisade-demo
