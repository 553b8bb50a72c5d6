#!/usr/bin/env bash
# The compose `cluster` topology (docker-compose.yml) as local processes on loopback, for
# machines without a Docker engine: a Redis Cluster of MASTERS masters with REPLICAS replicas
# each (append-only file on), PostgreSQL, GATEWAYS flashgate gateways and nginx balancing
# them (passing X-Forwarded-For; the gateways trust it as their proxy). Every port is a free
# loopback one; every file is under the state dir.
#
# Usage: scripts/cluster.sh start|stop|status|env
#   start   starts everything (stops a previous run in the same state dir first) and prints
#           the endpoints as env lines a caller can source (also kept in $CLUSTER_DIR/env)
#   stop    stops every process it started, by pid file (idempotent)
#   status  which processes run, and the cluster's state
#   env     prints the env lines of the running cluster
#
# Environment:
#   CLUSTER_DIR          state dir (target/cluster): logs, data, pid files, the env file
#   MASTERS (3), REPLICAS (1)     Redis Cluster shape (MASTERS 1..16, REPLICAS 0..2)
#   GATEWAYS (2)         gateway processes (1..8)
#   GATEWAY_BIN        the gateway binary (default: target/release/flashgate when it is
#                        newer than target/debug/flashgate, else the debug one; not built here)
#   CLUSTER_NODE_TIMEOUT milliseconds before a silent master is failed over (5000)
#   APPENDFSYNC          redis appendfsync: everysec (default), always or no
#   NGINX_WORKERS (1)    nginx worker processes
#   ADMIN_TOKEN, JWT_SECRET       the gateways' secrets (random when unset)
#   FLASHGATE_*          passed on to every gateway (e.g. FLASHGATE_REDIS__DURABILITY=replica)
#
# The env lines: CLUSTER_URL (the balancer), CLUSTER_GATEWAYS (space-separated URLs),
# CLUSTER_REDIS_NODES (host:port, masters first), CLUSTER_REDIS_URLS (comma-separated
# redis:// URLs), CLUSTER_PG_URL, CLUSTER_ADMIN_TOKEN, CLUSTER_JWT_SECRET, CLUSTER_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_NAME=cluster.sh
STATE=${CLUSTER_DIR:-target/cluster}
MASTERS=${MASTERS:-3}
REPLICAS=${REPLICAS:-1}
GATEWAYS=${GATEWAYS:-2}
CLUSTER_NODE_TIMEOUT=${CLUSTER_NODE_TIMEOUT:-5000}
APPENDFSYNC=${APPENDFSYNC:-everysec}
NGINX_WORKERS=${NGINX_WORKERS:-1}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

# Absolute, so that pid files and the env file hold paths valid from anywhere.
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
tmp=$STATE
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

in_range() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }

# Sets REPLY to a free loopback port P whose cluster bus port P+10000 is free too, both below
# the kernel's ephemeral range (a port in it may be the local end of an outgoing connection,
# which a listener cannot bind though nobody listens on it).
free_cluster_port() {
    local low=32768 high port
    read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    ((low > 20100)) || die "the ephemeral port range starts at $low: no room for P and P+10000 below it"
    for _ in $(seq 1 200); do
        port=$((10000 + RANDOM % (low - 20000)))
        [[ $taken == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
            ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
            taken+="$port "
            REPLY=$port
            return 0
        fi
    done
    die "no free port P with P+10000 free too"
}

# Starts PROGRAM ARGS... in the background as NAME, output to $STATE/NAME.log, pid in
# $STATE/pids/NAME.
spawn() {
    local name=$1
    shift
    "$@" </dev/null >>"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/pids/$name"
}

# The pid of NAME if it runs.
running_pid() {
    local pid
    pid=$(cat "$STATE/pids/$1" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# redis_node NAME: starts a cluster-enabled redis-server on a free port pair (trying again on
# other ports when one was taken meanwhile); sets REPLY to its port.
redis_node() {
    local name=$1 port pid
    mkdir -p "$STATE/$name"
    for _ in 1 2 3 4 5; do
        free_cluster_port
        port=$REPLY
        spawn "$name" redis-server --bind 127.0.0.1 --port "$port" --dir "$STATE/$name" \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout "$CLUSTER_NODE_TIMEOUT" --appendonly yes \
            --appendfsync "$APPENDFSYNC" --auto-aof-rewrite-percentage 400 \
            --stream-node-max-entries 16 --save '' \
            --repl-diskless-sync-delay 0 --protected-mode no --daemonize no
        pid=$(cat "$STATE/pids/$name")
        for _ in $(seq 1 100); do
            # This process, not another one that took the port meanwhile.
            if redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | grep -q "^process_id:$pid"; then
                REPLY=$port
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$STATE/$name"/nodes.conf
    done
    tail -n 20 "$STATE/$name.log" >&2
    die "$name did not start (5 port pairs tried)"
}

# Polls every node until all report cluster_state:ok and know all nodes, and every replica
# is in sync (at most 60 s).
wait_cluster_ok() {
    local port info ok
    for _ in $(seq 1 300); do
        ok=1
        for port in "${redis_ports[@]}"; do
            info=$(redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | tr -d '\r') || info=
            [[ $info == *cluster_state:ok* && $info == *"cluster_known_nodes:${#redis_ports[@]}"* ]] || ok=0
        done
        # And every replica finished its first sync (before it, it cannot take over).
        for port in "${redis_ports[@]}"; do
            info=$(redis-cli -h 127.0.0.1 -p "$port" info replication 2>/dev/null | tr -d '\r') || info=
            [[ $info == *role:master* || $info == *master_link_status:up* ]] || ok=0
        done
        ((ok)) && return 0
        sleep 0.2
    done
    die "the Redis Cluster is not ok after 60 s: $(redis-cli -h 127.0.0.1 -p "${redis_ports[0]}" cluster info | head -n 1)"
}

# Joins the nodes by hand (redis-cli --cluster create wants at least 3 masters): every node
# meets the first, the masters take equal slot ranges, each replica follows its master.
create_by_hand() {
    local i port first=${redis_ports[0]} from to id
    for port in "${redis_ports[@]:1}"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster meet 127.0.0.1 "$first" >/dev/null
    done
    for i in $(seq 0 $((MASTERS - 1))); do
        from=$((16384 * i / MASTERS))
        to=$((16384 * (i + 1) / MASTERS - 1))
        redis-cli -h 127.0.0.1 -p "${redis_ports[i]}" cluster addslotsrange "$from" "$to" >/dev/null
    done
    for i in $(seq "$MASTERS" $((${#redis_ports[@]} - 1))); do
        id=$(redis-cli -h 127.0.0.1 -p "${redis_ports[$(((i - MASTERS) % MASTERS))]}" cluster myid)
        for _ in $(seq 1 100); do
            redis-cli -h 127.0.0.1 -p "${redis_ports[i]}" cluster replicate "$id" 2>/dev/null | grep -q OK && break
            sleep 0.1
        done
    done
}

start_redis_cluster() {
    local i count=$((MASTERS * (1 + REPLICAS))) addresses=()
    redis_ports=()
    for i in $(seq 1 "$count"); do
        progress "starting redis node $i of $count"
        redis_node "redis-$i"
        redis_ports+=("$REPLY")
        addresses+=("127.0.0.1:$REPLY")
    done
    progress "creating the Redis Cluster"
    if ((MASTERS >= 3)); then
        # The first MASTERS addresses become masters, the rest their replicas.
        quietly "redis-cli --cluster create" redis-cli --cluster create "${addresses[@]}" \
            --cluster-replicas "$REPLICAS" --cluster-yes
    else
        create_by_hand
    fi
    wait_cluster_ok
}

start_gateway() {
    local i=$1 port
    free_port
    port=$REPLY
    gateway_ports+=("$port")
    spawn "gateway-$i" env \
        FLASHGATE_HTTP__ADDR="127.0.0.1:$port" \
        FLASHGATE_HTTP__TRUSTED_PROXIES=127.0.0.1 \
        FLASHGATE_REDIS__CLUSTER_URLS="$redis_urls" \
        FLASHGATE_DATABASE__URL="$pg_url" \
        FLASHGATE_AUTH__JWT_SECRET="$JWT_SECRET" \
        FLASHGATE_ADMIN__TOKEN="$ADMIN_TOKEN" \
        RUST_LOG="${RUST_LOG:-info}" \
        "$BIN" serve
}

# nginx's own config: the gateways as one upstream with keep-alive connections, the client's
# address appended to X-Forwarded-For; temp files, pid and logs in the prefix dir.
write_nginx_conf() {
    local port
    mkdir -p "$STATE/nginx/logs"
    {
        echo "daemon off;"
        echo "worker_processes $NGINX_WORKERS;"
        echo "pid $STATE/nginx/nginx.pid;"
        echo "error_log $STATE/nginx/logs/error.log warn;"
        echo "events { worker_connections 16384; }"
        echo "http {"
        echo "    access_log off;"
        for dir in client_body proxy fastcgi uwsgi scgi; do
            echo "    ${dir}_temp_path $STATE/nginx/$dir;"
        done
        echo "    upstream flashgate {"
        for port in "${gateway_ports[@]}"; do
            echo "        server 127.0.0.1:$port max_fails=0;"
        done
        echo "        keepalive 256;"
        echo "    }"
        echo "    server {"
        echo "        listen 127.0.0.1:$NGINX_PORT;"
        echo "        location / {"
        echo "            proxy_pass http://flashgate;"
        echo "            proxy_http_version 1.1;"
        echo "            proxy_set_header Connection \"\";"
        echo "            proxy_set_header Host \$host;"
        echo "            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;"
        echo "        }"
        echo "    }"
        echo "}"
    } >"$STATE/nginx/nginx.conf"
}

pick_binary() {
    if [[ -n ${GATEWAY_BIN:-} ]]; then
        BIN=$GATEWAY_BIN
    elif [[ target/release/flashgate -nt target/debug/flashgate ]]; then
        BIN=$PWD/target/release/flashgate
    else
        BIN=$PWD/target/debug/flashgate
    fi
    [[ -x $BIN ]] || die "no gateway binary at $BIN (cargo build --bin flashgate, or set GATEWAY_BIN)"
}

write_env() {
    local urls=() port
    for port in "${gateway_ports[@]}"; do urls+=("http://127.0.0.1:$port"); done
    local nodes=("${redis_ports[@]/#/127.0.0.1:}")
    (
        umask 077
        {
            echo "CLUSTER_URL=http://127.0.0.1:$NGINX_PORT"
            echo "CLUSTER_GATEWAYS='${urls[*]}'"
            echo "CLUSTER_REDIS_NODES='${nodes[*]}'"
            echo "CLUSTER_REDIS_URLS='$redis_urls'"
            echo "CLUSTER_PG_URL='$pg_url'"
            echo "CLUSTER_ADMIN_TOKEN='$ADMIN_TOKEN'"
            echo "CLUSTER_JWT_SECRET='$JWT_SECRET'"
            echo "CLUSTER_DIR='$STATE'"
        } >"$STATE/env"
    )
}

start() {
    in_range "$MASTERS" 1 16 || die "MASTERS must be 1..16"
    in_range "$REPLICAS" 0 2 || die "REPLICAS must be 0..2"
    in_range "$GATEWAYS" 1 8 || die "GATEWAYS must be 1..8"
    command -v nginx >/dev/null || die "nginx is not installed (scripts/install-deps.sh installs it)"
    pick_binary
    stop >/dev/null
    rm -rf "${STATE:?}"/*
    mkdir -p "$STATE/pids"
    ADMIN_TOKEN=${ADMIN_TOKEN:-cluster-admin-token-$RANDOM$RANDOM$RANDOM$RANDOM}
    JWT_SECRET=${JWT_SECRET:-cluster-jwt-secret-$RANDOM$RANDOM$RANDOM$RANDOM}

    start_redis_cluster
    redis_urls=$(printf 'redis://127.0.0.1:%s,' "${redis_ports[@]:0:MASTERS}")
    redis_urls=${redis_urls%,}

    start_postgres max_connections=300
    echo "$PGPORT" >"$STATE/pg/port"
    quietly "CREATE DATABASE" psql_as_postgres postgres -c 'CREATE DATABASE flashgate'
    pg_url="postgres://postgres@127.0.0.1:$PGPORT/flashgate"

    gateway_ports=()
    local i
    for i in $(seq 1 "$GATEWAYS"); do
        progress "starting gateway $i of $GATEWAYS"
        start_gateway "$i"
        # One at a time: the first runs the database migrations.
        wait_for "gateway-$i" "$(cat "$STATE/pids/gateway-$i")" "$STATE/gateway-$i.log" 600 \
            curl -sf "http://127.0.0.1:${gateway_ports[-1]}/health/ready"
    done

    progress "starting nginx"
    free_port
    NGINX_PORT=$REPLY
    write_nginx_conf
    spawn nginx nginx -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf"
    wait_for nginx "$(cat "$STATE/pids/nginx")" "$STATE/nginx.log" 100 \
        curl -sf "http://127.0.0.1:$NGINX_PORT/health/ready"
    write_env
    [[ ! -t 2 ]] || printf '\r\033[K' >&2
    echo "# cluster.sh: $MASTERS masters x $REPLICAS replicas, $GATEWAYS gateways ($BIN), nginx; state in $STATE" >&2
    cat "$STATE/env"
}

# Stops NAME by its pid file: SIGTERM, then SIGKILL after 15 s.
stop_one() {
    local name=$1 pid
    pid=$(running_pid "$name") || { rm -f "$STATE/pids/$name"; return 0; }
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/pids/$name"
    echo "stopped $name (pid $pid)"
}

stop() {
    local file name
    # The balancer first, then the gateways (they drain their queues), then the rest.
    stop_one nginx
    for file in "$STATE"/pids/gateway-*; do
        [[ -e $file ]] && stop_one "$(basename "$file")"
    done
    for file in "$STATE"/pids/*; do
        [[ -e $file ]] && stop_one "$(basename "$file")"
    done
    if [[ -f $STATE/pg/data/postmaster.pid ]]; then
        as_postgres "$PGBIN/pg_ctl" -D "$STATE/pg/data" -m fast -t 30 stop >/dev/null 2>&1 || true
        echo "stopped PostgreSQL"
    fi
    return 0
}

status() {
    local file name pid down=0
    [[ -d $STATE/pids ]] || { echo "cluster.sh: nothing started in $STATE"; return 1; }
    for file in "$STATE"/pids/*; do
        [[ -e $file ]] || continue
        name=$(basename "$file")
        if pid=$(running_pid "$name"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: down"
            down=1
        fi
    done
    if [[ -f $STATE/pg/port ]] && PGPORT=$(cat "$STATE/pg/port") &&
        psql_as_postgres postgres -c 'SELECT 1' >/dev/null 2>&1; then
        echo "postgres: running (port $PGPORT)"
    else
        echo "postgres: down"
        down=1
    fi
    if [[ -f $STATE/redis-1.log ]]; then
        local port
        port=$(awk -F'[: ]' '/CLUSTER_REDIS_NODES/ { print $2 }' "$STATE/env" 2>/dev/null | head -n 1)
        [[ -z $port ]] || redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | tr -d '\r' |
            grep -E '^cluster_(state|known_nodes|size):' || true
    fi
    return "$down"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) [[ -f $STATE/env ]] && cat "$STATE/env" || die "no cluster started in $STATE" ;;
    -h | --help) usage ;;
    *)
        echo "usage: scripts/cluster.sh start|stop|status|env   (--help for more)" >&2
        exit 2
        ;;
esac
