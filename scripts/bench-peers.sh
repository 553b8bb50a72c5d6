#!/usr/bin/env bash
# flashgate against its peers, in one run on this machine, with the same wrk settings and the
# very same requests (benches/wrk/purchase.lua: a distinct buyer and a fresh Idempotency-Key
# per request) for every target:
#   (a) hello      examples/hello.rs: axum "hello" on the gateway's runtime, the HTTP ceiling
#   (m) minimal    benches/peer-axum: axum + one EVALSHA of a five-line deduct script over one
#                  multiplexed connection; no checks, no record (the thinnest gateway possible)
#   (o) openresty  benches/openresty: nginx + ngx_http_lua + lua-resty-redis running the same
#                  script over a keepalive pool (the classic Lua flash-sale gateway)
#   (d) guarded    flashgate with every guard on (purchase token, per-IP, per-buyer and
#                  per-sale limits), 64 shards, orders persisted to SQLite
#   (b) unguarded  flashgate with the guards off
# All share one redis-server (AOF, fsync every second). Each round runs the five targets one
# after another (fresh buyers for flashgate each round); per target and round: req/s, and the
# CPU time per answered request of the server (every process of it) and of redis-server,
# read from /proc. Reported: the median of each over ROUNDS, and the acceptance ratios
# (d)/(o) req/s and (d)/(m) server + Redis CPU per request.
#
# WORKERS=N runs every server with N workers: TOKIO_WORKER_THREADS=N for the Rust ones and
# `worker_processes N` for nginx (by default tokio starts one worker per core and nginx is
# `auto`, one per core too). On a machine of few cores shared with Redis and wrk, fewer
# workers than cores may serve more (README: the one-worker setting); this compares every
# target so configured, not flashgate alone.
#
# Usage: scripts/bench-peers.sh
# Environment: WRK_THREADS (2), WRK_CONNS (64), WRK_DURATION (10s), ROUNDS (5),
# BENCH_TOKENS (600000: buyers per round for each flashgate target), WORKERS (unset).
# Raw outputs in target/bench-peers/ (wrk outputs, results.csv, peers.json, peers.svg).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
ROUNDS=${ROUNDS:-5}
BENCH_TOKENS=${BENCH_TOKENS:-600000}
WORKERS=${WORKERS:-}
SALE=bench-live
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-peers

BENCH_NAME=bench-peers
tmp=$(mktemp -d)
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
pids=()
nginx_dir=
cleanup() {
    [[ -z $nginx_dir || ! -f $nginx_dir/nginx.pid ]] || kill "$(cat "$nginx_dir/nginx.pid")" 2>/dev/null || true
    stop_pids
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -z $WORKERS || $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS is a positive number"
# Inherited by every Rust server started below (tokio's multi-thread runtime reads it).
[[ -z $WORKERS ]] || export TOKIO_WORKER_THREADS=$WORKERS
quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
quietly "cargo build --release" cargo build --release --bin flashgate --example hello --example mint_tokens
quietly "cargo build --release -p peer-axum" cargo build --release -p peer-axum
mkdir -p "$OUT"
rm -f "$OUT"/*.txt

for round in $(seq 1 "$ROUNDS"); do
    MINT_USER_PREFIX="r$round-" quietly "minting $BENCH_TOKENS buyers for round $round" \
        target/release/examples/mint_tokens "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/plain-r$round.txt"
done

start_redis "$tmp/redis"
deduct_sha=$(redis-cli -h 127.0.0.1 -p "$RPORT" SCRIPT LOAD "$(cat benches/peer-axum/deduct.lua)")
redis-cli -h 127.0.0.1 -p "$RPORT" MSET 'peer:{m}:stock' 1000000000 'peer:{o}:stock' 1000000000 >/dev/null

free_port
HPORT=$REPLY
target/release/examples/hello "$HPORT" 2>"$tmp/hello.log" &
pids+=($!)
hello_pids=${pids[-1]}
wait_for hello "$hello_pids" "$tmp/hello.log" 100 curl -sf "http://127.0.0.1:$HPORT/"

free_port
MPORT=$REPLY
target/release/peer-axum "$MPORT" "redis://127.0.0.1:$RPORT" 'peer:{m}:stock' 2>"$tmp/peer-axum.log" &
pids+=($!)
minimal_pids=${pids[-1]}
wait_for peer-axum "$minimal_pids" "$tmp/peer-axum.log" 100 curl -sf -X POST "http://127.0.0.1:$MPORT/"

free_port
OPORT=$REPLY
nginx_dir=$tmp/nginx
mkdir -p "$nginx_dir"
sed -e "s#@DIR@#$nginx_dir#g" -e "s#@PORT@#$OPORT#g" -e "s#@REDIS_PORT@#$RPORT#g" \
    -e "s#@SHA@#$deduct_sha#g" -e "s#@KEY@#peer:{o}:stock#g" -e "s#@WORKERS@#${WORKERS:-auto}#g" \
    benches/openresty/nginx.conf.in >"$nginx_dir/nginx.conf"
nginx -p "$nginx_dir" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log" 2>"$tmp/nginx.log" &
pids+=($!)
nginx_master=${pids[-1]}
wait_for nginx "$nginx_master" "$tmp/nginx.log" 100 curl -sf -X POST "http://127.0.0.1:$OPORT/"

guard_settings on
start_gateway guarded bench-g "${guards[@]}"
DPORT=$REPLY guarded_pids=${pids[-1]}
guard_settings off
start_gateway unguarded bench "${guards[@]}"
BPORT=$REPLY unguarded_pids=${pids[-1]}
put_live_sale "$DPORT" "$SALE" 100000000 64
put_live_sale "$BPORT" "$SALE" 100000000 64
generation=$(redis-cli -h 127.0.0.1 -p "$RPORT" HGET "bench-g:sale:{$SALE}" generation)
for round in $(seq 1 "$ROUNDS"); do
    MINT_USER_PREFIX="g$round-" quietly "minting $BENCH_TOKENS guarded buyers for round $round" \
        target/release/examples/mint_tokens "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/guarded-r$round.txt" \
        "$SALE" "$generation"
done

# CPU time (user + system, clock ticks) of the processes PIDS, of the children they have
# reaped (Redis's append-only-file rewrites) and of their live children (nginx's workers, a
# rewrite under way). A child that ends between two readings moves from the live count to
# its parent's reaped count, so the sum only grows.
ticks() {
    local pid
    for pid in "$@"; do
        awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat" 2>/dev/null || true
        for child in $(pgrep -P "$pid" || true); do
            awk '{ print $14 + $15 }' "/proc/$child/stat" 2>/dev/null || true
        done
    done | awk '{ s += $1 } END { print s + 0 }'
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# The gateway on PORT's purchase calls to Redis so far: "<calls> <seconds spent in them>"
# (its Redis call histogram; "0 0" for a server that has none).
purchase_calls() {
    curl -sf "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk '/^flashgate_redis_call_duration_seconds_(count|sum)\{call="purchase"\}/ { v[$1 ~ /_count/] = $2 }
             END { printf "%d %.6f\n", v[1], v[0] }'
}

# Redis's forks so far (each an append-only-file rewrite: the fork stops Redis while it
# copies the page tables, and the child copies the whole dataset).
forks() {
    redis-cli -h 127.0.0.1 -p "$RPORT" INFO stats | awk -F: '/^total_forks:/ { print $2 + 0 }'
}

# measure NAME PORT TOKENS SERVER_PIDS: one wrk run; appends "name,round,rps,server_us,
# redis_us,calls_per_req,call_ms,forks" to results.csv: CPU µs per answered request, for a
# flashgate target its purchase calls to Redis per request and their mean duration as the
# gateway saw it (where a round's time went when the CPUs sat idle: waiting on Redis, or
# elsewhere), and the Redis forks during the run.
measure() {
    local name=$1 port=$2 tokens=$3 server_pids=$4 file="$OUT/$1-r$round.txt"
    local server_before redis_before reqs rps calls_before calls_after forks_before
    progress "round $round: wrk ($name)"
    calls_before=$(purchase_calls "$port") forks_before=$(forks)
    # shellcheck disable=SC2086 # SERVER_PIDS is a list
    server_before=$(ticks $server_pids) redis_before=$(ticks "$redis_pid")
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency -s benches/wrk/purchase.lua \
        "http://127.0.0.1:$port/api/v1/sales/$SALE/purchase" -- "$tokens" "$WRK_THREADS" >"$file" 2>&1 ||
        { cat "$file" >&2; die "wrk ($name) failed"; }
    # shellcheck disable=SC2086
    server_after=$(ticks $server_pids) redis_after=$(ticks "$redis_pid")
    calls_after=$(purchase_calls "$port")
    reqs=$(awk '/requests in/ { print $1 }' "$file")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$file")
    ((reqs > 0)) || die "($name) answered nothing"
    if [[ $name != hello ]]; then
        grep -q '^status 202 ' "$file" || die "($name) accepted nothing: $(grep '^status' "$file" | tr '\n' ' ')"
    fi
    echo "$name,$round,$rps,$(awk -v d="$((server_after - server_before))" -v u="$TICK_US" -v n="$reqs" 'BEGIN { printf "%.1f", d * u / n }'),$(awk -v d="$((redis_after - redis_before))" -v u="$TICK_US" -v n="$reqs" 'BEGIN { printf "%.1f", d * u / n }'),$(awk -v b="$calls_before" -v a="$calls_after" -v n="$reqs" 'BEGIN {
        split(b, x, " "); split(a, y, " "); c = y[1] - x[1]
        printf "%.3f,%.3f", c / n, (c > 0 ? (y[2] - x[2]) * 1000 / c : 0) }'),$(($(forks) - forks_before))" >>"$OUT/results.csv"
}

echo "target,round,rps,server_us,redis_us,calls_per_req,call_ms,forks" >"$OUT/results.csv"
for round in $(seq 1 "$ROUNDS"); do
    plain=$tmp/plain-r$round.txt
    measure hello "$HPORT" "$plain" "$hello_pids"
    measure minimal "$MPORT" "$plain" "$minimal_pids"
    measure openresty "$OPORT" "$plain" "$nginx_master"
    measure guarded "$DPORT" "$tmp/guarded-r$round.txt" "$guarded_pids"
    measure unguarded "$BPORT" "$plain" "$unguarded_pids"
done

# Report: medians per target, then the acceptance ratios.
[[ ! -t 2 ]] || printf '\r\033[K' >&2
echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION, benches/wrk/purchase.lua, 127.0.0.1, $(nproc) cores, ${WORKERS:-default} workers per server, $ROUNDS rounds, $(date -u +%FT%TZ)"
python3 - "$OUT" <<'PY'
import csv, json, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/results.csv")))
names = [("hello", "(a) axum hello"), ("minimal", "(m) minimal axum + EVALSHA"),
         ("openresty", "(o) OpenResty + lua-resty-redis"), ("guarded", "(d) flashgate, guards on"),
         ("unguarded", "(b) flashgate, guards off")]
med = {}
print(f"{'target':34} {'req/s':>8} {'server µs':>10} {'redis µs':>9} {'total µs':>9}   req/s of rounds")
for key, label in names:
    mine = [r for r in rows if r["target"] == key]
    rps = statistics.median(float(r["rps"]) for r in mine)
    srv = statistics.median(float(r["server_us"]) for r in mine)
    red = statistics.median(float(r["redis_us"]) for r in mine)
    tot = statistics.median(float(r["server_us"]) + float(r["redis_us"]) for r in mine)
    med[key] = (rps, srv, red, tot)
    rounds = " ".join(f"{float(r['rps']) / 1000:.1f}k" for r in mine)
    print(f"{label:34} {rps:8.0f} {srv:10.1f} {red:9.1f} {tot:9.1f}   {rounds}")
def per_round(a, b, f):
    ra = {r["round"]: r for r in rows if r["target"] == a}
    rb = {r["round"]: r for r in rows if r["target"] == b}
    return sorted(f(ra[k]) / f(rb[k]) for k in ra if k in rb)
tot = lambda r: float(r["server_us"]) + float(r["redis_us"])
rps = lambda r: float(r["rps"])
d_o = per_round("guarded", "openresty", rps)
d_m = per_round("guarded", "minimal", tot)
b_a = per_round("unguarded", "hello", rps)
print(f"(d)/(o) req/s, guarded flashgate vs OpenResty: median {statistics.median(d_o):.2f} (rounds {' '.join(f'{x:.2f}' for x in d_o)}; target >= 1.5)")
print(f"(d)/(m) server + Redis CPU per request, vs the minimal peer: median {statistics.median(d_m):.2f} (rounds {' '.join(f'{x:.2f}' for x in d_m)}; target <= 1.5)")
print(f"(b)/(a) req/s, unguarded flashgate vs hello: median {statistics.median(b_a):.2f}")
for key, label in names[3:]:
    mine = [r for r in rows if r["target"] == key]
    print(f"{label}: purchase calls to Redis per request / their mean ms, by round: "
          + " ".join(f"{float(r['calls_per_req']):.2f}/{float(r['call_ms']):.2f}" for r in mine))
print("Redis forks (append-only-file rewrites) during each run, by round: " + "; ".join(
    f"{key} {' '.join(r['forks'] for r in rows if r['target'] == key)}" for key, _ in names))
json.dump({"title": "Purchase cost per request, medians (server + Redis CPU)", "unit": "µs",
           "labels": [label for _, label in names],
           "series": [{"name": "server", "values": [round(med[k][1], 1) for k, _ in names]},
                      {"name": "redis-server", "values": [round(med[k][2], 1) for k, _ in names]}]},
          open(f"{out}/peers.json", "w"))
PY
python3 scripts/lib/chart.py bars "$OUT/peers.json" "$OUT/peers.svg"
for name in guarded unguarded; do
    echo "$name: $(grep -c -E ' (WARN|ERROR) ' "$tmp/$name.log" || true) warnings/errors in its log"
done
echo "statuses of round 1: $(for n in minimal openresty guarded unguarded; do printf '%s: %s; ' "$n" "$(awk '/^status / { printf "%s=%s ", $2, $3 }' "$OUT/$n-r1.txt")"; done)"
echo "figures: $OUT/results.csv, chart: $OUT/peers.svg"
