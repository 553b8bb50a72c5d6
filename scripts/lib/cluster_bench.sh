# shellcheck shell=bash
# What the cluster benchmarks (scripts/bench-durability.sh, scripts/bench-capacity.sh) share:
# building the binaries of one profile, minting buyers, starting one configuration of
# scripts/cluster.sh, a live sale on it, and wrk's purchase figures. Sourced after
# scripts/lib/bench.sh; the caller sets OUT, PROFILE (release or debug), WRK_THREADS,
# WRK_CONNS, WRK_DURATION, BENCH_TOKENS, JWT_SECRET, ADMIN_TOKEN and CLUSTER_DIR, and calls
# stop_cluster from its exit trap.

# Builds the gateway and the token minter in $PROFILE (debug only for proving a script at a
# tiny size: its figures mean nothing).
build_binaries() {
    local flags=()
    [[ $PROFILE == release ]] && flags=(--release)
    quietly "cargo build ${flags[*]} --bin flashgate --example mint_tokens" \
        cargo build "${flags[@]}" --bin flashgate --example mint_tokens
    BIN=$PWD/target/$PROFILE/flashgate
}

# Mints BENCH_TOKENS buyers (one JWT a line) into $tmp/tokens.txt.
mint_buyers() {
    quietly "minting $BENCH_TOKENS buyers" "target/$PROFILE/examples/mint_tokens" \
        "$JWT_SECRET" "$BENCH_TOKENS" "$tmp/tokens.txt"
}

# start_cluster [NAME=value...]: scripts/cluster.sh start with these settings on top of the
# benchmark's (every edge guard off: no purchase token, no rate limit); sources its env lines.
start_cluster() {
    progress "scripts/cluster.sh start $*"
    env CLUSTER_DIR="$CLUSTER_DIR" GATEWAY_BIN="$BIN" ADMIN_TOKEN="$ADMIN_TOKEN" JWT_SECRET="$JWT_SECRET" \
        FLASHGATE_TOKENS__REQUIRE_PURCHASE_TOKEN=false FLASHGATE_LIMITS__IP__RATE_PER_SEC=0 \
        FLASHGATE_LIMITS__USER__RATE_PER_SEC=0 FLASHGATE_LIMITS__SALE__RATE_PER_SEC=0 RUST_LOG=warn \
        "$@" scripts/cluster.sh start >"$tmp/cluster.env" 2>"$tmp/cluster.log" ||
        { tail -n 20 "$tmp/cluster.log" >&2; die "scripts/cluster.sh start $* failed"; }
    # shellcheck disable=SC1091
    source "$tmp/cluster.env"
}

stop_cluster() {
    CLUSTER_DIR=$CLUSTER_DIR scripts/cluster.sh stop >/dev/null 2>&1 || true
}

# live_sale URL ID STOCK SHARDS: a live sale (one unit per buyer) through the gateway at URL.
live_sale() {
    local port=${1##*:}
    put_live_sale "$port" "$2" "$3" "$4"
}

# wrk_purchases NAME URL SALE: wrk's purchase load (each request a distinct buyer) against
# URL for SALE; its output in $OUT/NAME.txt.
wrk_purchases() {
    progress "wrk ($1)"
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency -s benches/wrk/purchase.lua \
        "$2/api/v1/sales/$3/purchase" -- "$tmp/tokens.txt" "$WRK_THREADS" >"$OUT/$1.txt" 2>&1 ||
        { cat "$OUT/$1.txt" >&2; die "wrk ($1) failed"; }
    local reused
    reused=$(awk '$1 == "tokens_reused" { print $2 }' "$OUT/$1.txt")
    [[ ${reused:-0} == 0 ]] || die "wrk ($1) ran out of buyers: raise BENCH_TOKENS"
}

# A wrk latency figure (812.00us, 1.20ms, 2.01s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN { n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n }'
}

# Figures of wrk run NAME: accepted purchases per second (202 answers over the run's
# seconds), p50 ms, p99 ms, and the count of answers other than 202.
wrk_accepted_rps() {
    awk -v d="${WRK_DURATION%s}" '$1 == "status" && $2 == 202 { n += $3 } END { printf "%.0f", n / d }' "$OUT/$1.txt"
}
wrk_pct() { to_ms "$(awk -v p="$2" '$1 == p { print $2; exit }' "$OUT/$1.txt")"; }
wrk_other() { awk '$1 == "status" && $2 != 202 { n += $3 } END { print n + 0 }' "$OUT/$1.txt"; }
