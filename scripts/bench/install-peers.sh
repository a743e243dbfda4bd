#!/usr/bin/env bash
# Installs the peer proxies the benchmark compares against, pinned, into .deps/bench/ (git-ignored):
#   PyPI mcp-proxy (sparfenyuk) in its own venv (it needs mcp<2, the tests use mcp 2.x),
#   npm supergateway and npm mcp-proxy (punkpeye).
# Idempotent; a peer that fails to install is reported and skipped (the benchmark marks it absent).
set -uo pipefail
cd "$(dirname "$0")/../.."
DIR="$PWD/.deps/bench"
PY_MCP_PROXY=0.13.0
NPM_SUPERGATEWAY=4.0.0
NPM_MCP_PROXY=6.7.19
mkdir -p "$DIR"

if [ "$("$DIR/venv-mcp-proxy/bin/pip" show mcp-proxy 2>/dev/null | sed -n 's/^Version: //p')" != "$PY_MCP_PROXY" ]; then
  echo "install-peers: PyPI mcp-proxy==$PY_MCP_PROXY (own venv)" >&2
  python3 -m venv "$DIR/venv-mcp-proxy" \
    && "$DIR/venv-mcp-proxy/bin/pip" install --quiet --disable-pip-version-check "mcp-proxy==$PY_MCP_PROXY" \
    || echo "install-peers: PyPI mcp-proxy FAILED" >&2
fi

has_npm_version() { [ -f "$1/node_modules/$2/package.json" ] && grep -q "\"version\": \"$3\"" "$1/node_modules/$2/package.json"; }
NODE_DIR="$DIR/node"
if ! has_npm_version "$NODE_DIR" supergateway "$NPM_SUPERGATEWAY" || ! has_npm_version "$NODE_DIR" mcp-proxy "$NPM_MCP_PROXY"; then
  echo "install-peers: npm supergateway@$NPM_SUPERGATEWAY mcp-proxy@$NPM_MCP_PROXY" >&2
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"private": true}' > "$NODE_DIR/package.json"
  npm install --silent --no-audit --no-fund --save-exact --prefix "$NODE_DIR" \
    "supergateway@$NPM_SUPERGATEWAY" "mcp-proxy@$NPM_MCP_PROXY" 2>&1 | grep -v 'Unknown user config\|EBADENGINE' || true
  has_npm_version "$NODE_DIR" supergateway "$NPM_SUPERGATEWAY" || echo "install-peers: npm supergateway FAILED" >&2
  has_npm_version "$NODE_DIR" mcp-proxy "$NPM_MCP_PROXY" || echo "install-peers: npm mcp-proxy FAILED" >&2
fi
exit 0
