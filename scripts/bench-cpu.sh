#!/usr/bin/env bash
# Where the CPU goes: server CPU time per request, read from /proc/PID/stat around wrk runs,
# for the two purchase paths of scripts/bench-http.sh. Throughput on this shared machine moves
# by +-10% between runs; CPU per request moves less, so A/B comparisons of a change are made
# with this script.
#
#   soldout   ROUNDS alternating runs of hello (examples/hello.rs) and of purchases against a
#             sold-out sale: req/s and CPU µs per request of each server.
#   instock   one run of purchases while stock lasts (SHARDS shards): req/s, CPU µs per
#             accepted purchase of the gateway and of redis-server, and Redis's own cost per
#             command (INFO commandstats usec_per_call).
#
# Usage: scripts/bench-cpu.sh soldout|instock
# Environment: DURATION (8s), ROUNDS (3), SHARDS (64), BENCH_TOKENS (600000), BIN (the
# gateway binary, target/release/flashgate), GUARDS (off; `on` for instock: a purchase token
# required and per-IP, per-buyer and per-sale limits that refuse nothing, as bench-peers.sh's
# guarded gateway), PERF (unset; a directory for instock: `perf record -g` of the gateway and
# of redis-server during the run, and the top of each `perf report` there). Same wrk
# settings and request script as bench-http.sh (-t2 -c64, benches/wrk/purchase.lua).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=${1:-}
[[ $MODE == soldout || $MODE == instock ]] || {
    echo "usage: $0 soldout|instock" >&2
    exit 2
}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
SHARDS=${SHARDS:-64}
BENCH_TOKENS=${BENCH_TOKENS:-600000}
BIN=${BIN:-target/release/flashgate}
GUARDS=${GUARDS:-off}
PERF=${PERF:-}
[[ $GUARDS == on || $GUARDS == off ]] || die "GUARDS is on or off"
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef

BENCH_NAME=bench-cpu
tmp=$(mktemp -d)
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
pids=()
cleanup() {
    stop_pids
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v wrk >/dev/null || die "wrk is missing (scripts/install-deps.sh installs it)"
quietly "building" cargo build --release --bin flashgate --example hello --example mint_tokens
[[ $GUARDS == on ]] ||
    quietly "minting $BENCH_TOKENS tokens" target/release/examples/mint_tokens "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/tokens.txt"
guard_settings "$GUARDS"

start_redis "$tmp/redis"

free_port
GPORT=$REPLY
FLASHGATE_HTTP__ADDR="127.0.0.1:$GPORT" FLASHGATE_REDIS__URL="redis://127.0.0.1:$RPORT" \
    FLASHGATE_AUTH__JWT_SECRET="$JWT_SECRET" FLASHGATE_ADMIN__TOKEN="$ADMIN_TOKEN" \
    FLASHGATE_DATABASE__URL="sqlite://$tmp/orders.db?mode=rwc" \
    env "${guards[@]}" "$BIN" serve 2>"$tmp/gateway.log" &
pids+=($!)
gateway_pid=${pids[-1]}
wait_for gateway "$gateway_pid" "$tmp/gateway.log" 300 curl -sf "http://127.0.0.1:$GPORT/health/ready"

# CPU time (user + system) of PID, in clock ticks.
ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
TICK_NS=$((1000000000 / $(getconf CLK_TCK)))

# measure PORT PATH: runs wrk; sets REQS (answers) and RPS, keeps its output in $tmp/wrk.txt.
measure() {
    progress "wrk $2 on port $1"
    wrk -t2 -c64 -d"$DURATION" -s benches/wrk/purchase.lua "http://127.0.0.1:$1$2" -- \
        "$tmp/tokens.txt" 2 >"$tmp/wrk.txt" 2>&1 || { cat "$tmp/wrk.txt" >&2; die "wrk failed"; }
    REQS=$(awk '/requests in/ { print $1 }' "$tmp/wrk.txt")
    RPS=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$tmp/wrk.txt")
}

# per_request PID BEFORE N: CPU µs per request of PID since BEFORE ticks, over N requests.
per_request() {
    awk -v d="$(($(ticks "$1") - $2))" -v ns="$TICK_NS" -v n="$3" 'BEGIN { printf "%.1f", d * ns / n / 1000 }'
}

if [[ $MODE == soldout ]]; then
    free_port
    HPORT=$REPLY
    target/release/examples/hello "$HPORT" 2>"$tmp/hello.log" &
    pids+=($!)
    hello_pid=${pids[-1]}
    wait_for hello "$hello_pid" "$tmp/hello.log" 100 curl -sf "http://127.0.0.1:$HPORT/"
    put_live_sale "$GPORT" gone 1 1
    seed=$(FLASHGATE_AUTH__JWT_SECRET="$JWT_SECRET" FLASHGATE_ADMIN__TOKEN="$ADMIN_TOKEN" "$BIN" token --user seed)
    for key in first second; do # the second purchase is told "sold out": the sale is marked
        curl -sf -o /dev/null -X POST -H "Authorization: Bearer $seed" -H "Idempotency-Key: $key" \
            -H 'Content-Type: application/json' --data '{"quantity":1}' \
            "http://127.0.0.1:$GPORT/api/v1/sales/gone/purchase" || true
    done
    printf '%-6s %12s %14s %12s %14s %8s\n' round "hello req/s" "hello µs/req" "sold req/s" "sold µs/req" ratio
    for round in $(seq 1 "$ROUNDS"); do
        before=$(ticks "$hello_pid")
        measure "$HPORT" /api/v1/sales/gone/purchase
        hello_rps=$RPS hello_us=$(per_request "$hello_pid" "$before" "$REQS")
        before=$(ticks "$gateway_pid")
        measure "$GPORT" /api/v1/sales/gone/purchase
        grep -q '^status 409' "$tmp/wrk.txt" || die "the sold-out run got no 409: $(grep '^status' "$tmp/wrk.txt")"
        sold_us=$(per_request "$gateway_pid" "$before" "$REQS")
        printf '%-6s %12s %14s %12s %14s %8.2f\n' "$round" "$hello_rps" "$hello_us" "$RPS" "$sold_us" \
            "$(awk -v a="$hello_rps" -v b="$RPS" 'BEGIN { print b / a }')"
    done
else
    put_live_sale "$GPORT" live 10000000 "$SHARDS"
    if [[ $GUARDS == on ]]; then
        generation=$(redis-cli -h 127.0.0.1 -p "$RPORT" HGET "fg:sale:{live}" generation)
        quietly "minting $BENCH_TOKENS buyers with purchase tokens" target/release/examples/mint_tokens \
            "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/tokens.txt" live "$generation"
    fi
    redis-cli -h 127.0.0.1 -p "$RPORT" CONFIG RESETSTAT >/dev/null
    perfs=()
    if [[ -n $PERF ]]; then
        mkdir -p "$PERF"
        perf record -q -F 999 --call-graph dwarf,16384 -p "$gateway_pid" -o "$PERF/gateway.data" 2>"$PERF/gateway.err" &
        perfs+=($!)
        perf record -q -g -p "$redis_pid" -o "$PERF/redis.data" 2>"$PERF/redis.err" &
        perfs+=($!)
    fi
    gateway_before=$(ticks "$gateway_pid") redis_before=$(ticks "$redis_pid")
    measure "$GPORT" /api/v1/sales/live/purchase
    if ((${#perfs[@]})); then
        kill -INT "${perfs[@]}"
        wait "${perfs[@]}" || true
        for what in gateway redis; do
            perf report -i "$PERF/$what.data" --no-children --percent-limit 0.5 --stdio -g none \
                2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 >"$PERF/$what.top"
        done
    fi
    accepted=$(awk '$1 == "status" && $2 == 202 { print $3 }' "$tmp/wrk.txt")
    [[ ${accepted:-0} -gt 0 ]] || die "no purchase was accepted: $(grep '^status' "$tmp/wrk.txt")"
    echo "in stock, $SHARDS shards: $RPS req/s, $accepted accepted"
    echo "CPU per accepted purchase: gateway $(per_request "$gateway_pid" "$gateway_before" "$accepted") µs," \
        "redis-server $(per_request "$redis_pid" "$redis_before" "$accepted") µs"
    echo "Redis usec_per_call (INFO commandstats):"
    redis-cli -h 127.0.0.1 -p "$RPORT" INFO commandstats | tr -d '\r' |
        awk -F'[:,=]' '/^cmdstat_/ { sub("cmdstat_", "", $1); printf "  %-8s calls %9d  %6s us\n", $1, $3, $7 }'
fi
