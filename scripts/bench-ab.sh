#!/usr/bin/env bash
# A/B of two gateways in short alternating pairs, for changes whose effect is smaller than
# this shared machine's drift: a 10-s figure moves by 10-20 % between minutes, while two
# runs seconds apart see nearly the same machine, so the difference inside each pair is
# what is read (its median over PAIRS), not either side's figure.
#
# One redis-server (AOF everysec); gateways A and B side by side on it, each with its own key
# prefix, SQLite file and live 64-shard sale, guarded as bench-peers.sh's (d) (a purchase
# token, per-IP, per-buyer and per-sale limits that refuse nothing) or, GUARDS=off, as its
# (b). Each pair runs wrk -t2 -c64 (benches/wrk/purchase.lua, fresh buyers) for SECS on A
# then B, or B then A on even pairs; per run: req/s and the CPU µs per answered request of
# the gateway and of redis-server (from /proc), and of the gateway's threads the context
# switches per request.
#
# Usage: scripts/bench-ab.sh
# Environment: A_BIN, B_BIN (gateway binaries, target/release/flashgate), A_ENV, B_ENV
# (space-separated NAME=value settings for each, e.g. B_ENV="TOKIO_WORKER_THREADS=1"),
# GUARDS (on), STOCK (100000000; 1 measures the sold-out path), PAIRS (8), SECS (4),
# TOKENS (700000 buyers per gateway: more than PAIRS x SECS x its req/s).
# Raw per-run figures in target/bench-ab/runs.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PAIRS=${PAIRS:-8}
SECS=${SECS:-4}
TOKENS=${TOKENS:-700000}
GUARDS=${GUARDS:-on}
STOCK=${STOCK:-100000000}
SALE=bench-live
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-ab

BENCH_NAME=bench-ab
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

[[ $GUARDS == on || $GUARDS == off ]] || die "GUARDS is on or off"
quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
quietly "cargo build --release" cargo build --release --bin flashgate --example mint_tokens
mkdir -p "$OUT"

guard_settings "$GUARDS"

start_redis "$tmp/redis"
declare -A port pid
for side in A B; do
    bin_var=${side}_BIN env_var=${side}_ENV
    read -r -a settings <<<"${!env_var:-}"
    GATEWAY_BIN=${!bin_var:-target/release/flashgate} start_gateway "$side" "bench-$side" "${guards[@]}" "${settings[@]}"
    port[$side]=$REPLY pid[$side]=${pids[-1]}
    put_live_sale "${port[$side]}" "$SALE" "$STOCK" 64
    mint=(target/release/examples/mint_tokens "$JWT_SECRET" "$TOKENS" "$tmp/$side.txt")
    [[ $GUARDS == off ]] ||
        mint+=("$SALE" "$(redis-cli -h 127.0.0.1 -p "$RPORT" HGET "bench-$side:sale:{$SALE}" generation)")
    MINT_USER_PREFIX="$side-" quietly "minting $TOKENS buyers for $side" "${mint[@]}"
done

# CPU time (user + system, clock ticks) of PID; context switches of all its threads.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
switches() { cat "/proc/$1"/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

echo "pair side req/s gateway_us redis_us switches_per_req" >"$OUT/runs.txt"
for pair in $(seq 1 "$PAIRS"); do
    order=(A B)
    ((pair % 2 == 1)) || order=(B A)
    for side in "${order[@]}"; do
        progress "pair $pair: $side"
        g0=$(ticks "${pid[$side]}") r0=$(ticks "$redis_pid") s0=$(switches "${pid[$side]}")
        wrk -t2 -c64 -d"${SECS}s" -s benches/wrk/purchase.lua \
            "http://127.0.0.1:${port[$side]}/api/v1/sales/$SALE/purchase" -- "$tmp/$side.txt" 2 >"$tmp/wrk.txt" 2>&1 ||
            { cat "$tmp/wrk.txt" >&2; die "wrk failed"; }
        n=$(awk '/requests in/ { print $1 }' "$tmp/wrk.txt")
        ((n > 0)) || die "$side answered nothing"
        awk -v p="$pair" -v s="$side" -v n="$n" -v u="$TICK_US" \
            -v rps="$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.txt")" \
            -v g="$(($(ticks "${pid[$side]}") - g0))" -v r="$(($(ticks "$redis_pid") - r0))" \
            -v c="$(($(switches "${pid[$side]}") - s0))" \
            'BEGIN { printf "%d %s %.0f %.1f %.1f %.2f\n", p, s, rps, g * u / n, r * u / n, c / n }' >>"$OUT/runs.txt"
    done
done

[[ ! -t 2 ]] || printf '\r\033[K' >&2
echo "A: ${A_BIN:-target/release/flashgate} ${A_ENV:-}"
echo "B: ${B_BIN:-target/release/flashgate} ${B_ENV:-}"
echo "guards $GUARDS, stock $STOCK, $PAIRS pairs of wrk -t2 -c64 -d${SECS}s, $(nproc) cores, $(date -u +%FT%TZ)"
python3 - "$OUT/runs.txt" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).readlines()[1:]]
pairs = {}
for pair, side, *figures in rows:
    pairs.setdefault(pair, {})[side] = [float(x) for x in figures]
def show(label, column, diff):
    d = sorted(diff(p["B"][column], p["A"][column]) for p in pairs.values())
    a = statistics.median(p["A"][column] for p in pairs.values())
    b = statistics.median(p["B"][column] for p in pairs.values())
    print(f"{label:22} A {a:9.1f}  B {b:9.1f}  pairs: median {statistics.median(d):+.3f} ({' '.join(f'{x:+.2f}' for x in d)})")
show("req/s (B/A - 1)", 0, lambda b, a: b / a - 1)
show("gateway µs (B - A)", 1, lambda b, a: b - a)
show("redis µs (B - A)", 2, lambda b, a: b - a)
show("switches/req (B - A)", 3, lambda b, a: b - a)
PY
