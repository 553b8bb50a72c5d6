#!/usr/bin/env bash
# flashgate's full check, as CI runs it: system dependencies, formatting, lints, then every
# test target (integration tests start real redis-server and PostgreSQL processes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Prints a short header before each step.
step() {
    printf '\n==> %s\n' "$*"
}

step "Installing system dependencies"
bash scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test --all-targets"
cargo test --all-targets
