#!/usr/bin/env bash
# HTTP benchmark of the gateway against its ceilings, all on 127.0.0.1 with the same wrk settings:
#   (a) hello      examples/hello.rs: axum "hello" on the gateway's runtime, the HTTP ceiling,
#                  sent the same requests as (b) by the same wrk script; (a0) a plain GET /
#   (b) purchase   POST /api/v1/sales/{id}/purchase while stock lasts; every request is a
#                  distinct buyer (pre-minted JWTs, examples/mint_tokens.rs) with a fresh
#                  Idempotency-Key (benches/wrk/purchase.lua)
#   (c) sold out   the same script against a sale whose only unit was bought before the run
#   (d), (e)       (b) and (c) again against a second gateway with every edge guard on: a
#                  purchase token required (each buyer's pre-minted one, in the body), and
#                  per-IP, per-buyer and per-sale rate limits (set high enough to refuse
#                  nothing: all wrk traffic comes from one IP); (b) and (c) run with guards
#                  off (no token, no rate limit). Target: (d) >= 90% of (b), (e) of (c).
#                  The pairs (a), (b) and (a), (c) and (c), (e) run ROUNDS times,
#                  alternating, and their median ratios are reported (one 10-s figure moves
#                  by +-10% on this shared machine); each round of (b) has buyers of its
#                  own (a sold-out answer consumes no buyer or token).
# plus Redis ceiling lines (redis-benchmark PING, and EVALSHA of our own purchase.lua).
# After (b) it checks that the sale's `sold`
# equals the 202 answers and counts Redis commands per accepted purchase (INFO commandstats),
# then names the script of every top-level EVALSHA during a short MONITOR sample of purchases.
#
# COMPARE_ENV="NAME=value ...": also run (f), the in-stock purchase on a third gateway with
# those settings on top of (b)'s, in every round right after (b), and report (f)/(a) and
# (b)/(f) (e.g. COMPARE_ENV="FLASHGATE_METRICS__ENABLED=false" for the cost of metrics).
# Usage: scripts/bench-http.sh
# Environment: WRK_THREADS (2), WRK_CONNS (64), WRK_DURATION (10s), ROUNDS (3),
# BENCH_TOKENS (1000000:
# buyers for each round of (b); each buys once, so a run must not send more purchases than
# this).
# Starts its own redis-server, hello and gateway on free loopback ports in a temp dir and
# stops them on exit. Raw wrk outputs are kept in target/bench-http/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
BENCH_TOKENS=${BENCH_TOKENS:-1000000}
ROUNDS=${ROUNDS:-3}
LIVE_SALE=bench-live
GUARDED_PREFIX=bench-g
SOLD_OUT_SALE=bench-sold-out
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-http

BENCH_NAME=bench-http
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


# A wrk latency figure (e.g. 812.00us, 1.20ms, 2.01s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n }'
}

# run_wrk NAME URL [SCRIPT ARGS...]: runs wrk, keeps its output in $OUT/NAME.txt.
run_wrk() {
    local name=$1 url=$2
    shift 2
    local target=("$url")
    (($# == 0)) || target=(-s "$1" "$url" -- "${@:2}")
    progress "wrk ($name)"
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency "${target[@]}" >"$OUT/$name.txt" 2>&1 ||
        { cat "$OUT/$name.txt" >&2; die "wrk ($name) failed"; }
}

# Fields of a wrk output: req/s, p50 ms, p99 ms.
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$OUT/$1.txt"; }
wrk_pct() { to_ms "$(awk -v p="$2" '$1 == p { print $2; exit }' "$OUT/$1.txt")"; }
wrk_status() { awk '/^status / { printf "%s%s: %s", sep, $2, $3; sep = ", " }' "$OUT/$1.txt"; }
wrk_count() { awk -v k="$2" '$1 == k { s += $2 } END { print s + 0 }' "$OUT/$1.txt"; }
wrk_answers() { awk -v c="$2" '$1 == "status" && $2 == c { s += $3 } END { print s + 0 }' "$OUT/$1.txt"; }

# buy_one PORT SALE JWT BODY: one purchase that must be accepted.
buy_one() {
    local code
    code=$(curl -sS -o "$tmp/body.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $3" \
        -H 'Idempotency-Key: seed-1' -H 'Content-Type: application/json' --data "$4" \
        "http://127.0.0.1:$1/api/v1/sales/$2/purchase")
    [[ $code == 202 ]] || die "buying $2's only unit answered $code: $(cat "$tmp/body.json")"
}

# sale_generation PREFIX SALE: the sale's generation in Redis (purchase tokens are bound to
# it; it changes only when the definition is replaced).
sale_generation() {
    redis-cli -h 127.0.0.1 -p "$RPORT" HGET "$1:sale:{$2}" generation
}

# "command calls" lines from INFO commandstats.
cmdstats() {
    redis-cli -h 127.0.0.1 -p "$RPORT" INFO commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p'
}

quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
quietly "cargo build --release --examples --bins" cargo build --release --examples --bins
mkdir -p "$OUT" "$tmp/redis"

# Buyers for (b) and (c), and a separate buyer who empties the sold-out sale.
quietly "minting $BENCH_TOKENS tokens" target/release/examples/mint_tokens "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/tokens.txt"
for ((round = 2; round <= ROUNDS; round++)); do # other buyers for each later round of (b)
    MINT_USER_PREFIX="r$round-" quietly "minting $BENCH_TOKENS tokens for round $round" \
        target/release/examples/mint_tokens "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/tokens-r$round.txt"
done

progress "starting redis-server, hello and the gateway"
start_redis "$tmp/redis"
progress "redis-benchmark PING"
redis_ping=$(redis-benchmark -h 127.0.0.1 -p "$RPORT" -n 200000 -c 50 -P 1 -q PING | tr '\r' '\n' |
    awk '/requests per second/ { p50 = $0; sub(/.*p50=/, "", p50); print $2, "p50 " p50; exit }')
# The Redis ceiling of the deduction itself: purchase.lua alone, one purchase per call,
# distinct buyers and keys, on one shard with unbounded stock (the same script, keys and
# argument shapes the gateway sends; nothing persists these orders, so the stream just
# grows).
progress "redis-benchmark EVALSHA purchase.lua"
sha=$(redis-cli -h 127.0.0.1 -p "$RPORT" SCRIPT LOAD "$(cat lua/purchase.lua)")
redis-cli -h 127.0.0.1 -p "$RPORT" HSET 'rb:{s:0}:stock' stock 1000000000 lent 0 ver 1 allotted 1000000000 received 0 given 0 acked 0 >/dev/null
redis_eval=$(redis-benchmark -h 127.0.0.1 -p "$RPORT" -n 200000 -c 50 -r 1000000000 -q \
    EVALSHA "$sha" 4 'rb:{s:0}:stock' 'rb:{s:0}:buyers' 'rb:{s:0}:orders' 'rb:{s:0}:credited' 1 user__rand_int__ 1 1 'u:k__rand_int__' fp 1700000000000 s 0 '' '' 0 |
    tr '\r' '\n' | awk '/requests per second/ { p50 = $0; sub(/.*p50=/, "", p50); print $(NF-5), "p50 " p50; exit }')
redis-cli -h 127.0.0.1 -p "$RPORT" FLUSHALL >/dev/null

free_port
HPORT=$REPLY
target/release/examples/hello "$HPORT" 2>"$tmp/hello.log" &
pids+=($!)
wait_for hello "${pids[-1]}" "$tmp/hello.log" 100 curl -sf "http://127.0.0.1:$HPORT/"


# Guards off (no purchase token, no rate limit) and on (guard_settings says which limits).
guard_settings off
start_gateway gateway bench "${guards[@]}"
GPORT=$REPLY
guard_settings on
start_gateway guarded "$GUARDED_PREFIX" "${guards[@]}"
G2PORT=$REPLY

# (f), when COMPARE_ENV is set: the (b) gateway once more with those settings on top (e.g.
# observability off), its own key prefix, so the same buyers buy again there.
ports=("$GPORT" "$G2PORT")
if [[ -n ${COMPARE_ENV:-} ]]; then
    guard_settings off
    # shellcheck disable=SC2086 # COMPARE_ENV is a list of NAME=value words
    start_gateway compare compare "${guards[@]}" $COMPARE_ENV
    G3PORT=$REPLY
    ports+=("$G3PORT")
fi
for port in "${ports[@]}"; do
    put_live_sale "$port" "$LIVE_SALE" 10000000 64
    put_live_sale "$port" "$SOLD_OUT_SALE" 1 1
done
seed=$(FLASHGATE_AUTH__JWT_SECRET=$JWT_SECRET FLASHGATE_ADMIN__TOKEN=$ADMIN_TOKEN \
    target/release/flashgate token --user bench-seed)
buy_one "$GPORT" "$SOLD_OUT_SALE" "$seed" '{"quantity":1}'
# The guarded runs' buyers carry purchase tokens bound to each sale's generation; the guarded
# sold-out sale's unit goes to a buyer outside the wrk files.
for sale in "$LIVE_SALE" "$SOLD_OUT_SALE"; do
    quietly "minting $BENCH_TOKENS purchase tokens for $sale" target/release/examples/mint_tokens \
        "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/tokens-$sale.txt" "$sale" "$(sale_generation "$GUARDED_PREFIX" "$sale")"
done
MINT_USER_PREFIX=seed- quietly "minting the seed buyer's purchase token" target/release/examples/mint_tokens \
    "$JWT_SECRET" 1 "$tmp/seed.txt" "$SOLD_OUT_SALE" "$(sale_generation "$GUARDED_PREFIX" "$SOLD_OUT_SALE")"
read -r seed_jwt seed_token <"$tmp/seed.txt"
buy_one "$G2PORT" "$SOLD_OUT_SALE" "$seed_jwt" "{\"quantity\":1,\"purchase_token\":\"$seed_token\"}"

lua=(benches/wrk/purchase.lua "$tmp/tokens.txt" "$WRK_THREADS")
# (a) gets the very requests (b) and (c) get: same script, headers and body. The script
# builds every request in Lua, which costs wrk itself CPU, so a plain GET (a0) is faster
# still; it is printed for reference only.
run_wrk a "http://127.0.0.1:$HPORT/api/v1/sales/$LIVE_SALE/purchase" "${lua[@]}"
run_wrk a0 "http://127.0.0.1:$HPORT/"
cmdstats >"$tmp/before"
run_wrk b "http://127.0.0.1:$GPORT/api/v1/sales/$LIVE_SALE/purchase" "${lua[@]}"
cmdstats >"$tmp/after"
sleep 0.5 # let the gateway finish the requests wrk stopped waiting for
code=$(admin GET "/admin/v1/sales/$LIVE_SALE")
[[ $code == 200 ]] || die "GET sale $LIVE_SALE answered $code"
# The sale's own "sold", not a shard's.
sold=$(sed 's/"shards":\[[^]]*\]//' "$tmp/body.json" | grep -o '"sold":[0-9]*' | head -n 1 | cut -d: -f2)
[[ -n $sold ]] || die "no sold count in $(cat "$tmp/body.json")"
accepted=$(wrk_answers b 202)
((accepted > 0)) || die "(b) got no 202 answer; statuses: $(wrk_status b)"
[[ -z ${COMPARE_ENV:-} ]] ||
    run_wrk f "http://127.0.0.1:$G3PORT/api/v1/sales/$LIVE_SALE/purchase" "${lua[@]}"
run_wrk c "http://127.0.0.1:$GPORT/api/v1/sales/$SOLD_OUT_SALE/purchase" "${lua[@]}"
run_wrk d "http://127.0.0.1:$G2PORT/api/v1/sales/$LIVE_SALE/purchase" \
    benches/wrk/purchase.lua "$tmp/tokens-$LIVE_SALE.txt" "$WRK_THREADS"
run_wrk e "http://127.0.0.1:$G2PORT/api/v1/sales/$SOLD_OUT_SALE/purchase" \
    benches/wrk/purchase.lua "$tmp/tokens-$SOLD_OUT_SALE.txt" "$WRK_THREADS"
for ((round = 2; round <= ROUNDS; round++)); do
    run_wrk "a$round" "http://127.0.0.1:$HPORT/api/v1/sales/$LIVE_SALE/purchase" "${lua[@]}"
    run_wrk "b$round" "http://127.0.0.1:$GPORT/api/v1/sales/$LIVE_SALE/purchase" \
        benches/wrk/purchase.lua "$tmp/tokens-r$round.txt" "$WRK_THREADS"
    [[ -z ${COMPARE_ENV:-} ]] || run_wrk "f$round" "http://127.0.0.1:$G3PORT/api/v1/sales/$LIVE_SALE/purchase" \
        benches/wrk/purchase.lua "$tmp/tokens-r$round.txt" "$WRK_THREADS"
    run_wrk "c$round" "http://127.0.0.1:$GPORT/api/v1/sales/$SOLD_OUT_SALE/purchase" "${lua[@]}"
    run_wrk "e$round" "http://127.0.0.1:$G2PORT/api/v1/sales/$SOLD_OUT_SALE/purchase" \
        benches/wrk/purchase.lua "$tmp/tokens-$SOLD_OUT_SALE.txt" "$WRK_THREADS"
done

# Which script each EVALSHA runs cannot be told from commandstats, and MONITOR is too slow to
# leave on during a measured run: watch SAMPLE purchases one after another instead, by buyers
# from the end of the token file (unused by (b) unless it reported reused tokens).
SAMPLE=100
progress "MONITOR sample"
redis-cli -h 127.0.0.1 -p "$RPORT" MONITOR >"$tmp/monitor.txt" 2>&1 &
pids+=($!)
wait_for "redis-cli MONITOR" "${pids[-1]}" "$tmp/monitor.txt" 50 grep -q '^OK' "$tmp/monitor.txt"
sample_ok=0
sample_key=0
while read -r token; do
    sample_key=$((sample_key + 1))
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" \
        -H "Idempotency-Key: sample-$sample_key" -H 'Content-Type: application/json' \
        --data '{"quantity":1}' "http://127.0.0.1:$GPORT/api/v1/sales/$LIVE_SALE/purchase")
    [[ $code == 202 ]] && sample_ok=$((sample_ok + 1))
done < <(tail -n "$SAMPLE" "$tmp/tokens.txt")
sleep 0.2
kill "${pids[-1]}"
((sample_ok > 0)) || die "no purchase of the MONITOR sample was accepted"

# Report.
[[ ! -t 2 ]] || printf '\r\033[K' >&2
a_rps=$(wrk_rps a)
echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency, 127.0.0.1, $(nproc) cores, $BENCH_TOKENS buyers"
printf '%-30s %10s %9s %9s %7s\n' target req/s "p50 ms" "p99 ms" "vs (a)"
for run in "a hello (HTTP ceiling)" "a0 hello, plain GET" "b purchase, in stock" "c purchase, sold out" \
    "d guarded, in stock" "e guarded, sold out"; do
    name=${run%% *}
    rps=$(wrk_rps "$name")
    printf '%-30s %10s %9s %9s %7s\n' "($name) ${run#* }" "$rps" "$(wrk_pct "$name" 50%)" \
        "$(wrk_pct "$name" 99%)" "$(awk -v r="$rps" -v a="$a_rps" 'BEGIN { printf "%.2f", r / a }')"
done
printf '%-30s %10s %s\n' "redis PING (-c 50 -P 1)" "${redis_ping%% *}" "(redis-benchmark, ${redis_ping#* })"
printf '%-30s %10s %s\n' "redis EVALSHA purchase.lua" "${redis_eval%% *}" "(redis-benchmark -c 50, ${redis_eval#* })"
echo "(b) vs the EVALSHA ceiling: $(awk -v b="$(wrk_rps b)" -v e="${redis_eval%% *}" 'BEGIN { printf "%.2f", b / e }')"
ratio() { awk -v x="$(wrk_rps "$1")" -v y="$(wrk_rps "$2")" 'BEGIN { printf "%.2f", x / y }'; }
# median A B: the median over the rounds of wrk runs A<round> / B<round> ("A" in round 1),
# then the ratio of each round.
median() {
    local ratios r
    ratios=$(ratio "$1" "$2")
    for ((r = 2; r <= ROUNDS; r++)); do
        ratios+=" $(ratio "$1$r" "$2$r")"
    done
    echo "$(tr ' ' '\n' <<<"$ratios" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') of rounds: $ratios"
}
# Figures as JSON and charts (SVG) next to the raw outputs, for docs/BENCHMARKS.md.
{
    printf '{"title": "Throughput per path (wrk -t%s -c%s, round 1)", "unit": "req/s",\n' "$WRK_THREADS" "$WRK_CONNS"
    printf ' "labels": ["(a) hello (HTTP ceiling)", "(b) purchase, in stock", "(c) purchase, sold out", "(d) guarded, in stock", "(e) guarded, sold out", "redis EVALSHA purchase.lua"],\n'
    printf ' "series": [{"name": "req/s", "values": [%s, %s, %s, %s, %s, %s]}]}\n' \
        "$(wrk_rps a)" "$(wrk_rps b)" "$(wrk_rps c)" "$(wrk_rps d)" "$(wrk_rps e)" "${redis_eval%% *}"
} >"$OUT/throughput.json"
{
    printf '{"title": "Latency per path (wrk, round 1)", "unit": "ms",\n'
    printf ' "labels": ["(a) hello", "(b) in stock", "(c) sold out", "(d) guarded, in stock", "(e) guarded, sold out"],\n'
    printf ' "series": [{"name": "p50", "values": [%s, %s, %s, %s, %s]}, {"name": "p99", "values": [%s, %s, %s, %s, %s]}]}\n' \
        "$(wrk_pct a 50%)" "$(wrk_pct b 50%)" "$(wrk_pct c 50%)" "$(wrk_pct d 50%)" "$(wrk_pct e 50%)" \
        "$(wrk_pct a 99%)" "$(wrk_pct b 99%)" "$(wrk_pct c 99%)" "$(wrk_pct d 99%)" "$(wrk_pct e 99%)"
} >"$OUT/latency.json"
python3 scripts/lib/chart.py bars "$OUT/throughput.json" "$OUT/throughput.svg"
python3 scripts/lib/chart.py bars "$OUT/latency.json" "$OUT/latency.svg"
echo "charts: $OUT/throughput.svg, $OUT/latency.svg (figures in the .json beside them)"
echo "(b)/(a) in stock vs hello: median $(median b a)"
echo "(c)/(a) sold out vs hello: median $(median c a)"
if [[ -n ${COMPARE_ENV:-} ]]; then
    echo "(f) = (b) with $COMPARE_ENV: (f)/(a) median $(median f a)"
    echo "(b)/(f): median $(median b f)"
fi
echo "guards on vs off: in stock (d)/(b) $(ratio d b); sold out (e)/(c) median $(median e c)"
for name in b c d e $(for ((r = 2; r <= ROUNDS; r++)); do echo "b$r"; done); do
    echo "($name) statuses: $(wrk_status "$name")"
    reused=$(wrk_count "$name" tokens_reused)
    ((reused == 0)) || echo "($name) WARNING: $reused requests reused a buyer; raise BENCH_TOKENS or shorten WRK_DURATION"
    grep -h 'Socket errors' "$OUT/$name.txt" | sed "s/^ */($name) /" || true
done

# Requests wrk sent but stopped waiting for at the end of the run may still have been sold.
# wrk calls request() once more than it sends, to check the script.
in_flight=$(($(wrk_count b requests_sent) - 1 - $(wrk_count b responses)))
extra=$((sold - accepted))
if ((extra == 0)); then
    verdict=OK
elif ((extra > 0 && extra <= in_flight)); then
    verdict="OK ($extra sold to requests in flight when wrk stopped; $in_flight were in flight)"
else
    verdict="MISMATCH (difference $extra, $in_flight in flight when wrk stopped)"
fi
echo "(b) sold $sold vs 202 answers $accepted: $verdict"

awk -v n="$accepted" '
    NR == FNR { before[$1] = $2; next }
    $1 != "info" { d = $2 - before[$1]; if (d > 0) { delta[$1] = d; total += d } }
    END {
        printf "(b) redis commandstats: evalsha %d = %.3f per 202, all commands %d = %.2f per 202\n",
            delta["evalsha"], delta["evalsha"] / n, total, total / n
        printf "    per 202 (incl. commands inside Lua and the order writer):"
        for (c in delta) if (delta[c] / n >= 0.01) printf " %s %.2f", c, delta[c] / n
        print ""
    }' "$tmp/before" "$tmp/after"

# Which script each top-level EVALSHA ran, from the MONITOR sample.
for f in lua/*.lua; do
    echo "$(sha1sum <"$f" | cut -d' ' -f1) $(basename "$f")"
done >"$tmp/shas"
awk -v n="$sample_ok" -v m="$SAMPLE" '
    NR == FNR { name[$1] = $2; next }
    $1 !~ /^[0-9]/ || $3 ~ /lua\]$/ { next }
    {
        c = tolower($4); gsub(/"/, "", c)
        if (c == "evalsha") { s = $5; gsub(/"/, "", s); c = (s in name) ? name[s] : "evalsha:" substr(s, 1, 8) }
        count[c]++
    }
    END {
        printf "MONITOR over %d sequential purchases (%d x 202): EVALSHA purchase.lua %d = %.2f per 202\n",
            m, n, count["purchase.lua"], count["purchase.lua"] / n
        printf "    other top-level commands meanwhile (order writer, workers):"
        for (c in count) if (c != "purchase.lua") printf " %s %d", c, count[c]
        print ""
    }' "$tmp/shas" "$tmp/monitor.txt"
for name in gateway guarded; do
    echo "$name log: $(grep -c -E ' (WARN|ERROR) ' "$tmp/$name.log" || true) warnings/errors"
done
