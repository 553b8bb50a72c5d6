#!/usr/bin/env bash
# The load-test smoke runs, as CI runs them (scripts/test.sh calls this): the flash-sale
# buyer journey, the bot traffic and abandoned orders (payment window, cancels, expiry), each
# with a debug build, a few VUs and a few seconds (loadtest/run SCENARIO --smoke), then the
# flash-sale journey on the cluster topology of scripts/cluster.sh (--smoke --cluster: 3
# masters + 3 replicas, 2 gateways behind nginx). All run even when one fails; exits non-zero
# when any does. Their raw outputs are in target/loadtest/{flash-sale,bots,abandon}-smoke/ and
# target/loadtest/flash-sale-smoke-cluster/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=()
for run in flash-sale bots abandon "flash-sale --cluster"; do
    printf '\n==> loadtest/run %s --smoke\n' "$run"
    start=$SECONDS
    # shellcheck disable=SC2086 # "flash-sale --cluster" is two arguments
    if loadtest/run $run --smoke </dev/null; then
        echo "loadtest-smoke: $run passed in $((SECONDS - start)) s"
    else
        echo "loadtest-smoke: $run FAILED after $((SECONDS - start)) s"
        failed+=("$run")
    fi
done
if ((${#failed[@]} > 0)); then
    echo "loadtest-smoke: FAILED: ${failed[*]}"
    exit 1
fi
echo "loadtest-smoke: flash-sale, bots, abandon and flash-sale --cluster passed"
