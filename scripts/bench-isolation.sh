#!/usr/bin/env bash
# Benchmarks isolation per client session ("isolation": "session"), on loopback, and prints one table:
# the proxy in HTTP mode with one stdio server, BENCH_ISO_SESSIONS (100) Streamable HTTP sessions opened
# and then each making one tools/call, all at once. With the server isolated, each of those calls starts
# its session's own instance (a child process), so the time until all are answered is the instances'
# start-up; with it shared (the baseline), one process answers them all. Printed per row: that time and
# the calls' latencies, then the proxy's RSS and the total RSS (and PSS) of the proxy with all its
# children, before the sessions (idle: with the template only), once all are answered, and after every
# session is deleted (its instance stopped).
#
# Backends: the mock of the tests (tests/fixtures/mock_server.py, Python: an interpreter per instance)
# and scripts/bench/echo-backend (a minimal Rust server). BENCH_ISO_BACKENDS="mock echo" picks them.
# Run on its own (bash scripts/bench-isolation.sh, or bash scripts/bench.sh isolation) or as the last
# section of scripts/bench.sh. Prints figures, never fails on them: benchmarks are not tests. Takes
# ~30 s. The proxy is chosen as in scripts/bench.sh (BENCH_PROXY, dist/, else a release build).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SESSIONS="${BENCH_ISO_SESSIONS:-100}"
BACKENDS="${BENCH_ISO_BACKENDS:-mock echo}"

log() { printf 'bench-isolation: %s\n' "$*" >&2; }
T_START=$(date +%s)
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh
MOCK="$ROOT/tests/fixtures/mock_server.py"


# --- helpers ---------------------------------------------------------------------------------------
mib() { if num "$1"; then awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; else echo -; fi; }
ms() { if num "$1"; then awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; else echo -; fi; }



# wait_ready PORT: until /health says every backend is connected (up to 15 s).
wait_ready() {
  local i
  for ((i = 0; i < 300; i++)); do
    python3 - "$1" <<'EOF' 2>/dev/null && return 0
import json, sys, urllib.request
health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2))
sys.exit(0 if all(b["state"] == "connected" for b in health["backends"]) else 1)
EOF
    sleep 0.05
  done
  return 1
}


# run ROW BACKEND ISOLATION: the proxy on one server `s` (BACKEND, shared or isolated per session), the
# sessions and their calls measured by the load generator.
run() {
  local row="$1" backend="$2" isolation="$3" entry tool targs
  case "$backend" in
    mock) entry="\"command\": \"python3\", \"args\": [\"$MOCK\", \"--name\", \"s\"]"; tool=s__echo; targs='{"text":"hello"}' ;;
    echo) entry="\"command\": \"$ECHO\""; tool=s__echo; targs='{"message":"hello"}' ;;
    *) log "unknown backend $backend"; return ;;
  esac
  if [ "$isolation" = session ]; then
    entry="$entry, \"isolation\": \"session\", \"maxInstances\": $((SESSIONS + 8))"
  fi
  mkdir -p "$WORK/$row"
  printf '{"mcpServers": {"s": {%s}}}\n' "$entry" > "$WORK/$row/mcp_server.json"
  echo '{}' > "$WORK/$row/tool_config.json"
  local port; port=$(free_port)
  # All sessions come from one address: the per-address caps are lifted.
  setsid env MCP_PROXY_MAX_CONNECTIONS_PER_ADDRESS=0 MCP_PROXY_MAX_SESSIONS_PER_ADDRESS=0 \
    "$PROXY" --sse --port "$port" --config "$WORK/$row/mcp_server.json" >"$WORK/$row.out" 2>"$WORK/$row.err" </dev/null &
  local pid=$!
  PIDS+=("$pid")
  if ! wait_port "$port" || ! wait_ready "$port"; then
    log "$row: the proxy or its server never became ready"; tail -5 "$WORK/$row.err" >&2; stop_pid "$pid"; return
  fi
  sleep 1
  local out
  out="$(timeout 300 "$LOADGEN" sessions --url "http://127.0.0.1:$port/mcp" --sessions "$SESSIONS" --pid "$pid" \
    --tool "$tool" --args "$targs" --settle-ms 500 --release-wait-ms 2000 2>>"$WORK/loadgen.err")"
  [ -n "$out" ] || { log "$row: no result"; tail -3 "$WORK/loadgen.err" >&2; }
  record "$row" "$out"
  stop_pid "$pid"
}

ROWS=()
for backend in $BACKENDS; do
  for isolation in session shared; do
    log "$SESSIONS sessions, one call each: $backend backend, $isolation"
    run "${backend}_$isolation" "$backend" "$isolation"
    ROWS+=("${backend}_$isolation")
  done
done

# --- table -----------------------------------------------------------------------------------------
declare -A LABEL=([mock]="mock_server.py (Python)" [echo]="echo-backend (Rust)")
echo
echo "== Isolation per session: $SESSIONS Streamable HTTP sessions, one tools/call each, all at once =="
echo "   (all answered: from the calls' release to the last answer; for \"session\" each call starts its instance)"
printf '%-25s %-8s %8s %6s %10s %9s %9s %9s\n' backend isolation calls_ok errors "all (ms)" "p50 ms" "p99 ms" "max ms"
for row in "${ROWS[@]}"; do
  printf '%-25s %-8s %8s %6s %10s %9s %9s %9s\n' "${LABEL[${row%_*}]}" "${row#*_}" "$(get "$row.calls_ok")" "$(get "$row.errors")" \
    "$(get "$row.all_answered_ms")" "$(ms "$(get "$row.p50_us")")" "$(ms "$(get "$row.p99_us")")" "$(ms "$(get "$row.max_us")")"
done
echo
echo "-- memory (MiB): the proxy's RSS; proxy + children: RSS summed (shared pages once per process) and PSS --"
printf '%-25s %-8s %-9s %9s %9s %13s %13s\n' backend isolation when children proxy_RSS "total RSS" "total PSS"
for row in "${ROWS[@]}"; do
  for when in before after deleted; do
    label="$when"
    case "$when" in before) label="idle" ;; after) label="answered" ;; deleted) label="deleted" ;; esac
    printf '%-25s %-8s %-9s %9s %9s %13s %13s\n' "${LABEL[${row%_*}]}" "${row#*_}" "$label" "$(get "$row.${when}_children")" \
      "$(mib "$(get "$row.${when}_rss_kib")")" "$(mib "$(get "$row.${when}_tree_rss_kib")")" "$(mib "$(get "$row.${when}_tree_pss_kib")")"
  done
done
echo "(idle: before the sessions open, the template alone for \"session\"; answered: 0.5 s after the last answer;"
echo " deleted: 2 s after every session was deleted. The \"shared\" rows' idle figures are the baseline.)"
echo
echo "bench-isolation: proxy $(basename "$PROXY"); $(nproc) cores shared by client, proxy and backends; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); took $(( $(date +%s) - T_START )) s"
if [ -s "$WORK/loadgen.err" ]; then
  echo "bench-isolation: load generator messages (first 10):"
  head -10 "$WORK/loadgen.err" | sed 's/^/  /'
fi
exit 0
