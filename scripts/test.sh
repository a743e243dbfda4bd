#!/usr/bin/env bash
# Checks formatting (cargo fmt) and lints (clippy, warnings are errors), then runs every test: Rust
# unit and integration tests, then the interop tests that drive the proxy with the official MCP SDKs
# and reference servers (tests/interop: stdio and HTTP, Python and TypeScript SDKs; three proxies
# behind a real nginx for scale-out), then the admin UI in a real headless Chromium (tests/e2e), then
# the official MCP conformance suite's server scenarios through the proxy (tests/conformance). The
# peers are installed, pinned, by scripts/install-test-deps.sh (nginx and chromium from apt).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# House rules first, so a developer sees what CI sees: unformatted code and any clippy warning fail.
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# The fuzz targets (fuzz/, their own workspace) use the parsers directly: they must keep compiling.
cargo check --manifest-path fuzz/Cargo.toml --bins --locked
cargo build --locked
cargo test --locked
export MCP_PROXY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/mcp-proxy-server"
.deps/venv/bin/python -m pytest tests/interop -q -p no:cacheprovider
# The admin UI in a real headless Chromium against the proxy binary (tests/e2e; playwright-core and
# /usr/bin/chromium from install-test-deps.sh). Each step has its own timeout; the test kills the proxy
# and the browser whatever happens, and `timeout` bounds the whole run. Screenshots: target/e2e-artifacts/.
timeout -k 10 300 node --test --test-timeout=120000 tests/e2e/
bash tests/conformance/run.sh
# The static x86_64 musl binaries, with and without TLS, against their size budgets (2 and 4 MiB),
# each smoke-tested. (The aarch64 ones and the qemu test: `bash scripts/build-release.sh`.)
bash scripts/build-release.sh --x86_64-only
