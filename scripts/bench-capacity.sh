#!/usr/bin/env bash
# The capacity model's figures: accepted purchases/s with 1, 2 and 3 Redis Cluster masters
# in one run, on the topology of scripts/cluster.sh (no replicas, GATEWAYS gateways behind
# nginx, PostgreSQL), the same wrk settings through the balancer each time, and one hot sale
# of 3 shards per master. Each run has a fresh cluster and the same buyers. docs/BENCHMARKS.md
# ("Capacity model") turns the figures into masters, shards and gateways for a target peak.
#
# Usage: scripts/bench-capacity.sh
# Environment: MASTERS_LIST ("1 2 3"), GATEWAYS (2), WRK_THREADS (2), WRK_CONNS (128),
# WRK_DURATION (10s, whole seconds), BENCH_TOKENS (1000000: buyers, each buys once per run),
# PROFILE (release; debug only to prove the script at a tiny size: its figures mean nothing).
# Outputs in target/bench-capacity/: capacity.csv (masters,shards,accepted_per_s,p50_ms,
# p99_ms,other_answers,gateway_cpu_s,redis_cpu_s), capacity.json and capacity.svg (bars,
# scripts/lib/chart.py), and each wrk output.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MASTERS_LIST=${MASTERS_LIST:-1 2 3}
GATEWAYS=${GATEWAYS:-2}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-128}
WRK_DURATION=${WRK_DURATION:-10s}
BENCH_TOKENS=${BENCH_TOKENS:-1000000}
PROFILE=${PROFILE:-release}
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-capacity
CLUSTER_DIR=$OUT/cluster
SALE=bench-capacity

BENCH_NAME=bench-capacity
tmp=$(mktemp -d)
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
# shellcheck source=scripts/lib/cluster_bench.sh
source scripts/lib/cluster_bench.sh
pids=()
cleanup() {
    stop_cluster
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $WRK_DURATION =~ ^[0-9]+s$ ]] || die "WRK_DURATION must be whole seconds, e.g. 10s"
for masters in $MASTERS_LIST; do
    if ! [[ $masters =~ ^[0-9]+$ ]] || ((masters < 1 || masters > 16)); then
        die "MASTERS_LIST holds 1..16 each"
    fi
done
quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
build_binaries
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/capacity.*
mint_buyers

# CPU seconds (user + system) used so far by the processes of the pid files matching GLOB.
cpu_seconds() {
    local file total=0
    for file in "$CLUSTER_DIR"/pids/$1; do
        [[ -e $file ]] || continue
        total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$(cat "$file")/stat" 2>/dev/null || echo 0)))
    done
    awk -v t="$total" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / h }'
}

echo "masters,shards,accepted_per_s,p50_ms,p99_ms,other_answers,gateway_cpu_s,redis_cpu_s" >"$OUT/capacity.csv"
for masters in $MASTERS_LIST; do
    shards=$((3 * masters))
    start_cluster MASTERS="$masters" REPLICAS=0 GATEWAYS="$GATEWAYS"
    live_sale "$CLUSTER_URL" "$SALE" 1000000000 "$shards"
    gateway_before=$(cpu_seconds 'gateway-*')
    redis_before=$(cpu_seconds 'redis-*')
    wrk_purchases "masters-$masters" "$CLUSTER_URL" "$SALE"
    gateway_cpu=$(awk -v a="$gateway_before" -v b="$(cpu_seconds 'gateway-*')" 'BEGIN { printf "%.1f", b - a }')
    redis_cpu=$(awk -v a="$redis_before" -v b="$(cpu_seconds 'redis-*')" 'BEGIN { printf "%.1f", b - a }')
    stop_cluster
    echo "$masters,$shards,$(wrk_accepted_rps "masters-$masters"),$(wrk_pct "masters-$masters" 50%)," \
        "$(wrk_pct "masters-$masters" 99%),$(wrk_other "masters-$masters"),$gateway_cpu,$redis_cpu" |
        tr -d ' ' >>"$OUT/capacity.csv"
done
[[ ! -t 2 ]] || printf '\r\033[K' >&2

# The chart: accepted purchases/s per master count.
awk -F, -v title="Accepted purchases/s by Redis Cluster masters ($GATEWAYS gateways behind nginx, $PROFILE build, $(nproc) cores)" '
    NR > 1 { labels = labels sep "\"" $1 " master" ($1 > 1 ? "s" : "") " (" $2 " shards)\""; values = values sep $3; sep = ", " }
    END { printf "{\"title\": \"%s\", \"unit\": \"purchases/s\", \"labels\": [%s], \"series\": [{\"name\": \"accepted/s\", \"values\": [%s]}]}\n", title, labels, values }' \
    "$OUT/capacity.csv" >"$OUT/capacity.json"
python3 scripts/lib/chart.py bars "$OUT/capacity.json" "$OUT/capacity.svg"

echo "bench-capacity ($PROFILE build; wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION through nginx;" \
    "$GATEWAYS gateways; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)):"
column -s, -t "$OUT/capacity.csv"
echo "chart $OUT/capacity.svg; raw outputs in $OUT/"
