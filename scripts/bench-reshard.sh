#!/usr/bin/env bash
# Benchmark of a live reshard under load: the release gateway (purchase tokens off; SQLite
# orders) gets closed-loop purchases from CONNECTIONS workers for SECONDS, each by a distinct
# buyer (examples/reshard_under_load.rs), while its one sale is resharded as PLAN says
# (default: 8 shards at the start, to 64 at 6 s, back to 8 at 13 s). Reports, per reshard,
# how long it took, the throughput the second before it, the lowest 100-ms bucket while it
# ran (and one second after), and how long the throughput stayed under 90 % of the one
# before; and checks that every answer was a 202 (a reshard refuses nobody).
#
# Usage: scripts/bench-reshard.sh
# Environment: SECONDS_LOAD (20), CONNECTIONS (64), PLAN (6:64,13:8), TOKENS (600000).
# Starts its own redis-server and gateway on free loopback ports and stops them on exit.
# Raw outputs are kept in target/bench-reshard/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_LOAD=${SECONDS_LOAD:-20}
CONNECTIONS=${CONNECTIONS:-64}
PLAN=${PLAN:-6:64,13:8}
TOKENS=${TOKENS:-600000}
SALE=bench-reshard
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-reshard

BENCH_NAME=bench-reshard
tmp=$(mktemp -d)
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
pids=()
cleanup() {
    stop_pids
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
quietly "cargo build --release --bins --examples" cargo build --release --bins --examples
mkdir -p "$OUT"
rm -f "$OUT"/*
progress "starting redis-server"
start_redis "$tmp/redis"
quietly "minting $TOKENS tokens" target/release/examples/mint_tokens "$JWT_SECRET" "$TOKENS" "$tmp/tokens.txt"
progress "starting the gateway"
free_port
GPORT=$REPLY
FLASHGATE_HTTP__ADDR=127.0.0.1:$GPORT \
    FLASHGATE_HTTP__REQUEST_TIMEOUT_MS=30000 \
    FLASHGATE_REDIS__URL=redis://127.0.0.1:$RPORT \
    FLASHGATE_REDIS__KEY_PREFIX=reshard \
    FLASHGATE_AUTH__JWT_SECRET=$JWT_SECRET \
    FLASHGATE_ADMIN__TOKEN=$ADMIN_TOKEN \
    FLASHGATE_DATABASE__URL="sqlite://$tmp/orders.db" \
    FLASHGATE_TOKENS__REQUIRE_PURCHASE_TOKEN=false \
    RUST_LOG=warn target/release/flashgate serve 2>"$tmp/gateway.log" &
pids+=($!)
gateway_pid=${pids[-1]}
wait_for gateway "$gateway_pid" "$tmp/gateway.log" 300 curl -sf "http://127.0.0.1:$GPORT/health/ready"
put_live_sale "$GPORT" "$SALE" 100000000 8

progress "load for ${SECONDS_LOAD}s with reshards at $PLAN"
target/release/examples/reshard_under_load "http://127.0.0.1:$GPORT" "$SALE" "$tmp/tokens.txt" \
    "$ADMIN_TOKEN" "$SECONDS_LOAD" "$CONNECTIONS" "$PLAN" >"$OUT/run.txt" 2>&1 ||
    { cat "$OUT/run.txt" >&2; die "reshard_under_load failed"; }
[[ ! -t 2 ]] || printf '\r\033[K' >&2
other=$(sed -n 's/^answers s202=[0-9]* other=\([0-9]*\)$/\1/p' "$OUT/run.txt")
echo "machine: $(nproc) cores, $(uname -r); $(date -u +%F); connections=$CONNECTIONS plan=$PLAN"
grep -E '^(reshard|answers)' "$OUT/run.txt"
# The run as a chart: accepted purchases per second over time, the reshards marked.
python3 - "$OUT/run.txt" "$OUT/timeline.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
bucket, rates = re.search(r"^timeline bucket_ms=(\d+) (\S+)$", text, re.M).groups()
step = int(bucket) / 1000
points = [[round(i * step, 1), float(r)] for i, r in enumerate(rates.split(","))]
markers = []
for to, start, end in re.findall(r"^reshard_window to=(\d+) start_s=(\S+) end_s=(\S+)$", text, re.M):
    markers.append({"x": float(start), "label": f"reshard to {to}"})
    markers.append({"x": float(end), "label": "done"})
json.dump({"title": "Accepted purchases per second during live reshards (100-ms buckets)",
           "x_unit": "seconds", "y_unit": "req/s",
           "series": [{"name": "202 answers/s", "points": points}], "markers": markers},
          open(sys.argv[2], "w"))
PY
python3 scripts/lib/chart.py lines "$OUT/timeline.json" "$OUT/timeline.svg"
echo "chart: $OUT/timeline.svg"
[[ $other == 0 ]] || die "$other answers were not 202 (see $OUT/run.txt)"
echo "every answer was 202: PASS"
