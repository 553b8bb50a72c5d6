#!/usr/bin/env bash
# Runs flashgate with the demo configuration (config/flashgate.toml): a demo sale "demo",
# the default SQLite database URL, and a redis-server the gateway starts and stops itself
# (data in ./data). Installs the system programs first (scripts/install-deps.sh), then
# builds in release mode and serves on http://127.0.0.1:8080 until Ctrl-C / SIGTERM.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

echo "demo: building and starting flashgate (the first release build takes several minutes)" >&2
echo "demo: try: curl -s http://127.0.0.1:8080/api/v1/sales/demo" >&2
# The shipped config's secrets are the demo's; a gateway refuses them unless told it is a demo.
FLASHGATE_DEMO=true exec cargo run --release -- serve --config config/flashgate.toml
