#!/usr/bin/env bash
# Soak test: the proxy in HTTP mode on loopback, three mock backends, many Streamable HTTP and legacy SSE
# clients with random calls and mid-call disconnects, backends SIGKILLed at random; a server isolated per
# client session (many short sessions, past its maxInstances, its instances SIGKILLed) and profiles (tool
# search, a key bound to a profile, hidden tools); then checks that every request got exactly one answer
# and that threads, fds, child processes and RSS went back to the idle baseline. Bounded in time; exits
# non-zero on a failed check.
#
#   scripts/soak.sh [MINUTES]            default 5
#   SOAK_BIN=path/to/mcp-proxy-server    use this binary instead of building one
#   SOAK_ARGS="--streamable 20 --legacy 8 --disconnect 0.1 --kill-every 2"   more load
#   SOAK_ARGS="--iso-workers 12 --max-instances 4 --instance-idle 1 --profile-workers 8"   more of the new parts
#   SOAK_ARGS="--no-isolation --no-profiles"   the run as it was before them (no keys, no isolated server)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-5}"
if [ -z "${SOAK_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build --release --locked --quiet
  SOAK_BIN="$CARGO_TARGET_DIR/release/mcp-proxy-server"
fi
# shellcheck disable=SC2086
exec timeout --kill-after=30 "$(python3 -c "print(int(float('$MINUTES') * 60 + 300))")" \
  python3 scripts/soak/soak.py --bin "$SOAK_BIN" --minutes "$MINUTES" ${SOAK_ARGS:-}
