#!/usr/bin/env bash
# flashgate's full check, as CI runs it: system dependencies, formatting, lints, every test
# target (integration tests start real redis-server and PostgreSQL processes), then the k6
# load-test smoke runs (flash-sale, bots and abandon, against the debug build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Prints a short header before each step.
step() {
    printf '\n==> %s\n' "$*"
}

step "Installing system dependencies"
bash scripts/install-deps.sh

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "module dependencies run one way (scripts/module-graph.py)"
python3 scripts/module-graph.py >/dev/null

step "cargo test --all-targets"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
tests=0
cargo test --all-targets 2>&1 | tee "$log" || tests=$?
# One closing line for the whole suite (cargo prints one per test binary, and the last of
# those belongs to a target without tests), printed whether or not a test failed.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
((tests == 0)) || exit "$tests"

step "k6 load-test smoke runs"
bash scripts/loadtest-smoke.sh
