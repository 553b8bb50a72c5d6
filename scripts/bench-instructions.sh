#!/usr/bin/env bash
# Instructions per guarded purchase in the gateway, counted by valgrind's callgrind: a figure
# the machine's load does not move (the CPU time of bench-ab.sh and bench-cpu.sh does, since
# this virtual machine does not report stolen time and charges it to whoever was running).
# It counts user-space instructions only (not the kernel's network path, not time spent
# waiting or cache misses), and under valgrind the gateway runs ~50x slower, one thread at a
# time, so its purchase calls carry fewer purchases each (per-call costs weigh more) and
# SHA-256 runs without the CPU's SHA instructions. Use it to compare builds, component by
# component; use bench-ab.sh for what a change does to real CPU time.
#
# TARGET=minimal counts benches/peer-axum instead, bench-peers.sh's (m): axum and one EVALSHA
# per request, nothing else (the floor the (d)/(m) ratio is read against).
#
# One redis-server; the gateway (guarded as bench-peers.sh's (d), 64 shards, SQLite) under
# `valgrind --tool=callgrind` with instrumentation off until a warm-up of WARMUP seconds has
# passed; then wrk -t1 -c16 sends fresh buyers for SECS with instrumentation on. Reports the
# instructions per answered purchase, in total and inclusive for the components named in
# COMPONENTS (function names as callgrind_annotate prints them).
#
# Usage: scripts/bench-instructions.sh
# Environment: TARGET (flashgate | minimal), BIN (target/release/flashgate), SECS (15),
# WARMUP (5), COMPONENTS (a default list, for flashgate). The profile is kept as target/bench-instructions/purchases.callgrind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=${TARGET:-flashgate}
BIN=${BIN:-target/release/flashgate}
SECS=${SECS:-15}
WARMUP=${WARMUP:-5}
SALE=bench-live
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-instructions
COMPONENTS=${COMPONENTS:-"flashgate::http::buyer::purchase::{{closure}}
flashgate::purchase::Purchases::purchase_on::{{closure}}
flashgate::auth::jwt::BuyerAuth::verify
flashgate::tokens::signed::TokenSigner::verify_token
flashgate::store::purchase::purchase_many_with::{{closure}}
redis::parser::aio_support::ValueCodec::decode_stream
hyper::proto::h1::conn::Conn<I,B,T>::poll_read_head
sqlite3_step"}

BENCH_NAME=bench-instructions
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
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install -y valgrind)"
[[ $TARGET == flashgate || $TARGET == minimal ]] || die "TARGET is flashgate or minimal"
quietly "cargo build --release" cargo build --release --bin flashgate --example mint_tokens
[[ $TARGET == flashgate ]] || quietly "cargo build --release -p peer-axum" cargo build --release -p peer-axum
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out*

start_redis "$tmp/redis"
free_port
GPORT=$REPLY
callgrind=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out")
if [[ $TARGET == minimal ]]; then
    BIN=target/release/peer-axum
    COMPONENTS=""
    redis-cli -h 127.0.0.1 -p "$RPORT" SET 'peer:{m}:stock' 1000000000 >/dev/null
    "${callgrind[@]}" "$BIN" "$GPORT" "redis://127.0.0.1:$RPORT" 'peer:{m}:stock' 2>"$tmp/gateway.log" &
else
    guard_settings on
    env FLASHGATE_HTTP__ADDR="127.0.0.1:$GPORT" FLASHGATE_REDIS__URL="redis://127.0.0.1:$RPORT" \
        FLASHGATE_REDIS__KEY_PREFIX=bench FLASHGATE_AUTH__JWT_SECRET="$JWT_SECRET" \
        FLASHGATE_ADMIN__TOKEN="$ADMIN_TOKEN" FLASHGATE_DATABASE__URL="sqlite://$tmp/orders.db?mode=rwc" \
        "${guards[@]}" RUST_LOG=info "${callgrind[@]}" "$BIN" serve 2>"$tmp/gateway.log" &
fi
pids+=($!)
gateway_pid=${pids[-1]}
if [[ $TARGET == minimal ]]; then
    wait_for peer-axum "$gateway_pid" "$tmp/gateway.log" 1200 curl -sf -X POST "http://127.0.0.1:$GPORT/"
    mint_for_sale=()
else
    wait_for gateway "$gateway_pid" "$tmp/gateway.log" 1200 curl -sf "http://127.0.0.1:$GPORT/health/ready"
    put_live_sale "$GPORT" "$SALE" 100000000 64
    mint_for_sale=("$SALE" "$(redis-cli -h 127.0.0.1 -p "$RPORT" HGET "bench:sale:{$SALE}" generation)")
fi
# Separate buyers for the warm-up and the measurement: a buyer seen before would be a replay.
for part in warmup measured; do
    MINT_USER_PREFIX="$part-" quietly "minting buyers ($part)" target/release/examples/mint_tokens \
        "$JWT_SECRET" 200000 "$tmp/$part.txt" "${mint_for_sale[@]}"
done
purchase() {
    wrk -t1 -c16 -d"$1s" -s benches/wrk/purchase.lua \
        "http://127.0.0.1:$GPORT/api/v1/sales/$SALE/purchase" -- "$2" 1 >"$3" 2>&1 ||
        { cat "$3" >&2; die "wrk failed"; }
}
progress "warm-up (${WARMUP}s, not counted)"
purchase "$WARMUP" "$tmp/warmup.txt" "$tmp/wrk-warmup.txt"
callgrind_control -i on "$gateway_pid" >/dev/null 2>&1
progress "counting (${SECS}s)"
purchase "$SECS" "$tmp/measured.txt" "$tmp/wrk.txt"
callgrind_control -i off "$gateway_pid" >/dev/null 2>&1
callgrind_control -d "$gateway_pid" >/dev/null 2>&1
accepted=$(awk '$1 == "status" && $2 == 202 { print $3 }' "$tmp/wrk.txt")
[[ ${accepted:-0} -gt 0 ]] || die "no purchase was accepted: $(grep -E '^status' "$tmp/wrk.txt" | tr '\n' ' ')"
dump=$(find "$OUT" -name 'callgrind.out*' -size +10k | sort | tail -n 1)
[[ -n $dump ]] || die "callgrind wrote no profile"

[[ ! -t 2 ]] || printf '\r\033[K' >&2
echo "$BIN: $accepted purchases in ${SECS}s under callgrind, $(date -u +%FT%TZ)"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null >"$tmp/annotated.txt"
awk -v n="$accepted" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%-62s %9.0f\n", "instructions per purchase, all threads", $1 / n }' "$tmp/annotated.txt"
# A function shows on several lines (one per source file its inlined code came from); its
# own line is the one with the largest inclusive count.
while IFS= read -r component; do
    [[ -n $component ]] || continue
    awk -v n="$accepted" -v c="$component" '
        { line = $0; sub(/ \[[^]]*\]$/, "", line) }
        substr(line, length(line) - length(c)) == ":" c { gsub(",", "", $1); if ($1 + 0 > best) best = $1 + 0 }
        END { if (best) printf "%-62s %9.0f\n", substr(c, 1, 62), best / n; else printf "%-62s %9s\n", substr(c, 1, 62), "-" }' "$tmp/annotated.txt"
done <<<"$COMPONENTS"
cp "$dump" "$OUT/purchases.callgrind"
echo "profile: $OUT/purchases.callgrind (callgrind_annotate --inclusive=yes $OUT/purchases.callgrind)"
