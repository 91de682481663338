#!/usr/bin/env bash
# Installs what building and testing Palisade needs, when it is missing. Idempotent: a second run
# installs nothing and only reports. Debian/Ubuntu (apt-get); as root, or with sudo.
#
#   libclang-dev        pg_query's build script runs bindgen, which loads libclang
#   postgresql server   initdb/pg_ctl/postgres: integration tests start throwaway clusters
#   postgresql-client   psql
#   psycopg (Python)    driver tests connect through the agent with a real Python driver
#   buf                 `buf lint` of proto/, from npm into ./.tools (skipped without npm)
#   OS user palisade-test  when root: initdb/postgres refuse to run as root, so the tests run
#                       the server as this unprivileged account (integration/src/postgres.rs)
#   pgbouncer           only with --with-pgbouncer (benchmarks)
#
# Prints one line per dependency: present / installed / skipped / MISSING. Exits non-zero when
# something required is missing and cannot be installed.
#
# Usage: scripts/ensure-deps.sh [--with-pgbouncer] [--no-python] [--no-buf]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUF_VERSION=1.75.0
PG_VERSION_PREFERRED=15

with_pgbouncer=0
with_python=1
with_buf=1
for arg in "$@"; do
    case "$arg" in
    --with-pgbouncer) with_pgbouncer=1 ;;
    --no-python) with_python=0 ;;
    --no-buf) with_buf=0 ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "ensure-deps: unknown option: $arg (see --help)" >&2
        exit 2
        ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive

failed=0
report() { # name status [detail]
    printf 'ensure-deps: %-18s %s%s\n' "$1" "$2" "${3:+ ($3)}"
}
fail() { # name message
    report "$1" "MISSING" "$2"
    failed=1
}

# --- privileges ------------------------------------------------------------------------------
SUDO=()
can_install=1
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        can_install=0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    can_install=0
fi

apt_updated=0
apt_update() {
    if [ "$can_install" -ne 1 ]; then
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        echo "ensure-deps: apt-get update" >&2
        "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 || return 1
        apt_updated=1
    fi
}
apt_install() { # packages...
    if [ "$can_install" -ne 1 ]; then
        echo "ensure-deps: cannot install $* (needs apt-get, and root or sudo)" >&2
        return 1
    fi
    apt_update || return 1
    echo "ensure-deps: apt-get install $*" >&2
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >&2
}

# Whether apt has an installable version of a package (call apt_update first).
apt_has() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

# --- libclang --------------------------------------------------------------------------------
# bindgen needs the shared library and clang's builtin headers (stddef.h ...): the runtime
# package libclang1-N alone is not enough, libclang-dev brings both.
find_libclang() {
    local f lib="" headers=""
    for f in ${LIBCLANG_PATH:+"$LIBCLANG_PATH"/libclang*.so*} \
        /usr/lib/llvm-*/lib/libclang.so /usr/lib/llvm-*/lib/libclang-*.so \
        /usr/lib/*-linux-gnu/libclang.so /usr/lib/*-linux-gnu/libclang-*.so; do
        [ -e "$f" ] && { lib=$f; break; }
    done
    for f in /usr/lib/llvm-*/lib/clang/*/include/stddef.h /usr/lib/clang/*/include/stddef.h; do
        [ -e "$f" ] && { headers=$f; break; }
    done
    [ -n "$lib" ] && [ -n "$headers" ] && echo "$lib"
}
if path=$(find_libclang); then
    report libclang present "$path"
elif apt_install libclang-dev && path=$(find_libclang); then
    report libclang installed "$path"
else
    fail libclang "apt-get install libclang-dev, or set LIBCLANG_PATH"
fi

# --- PostgreSQL server -----------------------------------------------------------------------
find_initdb() {
    local f
    if [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ]; then
        echo "$PG_BIN_DIR/initdb"
        return 0
    fi
    # Newest version first.
    for f in $(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -t/ -k5,5 -n -r); do
        [ -x "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}
if path=$(find_initdb); then
    report postgresql present "$path"
else
    # Installing the server package on Debian creates and starts a "main" cluster on port 5432
    # unless told not to; the tests make their own clusters, so don't.
    if [ "$can_install" -eq 1 ] && [ ! -e /etc/postgresql-common/createcluster.d/palisade.conf ]; then
        "${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" |
            "${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/palisade.conf >/dev/null
    fi
    pg_pkg=postgresql
    if apt_update && apt_has "postgresql-$PG_VERSION_PREFERRED"; then
        pg_pkg="postgresql-$PG_VERSION_PREFERRED"
    fi
    if apt_install "$pg_pkg" && path=$(find_initdb); then
        report postgresql installed "$pg_pkg: $path"
    else
        fail postgresql "apt-get install postgresql-$PG_VERSION_PREFERRED (or postgresql), or set PG_BIN_DIR"
    fi
fi

# --- psql ------------------------------------------------------------------------------------
if path=$(command -v psql); then
    report psql present "$path"
elif apt_install postgresql-client && path=$(command -v psql); then
    report psql installed "$path"
else
    fail psql "apt-get install postgresql-client"
fi

# --- pgbouncer (benchmarks only) -------------------------------------------------------------
find_pgbouncer() {
    command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }
}
if path=$(find_pgbouncer); then
    report pgbouncer present "$path"
elif [ "$with_pgbouncer" -eq 0 ]; then
    report pgbouncer skipped "only with --with-pgbouncer"
elif apt_install pgbouncer && path=$(find_pgbouncer); then
    report pgbouncer installed "$path"
else
    fail pgbouncer "apt-get install pgbouncer"
fi

# --- Python psycopg --------------------------------------------------------------------------
if [ "$with_python" -eq 0 ]; then
    report psycopg skipped "--no-python"
else
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-pip || true
    fi
    psycopg_version() { python3 -c 'import psycopg; print(psycopg.__version__)' 2>/dev/null; }
    if ! command -v python3 >/dev/null 2>&1; then
        fail psycopg "python3 not found and could not be installed"
    elif v=$(psycopg_version); then
        report psycopg present "psycopg $v, $(command -v python3)"
    else
        # pip first (works for pyenv and virtualenv Pythons); Debian's own python3 refuses pip
        # installs (PEP 668), so fall back to its package.
        if python3 -m pip install --quiet 'psycopg[binary]' >&2 || apt_install python3-psycopg; then :; fi
        if v=$(psycopg_version); then
            report psycopg installed "psycopg $v, $(command -v python3)"
        else
            fail psycopg "python3 -m pip install 'psycopg[binary]'"
        fi
    fi
fi

# --- buf (proto lint) ------------------------------------------------------------------------
buf_bin=.tools/node_modules/.bin/buf
# .tools/ holds installed tools only: keep it out of git without touching the root .gitignore.
mkdir -p .tools
[ -e .tools/.gitignore ] || printf '# installed by scripts/ensure-deps.sh\n*\n' >.tools/.gitignore
if [ "$with_buf" -eq 0 ]; then
    report buf skipped "--no-buf"
elif [ -x "$buf_bin" ] && "$buf_bin" --version >/dev/null 2>&1; then
    report buf present "$("$buf_bin" --version) in $buf_bin"
elif ! command -v npm >/dev/null 2>&1; then
    report buf skipped "WARNING: npm not found, buf lint will not run"
elif npm install --prefix .tools --no-audit --no-fund --silent "@bufbuild/buf@$BUF_VERSION" >&2 &&
    "$buf_bin" --version >/dev/null 2>&1; then
    report buf installed "$("$buf_bin" --version) in $buf_bin"
else
    report buf skipped "WARNING: npm install @bufbuild/buf@$BUF_VERSION failed, buf lint will not run"
fi

# --- OS account for the test server (root only) ----------------------------------------------
os_user=palisade-test
if [ "$(id -u)" -ne 0 ]; then
    report "$os_user" skipped "not root: the tests run PostgreSQL as $(id -un)"
elif getent passwd "$os_user" >/dev/null; then
    report "$os_user" present "uid $(id -u "$os_user")"
else
    group=(--user-group)
    getent group "$os_user" >/dev/null && group=(--gid "$os_user")
    if PATH="$PATH:/usr/sbin:/sbin" useradd --system "${group[@]}" --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin "$os_user"; then
        report "$os_user" installed "uid $(id -u "$os_user")"
    else
        # Not fatal: integration::postgres falls back to "nobody".
        report "$os_user" skipped "WARNING: useradd failed, tests will run PostgreSQL as nobody"
    fi
fi

# --- Rust tools (reported only: no other toolchain can be fetched) ---------------------------
for tool in fmt clippy; do
    if cargo "$tool" --version >/dev/null 2>&1; then
        report "cargo $tool" present "$(cargo "$tool" --version 2>/dev/null)"
    else
        report "cargo $tool" skipped "WARNING: not installed (rustup component add ${tool/fmt/rustfmt})"
    fi
done
if command -v cargo-nextest >/dev/null 2>&1; then
    report cargo-nextest present "$(cargo-nextest --version 2>/dev/null | head -n1)"
else
    report cargo-nextest skipped "optional: cargo test is used instead"
fi

if [ "$failed" -ne 0 ]; then
    echo "ensure-deps: some required dependencies are missing (see MISSING above)" >&2
    exit 1
fi
echo "ensure-deps: all required dependencies present"
