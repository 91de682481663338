#!/usr/bin/env bash
# The one test command for Palisade (CI runs it through .ci/run).
#
#   scripts/test.sh            everything: deps, fmt, buf lint, clippy, build, tests, policy checks
#   scripts/test.sh --quick    skip the fmt check and clippy
#   scripts/test.sh --no-deps  do not run scripts/ensure-deps.sh first
#
# Steps, in order (the first failure stops the run):
#   deps      scripts/ensure-deps.sh (installs libclang-dev, PostgreSQL, psql, psycopg, buf)
#   fmt       cargo fmt --all -- --check
#   buf-lint  buf lint                      (when buf is in .tools/ or on PATH)
#   clippy    cargo clippy --workspace --all-targets -- -D warnings
#   build     cargo build --workspace --bins (integration tests spawn the binaries)
#   test      cargo nextest run --workspace + cargo test --workspace --doc
#             (cargo test --workspace when cargo-nextest is not installed)
#   policies  palisade policy validate policies && palisade policy test policies
# A timing line is printed after each step and a summary at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
deps=1
for arg in "$@"; do
    case "$arg" in
    --quick) quick=1 ;;
    --no-deps) deps=0 ;;
    -h | --help)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "test.sh: unknown option: $arg (see --help)" >&2
        exit 2
        ;;
    esac
done

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
target_dir="${CARGO_TARGET_DIR:-target}"

run_started=$(date +%s)
summary=()

# step NAME COMMAND...: runs the command, prints a timing line, stops the run on failure.
step() {
    local name=$1
    shift
    local started rc elapsed
    started=$(date +%s)
    echo "==> [$name] $*"
    if "$@"; then
        rc=0
    else
        rc=$?
    fi
    elapsed=$(($(date +%s) - started))
    if [ "$rc" -eq 0 ]; then
        echo "==> [$name] ok in ${elapsed}s"
        summary+=("$(printf '%-9s ok      %5ss' "$name" "$elapsed")")
    else
        echo "==> [$name] FAILED (exit $rc) in ${elapsed}s"
        summary+=("$(printf '%-9s FAILED  %5ss' "$name" "$elapsed")")
        print_summary
        exit "$rc"
    fi
}

skip() { # name reason
    echo "==> [$1] skipped: $2"
    summary+=("$(printf '%-9s skipped        (%s)' "$1" "$2")")
}

print_summary() {
    echo "==> summary (total $(($(date +%s) - run_started))s)"
    local line
    for line in "${summary[@]}"; do
        echo "    $line"
    done
}

if [ "$deps" -eq 1 ]; then
    step deps bash scripts/ensure-deps.sh
else
    skip deps "--no-deps"
fi

if [ "$quick" -eq 0 ]; then
    step fmt cargo fmt --all -- --check
else
    skip fmt "--quick"
fi

buf_bin=""
if [ -x .tools/node_modules/.bin/buf ]; then
    buf_bin=.tools/node_modules/.bin/buf
elif command -v buf >/dev/null 2>&1; then
    buf_bin=$(command -v buf)
fi
if [ -n "$buf_bin" ]; then
    step buf-lint "$buf_bin" lint
else
    skip buf-lint "buf not installed (scripts/ensure-deps.sh installs it with npm)"
fi

if [ "$quick" -eq 0 ]; then
    step clippy cargo clippy --workspace --all-targets -- -D warnings
else
    skip clippy "--quick"
fi

step build cargo build --workspace --bins

if cargo nextest --version >/dev/null 2>&1; then
    step test cargo nextest run --workspace
    step doctest cargo test --workspace --doc
else
    step test cargo test --workspace
fi

palisade="$target_dir/debug/palisade"
policy_checks() {
    "$palisade" policy validate policies && "$palisade" policy test policies
}
step policies policy_checks

print_summary
