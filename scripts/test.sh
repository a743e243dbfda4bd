#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the interop tests that drive the proxy with
# the official MCP SDKs and reference servers (installed, pinned, by scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo build --locked
cargo test --locked
MCP_PROXY_BIN="$PWD/target/debug/mcp-proxy-server" .deps/venv/bin/python -m pytest tests/interop -q -p no:cacheprovider
