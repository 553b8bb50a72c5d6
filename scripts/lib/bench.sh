# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced, not run). The caller sets BENCH_NAME
# (for messages) and `tmp` (its temp dir) before sourcing.

die() {
    echo "$BENCH_NAME: $*" >&2
    exit 1
}

# Shows what is running, on one overwritten line, when stderr is a terminal.
progress() {
    [[ -t 2 ]] && printf '\r\033[K%s: %s...' "$BENCH_NAME" "$*" >&2
    return 0
}

# Runs a quiet step; shows its log only when it fails.
quietly() {
    local what=$1
    shift
    progress "$what"
    if ! "$@" >"$tmp/step.log" 2>&1; then
        tail -n 30 "$tmp/step.log" >&2
        die "$what failed"
    fi
}

# Sets REPLY to a loopback port nobody listens on (and not handed out before), below the
# kernel's ephemeral range: a port in that range may be the local end of some outgoing
# connection (a load generator leaves thousands) and then cannot be bound.
taken=" "
free_port() {
    local port low=32768 high=60999
    read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    for _ in $(seq 1 200); do
        if ((low > 12000)); then
            port=$((10000 + RANDOM % (low - 10000)))
        else
            port=$((20000 + RANDOM % 40000))
        fi
        [[ $taken == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            taken+="$port "
            REPLY=$port
            return 0
        fi
    done
    die "no free loopback port found"
}

# wait_for NAME PID LOG TRIES COMMAND...: polls COMMAND every 0.1 s while PID lives.
wait_for() {
    local name=$1 pid=$2 log=$3 tries=$4
    shift 4
    for _ in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2
            die "$name exited during start-up"
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    die "$name not ready after $((tries / 10)) s"
}

# admin_at PORT METHOD PATH [BODY]: an operator call (Bearer $ADMIN_TOKEN) to the gateway on
# PORT; prints the HTTP status, keeps the body in $tmp/body.json.
admin_at() {
    local data=()
    (($# < 4)) || data=(--data "$4")
    curl -sS -m 30 -o "$tmp/body.json" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' "http://127.0.0.1:$1$3" "${data[@]}"
}

# admin METHOD PATH [BODY]: admin_at the gateway on $GPORT.
admin() {
    admin_at "$GPORT" "$@"
}

# put_live_sale PORT ID STOCK SHARDS: a live sale (opened a minute ago, for an hour), one unit
# per buyer, on the gateway on PORT.
put_live_sale() {
    local body code
    body=$(printf '{"name":"%s","stock":%d,"shards":%d,"starts_at":"%s","ends_at":"%s","per_user_limit":1,"max_per_order":1,"pow_difficulty":0}' \
        "$2" "$3" "$4" "$(date -u -d '-1 minute' +%FT%TZ)" "$(date -u -d '+1 hour' +%FT%TZ)")
    code=$(admin_at "$1" PUT "/admin/v1/sales/$2" "$body")
    [[ $code == 20[01] ]] || die "PUT sale $2 answered $code: $(cat "$tmp/body.json")"
}

# guard_settings on|off: sets the array `guards` to the settings of the benchmarks' guarded
# gateway (a purchase token required; per-IP and per-sale limits far above what one machine
# sends, since every request comes from 127.0.0.1; per-buyer at the shipped 5/s, burst 10) or
# of their unguarded one (no token, no rate limit; the in-flight cap is always on).
guard_settings() {
    case $1 in
    on) guards=(FLASHGATE_TOKENS__REQUIRE_PURCHASE_TOKEN=true
        FLASHGATE_LIMITS__IP__RATE_PER_SEC=10000000 FLASHGATE_LIMITS__IP__BURST=10000000
        FLASHGATE_LIMITS__USER__RATE_PER_SEC=5 FLASHGATE_LIMITS__USER__BURST=10
        FLASHGATE_LIMITS__SALE__RATE_PER_SEC=10000000 FLASHGATE_LIMITS__SALE__BURST=10000000) ;;
    off) guards=(FLASHGATE_TOKENS__REQUIRE_PURCHASE_TOKEN=false FLASHGATE_LIMITS__IP__RATE_PER_SEC=0
        FLASHGATE_LIMITS__USER__RATE_PER_SEC=0 FLASHGATE_LIMITS__SALE__RATE_PER_SEC=0) ;;
    *) die "guard_settings: on or off, not '$1'" ;;
    esac
}

# start_gateway NAME PREFIX [ENV=value...]: a release gateway on a free port (its port in
# $REPLY, its pid in ${pids[-1]}) on the caller's redis-server ($RPORT), with its own key
# prefix, SQLite order database and log in $tmp, the caller's JWT_SECRET and ADMIN_TOKEN,
# and ENV on top. GATEWAY_BIN (default target/release/flashgate) picks the binary.
start_gateway() {
    local name=$1 prefix=$2
    shift 2
    free_port
    env FLASHGATE_HTTP__ADDR="127.0.0.1:$REPLY" \
        FLASHGATE_REDIS__URL="redis://127.0.0.1:$RPORT" \
        FLASHGATE_REDIS__KEY_PREFIX="$prefix" \
        FLASHGATE_AUTH__JWT_SECRET="$JWT_SECRET" \
        FLASHGATE_ADMIN__TOKEN="$ADMIN_TOKEN" \
        FLASHGATE_DATABASE__URL="sqlite://$tmp/$name.db?mode=rwc" \
        RUST_LOG=info "$@" "${GATEWAY_BIN:-target/release/flashgate}" serve 2>"$tmp/$name.log" &
    pids+=($!)
    wait_for "$name" "${pids[-1]}" "$tmp/$name.log" 300 curl -sf "http://127.0.0.1:$REPLY/health/ready"
}

# Stops every process in the caller's `pids` array and waits for them.
stop_pids() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}

# The services (redis-server, PostgreSQL, k6) every script starts the same way.
# shellcheck source=scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"
