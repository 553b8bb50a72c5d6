#!/usr/bin/env bash
# Tail latency of purchases at half the maximum rate, open loop, all on 127.0.0.1:
#   1. the maximum: wrk -t2 -c64 closed loop against the gateway (guards off, 64 shards,
#      orders to SQLite), MAX_SECONDS long;
#   2. examples/open_loop.rs at RATE = half that maximum (or RATE if set) for SECONDS: request
#      i due at i / RATE s whatever the latency, a distinct buyer each; reports p50, p99 and
#      max latency, and whether the rate was held.
# VARIANTS="NAME:ENV=value,ENV=value NAME2:..." runs step 2 once more per variant, each on a
# gateway of its own started with those settings (e.g. a shorter queue.batch_wait_ms), in
# alternating rounds (ROUNDS), so a change to what makes the tail is measured side by side
# with the default ("base"); a setting BIN=PATH runs that variant on another gateway binary
# (e.g. a copy of the previous build), for A/B pairs of a change. Every round also sends the
# same open loop to an axum hello server on the same runtime (examples/hello.rs, "hello"): the
# tail of HTTP and of the load generator itself on this machine, the floor any gateway's p99
# is read against.
#
# Usage: scripts/bench-tail.sh
# Environment: RATE (half the measured maximum), SECONDS (20), MAX_SECONDS (10), ROUNDS (3),
# CONNECTIONS (256), VARIANTS (none). Raw outputs and each gateway's /metrics at the end in
# target/bench-tail/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_EACH=${SECONDS:-20}
MAX_SECONDS=${MAX_SECONDS:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-256}
VARIANTS=${VARIANTS:-}
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
SALE=bench-tail
OUT=target/bench-tail

BENCH_NAME=bench-tail
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

quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
quietly "cargo build --release" cargo build --release --bin flashgate --example open_loop --example mint_tokens --example hello
mkdir -p "$OUT"
rm -f "$OUT"/*

start_redis "$tmp/redis"

# tail_gateway NAME [ENV...] [BIN=PATH]: a guards-off release gateway (its own key prefix
# and SQLite file; the binary PATH if given) with a live 64-shard sale; its port in $REPLY.
tail_gateway() {
    local name=$1 bin=target/release/flashgate setting env=()
    shift
    for setting in "$@"; do
        if [[ $setting == BIN=* ]]; then bin=${setting#BIN=}; else env+=("$setting"); fi
    done
    guard_settings off
    GATEWAY_BIN=$bin start_gateway "$name" "$name" "${guards[@]}" "${env[@]}"
    put_live_sale "$REPLY" "$SALE" 100000000 64
}

names=(base)
declare -A port
free_port
port[hello]=$REPLY
target/release/examples/hello "${port[hello]}" 2>"$tmp/hello.log" &
pids+=($!)
wait_for hello "${pids[-1]}" "$tmp/hello.log" 100 curl -sf "http://127.0.0.1:${port[hello]}/"
tail_gateway base
port[base]=$REPLY
for variant in $VARIANTS; do
    name=${variant%%:*}
    IFS=, read -r -a settings <<<"${variant#*:}"
    tail_gateway "$name" "${settings[@]}"
    port[$name]=$REPLY
    names+=("$name")
done

if [[ -z ${RATE:-} ]]; then
    MINT_USER_PREFIX=max- quietly "minting buyers for the maximum" target/release/examples/mint_tokens "$JWT_SECRET" 600000 "$tmp/max.txt"
    progress "the maximum rate (wrk, ${MAX_SECONDS}s)"
    wrk -t2 -c64 -d"${MAX_SECONDS}s" -s benches/wrk/purchase.lua \
        "http://127.0.0.1:${port[base]}/api/v1/sales/$SALE/purchase" -- "$tmp/max.txt" 2 >"$OUT/max.txt" 2>&1 ||
        { cat "$OUT/max.txt" >&2; die "wrk failed"; }
    max=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$OUT/max.txt")
    RATE=$((max / 2))
    echo "maximum (wrk -t2 -c64, closed loop): $max purchases/s; open loop at half: $RATE/s"
fi

tokens=$((RATE * SECONDS_EACH + 1000))
for round in $(seq 1 "$ROUNDS"); do
    MINT_USER_PREFIX="r$round-" quietly "minting $tokens buyers for round $round" \
        target/release/examples/mint_tokens "$JWT_SECRET" "$tokens" "$tmp/r$round.txt"
done
for round in $(seq 1 "$ROUNDS"); do
    for name in hello "${names[@]}"; do
        progress "round $round: $name at $RATE/s for ${SECONDS_EACH}s"
        OPEN_LOOP_LATENCIES="$OUT/$name-r$round.lat" target/release/examples/open_loop "http://127.0.0.1:${port[$name]}" "$SALE" "$tmp/r$round.txt" \
            "$RATE" "$SECONDS_EACH" "$CONNECTIONS" >"$OUT/$name-r$round.txt" 2>&1 ||
            { tail -n 20 "$OUT/$name-r$round.txt" >&2; die "open_loop failed"; }
    done
done

# Each gateway's own view (Redis call and HTTP latency histograms), for telling where a tail
# comes from.
for name in "${names[@]}"; do
    curl -sf "http://127.0.0.1:${port[$name]}/metrics" >"$OUT/$name-metrics.txt" || true
done

[[ ! -t 2 ]] || printf '\r\033[K' >&2
echo "open loop at $RATE purchases/s for ${SECONDS_EACH}s, 64 shards, guards off, SQLite; $ROUNDS rounds; $(nproc) cores; $(date -u +%FT%TZ)"
field() { grep '^open_loop sent=' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '%-12s %9s %9s %9s %10s %8s   %s\n' variant "p50 ms" "p99 ms" "max ms" "rate/s" "late" "p99 of rounds"
for name in hello "${names[@]}"; do
    p50=() p99=() pmax=() rate=() late=()
    for round in $(seq 1 "$ROUNDS"); do
        f=$OUT/$name-r$round.txt
        p50+=("$(field "$f" p50_ms)") p99+=("$(field "$f" p99_ms)") pmax+=("$(field "$f" max_ms)")
        rate+=("$(field "$f" rate)") late+=("$(field "$f" late)")
        [[ $name == hello || $(field "$f" s202) == "$(field "$f" sent)" ]] ||
            echo "WARNING: $name round $round: not every purchase answered 202 ($(grep '^open_loop' "$f"))"
    done
    printf '%-12s %9s %9s %9s %10s %8s   %s\n' "$name" "$(median "${p50[@]}")" "$(median "${p99[@]}")" \
        "$(median "${pmax[@]}")" "$(median "${rate[@]}")" "$(median "${late[@]}")" "${p99[*]}"
done
echo "(target: p99 <= 2 ms at half the maximum rate)"
