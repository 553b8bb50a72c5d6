#!/usr/bin/env bash
# The load-test smoke runs, as CI runs them (scripts/test.sh calls this): the flash-sale
# buyer journey, the bot traffic and abandoned orders (payment window, cancels, expiry), each
# with a debug build, a few VUs and a few seconds (loadtest/run SCENARIO --smoke). All run
# even when one fails; exits non-zero when any does. Their raw outputs are in
# target/loadtest/{flash-sale,bots,abandon}-smoke/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=()
for scenario in flash-sale bots abandon; do
    printf '\n==> loadtest/run %s --smoke\n' "$scenario"
    start=$SECONDS
    if loadtest/run "$scenario" --smoke </dev/null; then
        echo "loadtest-smoke: $scenario passed in $((SECONDS - start)) s"
    else
        echo "loadtest-smoke: $scenario FAILED after $((SECONDS - start)) s"
        failed+=("$scenario")
    fi
done
if ((${#failed[@]} > 0)); then
    echo "loadtest-smoke: FAILED: ${failed[*]}"
    exit 1
fi
echo "loadtest-smoke: flash-sale, bots and abandon passed"
