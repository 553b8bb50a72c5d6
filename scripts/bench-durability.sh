#!/usr/bin/env bash
# What durability costs on the purchase path: wrk against one gateway on the cluster topology
# of scripts/cluster.sh (3 masters + 3 replicas, PostgreSQL), in three configurations:
#   async    redis.durability = "async", appendfsync everysec (the default)
#   replica  redis.durability = "replica": each purchase call waits for one replica (WAIT 1)
#   always   redis.durability = "async", appendfsync always on every node
# Each round runs the three one after the other, each on a fresh cluster (same buyers, same
# wrk settings); ROUNDS rounds alternate them so that a noisy moment of the shared machine
# does not fall on one configuration only. Reported: accepted purchases/s, p50 and p99 of
# each run, and the median over rounds of replica/async and always/async.
#
# Usage: scripts/bench-durability.sh
# Environment: ROUNDS (3), WRK_THREADS (2), WRK_CONNS (64), WRK_DURATION (10s, whole
# seconds), SHARDS (24), BENCH_TOKENS (1000000: buyers, each buys once per run),
# REPLICA_WAIT_MS (100: redis.replica_wait_timeout_ms), PROFILE (release; debug only to prove
# the script at a tiny size: its figures mean nothing).
# Outputs in target/bench-durability/: results.csv (round,mode,accepted_per_s,p50_ms,p99_ms,
# other_answers) and each wrk output.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
SHARDS=${SHARDS:-24}
BENCH_TOKENS=${BENCH_TOKENS:-1000000}
REPLICA_WAIT_MS=${REPLICA_WAIT_MS:-100}
PROFILE=${PROFILE:-release}
JWT_SECRET=bench-jwt-secret-0123456789abcdef
ADMIN_TOKEN=bench-admin-token-0123456789abcdef
OUT=target/bench-durability
CLUSTER_DIR=$OUT/cluster
SALE=bench-durability

BENCH_NAME=bench-durability
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
if ! [[ $ROUNDS =~ ^[0-9]+$ ]] || ((ROUNDS < 1 || ROUNDS > 20)); then die "ROUNDS must be 1..20"; fi
quietly "scripts/install-deps.sh" bash scripts/install-deps.sh
build_binaries
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/results.csv
mint_buyers

# The settings of MODE, as NAME=value words for start_cluster.
settings_of() {
    case $1 in
        async) echo "APPENDFSYNC=everysec FLASHGATE_REDIS__DURABILITY=async" ;;
        replica) echo "APPENDFSYNC=everysec FLASHGATE_REDIS__DURABILITY=replica FLASHGATE_REDIS__REPLICA_WAIT_TIMEOUT_MS=$REPLICA_WAIT_MS" ;;
        always) echo "APPENDFSYNC=always FLASHGATE_REDIS__DURABILITY=async" ;;
    esac
}

echo "round,mode,accepted_per_s,p50_ms,p99_ms,other_answers" >"$OUT/results.csv"
for round in $(seq 1 "$ROUNDS"); do
    for mode in async replica always; do
        # shellcheck disable=SC2046 # settings_of prints NAME=value words
        start_cluster MASTERS=3 REPLICAS=1 GATEWAYS=1 $(settings_of "$mode")
        gateway=${CLUSTER_GATEWAYS%% *}
        live_sale "$gateway" "$SALE" 1000000000 "$SHARDS"
        wrk_purchases "$mode-r$round" "$gateway" "$SALE"
        stop_cluster
        echo "$round,$mode,$(wrk_accepted_rps "$mode-r$round"),$(wrk_pct "$mode-r$round" 50%)," \
            "$(wrk_pct "$mode-r$round" 99%),$(wrk_other "$mode-r$round")" | tr -d ' ' >>"$OUT/results.csv"
    done
done
[[ ! -t 2 ]] || printf '\r\033[K' >&2

# The median over rounds of MODE's accepted/s over async's, round by round.
median_ratio() {
    awk -F, -v m="$1" 'NR > 1 { rps[$1 "," $2] = $3; rounds[$1] = 1 }
        END { n = 0; for (r in rounds) if (rps[r ",async"] > 0) v[++n] = rps[r "," m] / rps[r ",async"]
              for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
              if (n == 0) print "n/a"; else if (n % 2) printf "%.2f", v[(n + 1) / 2]; else printf "%.2f", (v[n / 2] + v[n / 2 + 1]) / 2 }' \
        "$OUT/results.csv"
}

echo "bench-durability ($PROFILE build; wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION against one gateway;" \
    "3 masters + 3 replicas, $SHARDS shards; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)):"
column -s, -t "$OUT/results.csv"
echo "median replica/async $(median_ratio replica), always/async $(median_ratio always) (accepted purchases/s, $ROUNDS rounds)"
echo "raw outputs in $OUT/"
