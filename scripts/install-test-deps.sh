#!/usr/bin/env bash
# Installs the real MCP peers the interop tests drive, pinned, into .deps/ (git-ignored).
# Idempotent: a second run only checks that the pinned versions are present.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS="$PWD/.deps"
mkdir -p "$DEPS"

MCP_PY=2.3.0                 # official MCP Python SDK (clients + fixture servers)
MCP_SERVER_TIME=2026.10.19   # reference stdio server (PyPI)
SERVER_EVERYTHING=2026.8.31  # reference server (npm)
PYTEST=9.2.0                 # test runner for tests/interop

if ! "$DEPS/venv/bin/python" -c "import mcp, mcp_server_time, pytest" 2>/dev/null \
   || [ "$("$DEPS/venv/bin/pip" show mcp 2>/dev/null | sed -n 's/^Version: //p')" != "$MCP_PY" ] \
   || [ "$("$DEPS/venv/bin/pip" show pytest 2>/dev/null | sed -n 's/^Version: //p')" != "$PYTEST" ]; then
  echo "install-test-deps: python venv (mcp==$MCP_PY, mcp-server-time==$MCP_SERVER_TIME, pytest==$PYTEST)"
  python3 -m venv "$DEPS/venv"
  "$DEPS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "mcp==$MCP_PY" "mcp-server-time==$MCP_SERVER_TIME" "pytest==$PYTEST"
fi

NODE_DIR="$DEPS/node"
if [ ! -f "$NODE_DIR/node_modules/@modelcontextprotocol/server-everything/package.json" ] \
   || ! grep -q "\"version\": \"$SERVER_EVERYTHING\"" \
        "$NODE_DIR/node_modules/@modelcontextprotocol/server-everything/package.json"; then
  echo "install-test-deps: npm @modelcontextprotocol/server-everything@$SERVER_EVERYTHING"
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"private": true}' > "$NODE_DIR/package.json"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" \
    "@modelcontextprotocol/server-everything@$SERVER_EVERYTHING" 2>&1 | grep -v 'Unknown user config' || true
  test -f "$NODE_DIR/node_modules/@modelcontextprotocol/server-everything/package.json"
fi
echo "install-test-deps: ok ($DEPS)"
