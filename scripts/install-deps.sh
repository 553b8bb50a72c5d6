#!/usr/bin/env bash
# Installs the system programs flashgate's tests and benchmarks run: redis-server (+ redis-cli),
# PostgreSQL and wrk, from Debian packages. Idempotent: does nothing when all are present, and
# runs `apt-get update` once only when something is missing. Tests use plain `cargo test`, so
# no cargo-nextest (or other cargo plugin) is needed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Succeeds when PostgreSQL's initdb exists (Debian keeps it out of PATH, per major version).
have_postgres() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null
}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
have_postgres || missing+=(postgresql)
command -v wrk >/dev/null || missing+=(wrk)

if ((${#missing[@]} == 0)); then
    echo "install-deps: redis-server, redis-cli, postgresql and wrk are already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "install-deps: missing ${missing[*]}, and apt-get is not available; install them by hand" >&2
    exit 1
fi

as_root=()
if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
        echo "install-deps: installing ${missing[*]} needs root; rerun as root (no sudo found)" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]} needs root; using sudo"
    as_root=(sudo --preserve-env=DEBIAN_FRONTEND)
fi

echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y "${missing[@]}"
