#!/usr/bin/env bash
# Benchmark of the expiry sweeper against PostgreSQL 15 (fsync on) and redis-server, all on
# 127.0.0.1: examples/expiry_throughput.rs records ORDERS unpaid, overdue one-unit orders of
# a sale (buyer records in Redis, rows in PostgreSQL), then times one instance's sweeps until
# every order is expired and its unit is back on the shelves: a batched
# `UPDATE … FOR UPDATE SKIP LOCKED` per BATCH orders, one return_units.lua call per order, a
# batched mark of the returns. Target: at least 10,000 expiries per minute.
#
# Usage: scripts/bench-expiry.sh
# Environment: ORDERS (20000), BATCH (500, the gateway default `lifecycle.batch`), PROFILE
# (release; `debug` for a quick check that it works, far slower).
# Starts its own PostgreSQL and redis-server on free loopback ports and stops them on exit.
# The result line is kept in target/bench-expiry/result.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ORDERS=${ORDERS:-20000}
BATCH=${BATCH:-500}
PROFILE=${PROFILE:-release}
TARGET_PER_MIN=10000
OUT=target/bench-expiry
DB=expiry_bench

BENCH_NAME=bench-expiry
tmp=$(mktemp -d)
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
pids=()
cleanup() {
    stop_pids
    stop_postgres
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case $PROFILE in
release) build=(cargo build --release --example expiry_throughput) ;;
debug) build=(cargo build --example expiry_throughput) ;;
*) die "PROFILE must be release or debug, not '$PROFILE'" ;;
esac
quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
quietly "${build[*]}" "${build[@]}"
mkdir -p "$OUT" "$tmp/redis"

start_postgres
psql_as_postgres postgres -c "CREATE DATABASE $DB"
progress "starting redis-server"
start_redis "$tmp/redis"

progress "sweeping $ORDERS overdue orders in batches of $BATCH"
"target/$PROFILE/examples/expiry_throughput" "postgres://postgres@127.0.0.1:$PGPORT/$DB" \
    "redis://127.0.0.1:$RPORT" "$ORDERS" "$BATCH" >"$OUT/run.txt" 2>&1 ||
    { cat "$OUT/run.txt" >&2; die "expiry_throughput failed"; }
line=$(grep '^expiry orders=' "$OUT/run.txt") || die "no result line in $OUT/run.txt"
echo "$line" >"$OUT/result.txt"
per_min=$(sed 's/.* per_min=\([0-9]*\).*/\1/' <<<"$line")
[[ -t 2 ]] && printf '\r\033[K' >&2
echo "$line (profile $PROFILE)"
if ((per_min >= TARGET_PER_MIN)); then
    echo "PASS: $per_min expiries/min >= $TARGET_PER_MIN"
else
    echo "FAIL: $per_min expiries/min < $TARGET_PER_MIN"
fi
