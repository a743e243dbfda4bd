#!/usr/bin/env bash
# Benchmarks tool search on the catalog of tests/interop/test_tool_search.py (server-everything,
# mcp-server-time and twelve more reference servers, 112 real tools), and prints:
#   1. what a client is handed by tools/list: bytes of the answer (the JSON-RPC body as the proxy sent
#      it) and an estimate in tokens (bytes / 4, a rule of thumb for English and JSON, not a tokenizer),
#      for the whole aggregate, for a profile of two servers (filesystem, git) and for the tool-search
#      profile (three meta-tools), and of each search_tools answer, which a search profile pays per search;
#   2. latency of tools/call through the proxy over Streamable HTTP (one keep-alive session, sequential,
#      BENCH_N calls after BENCH_WARMUP): search_tools cycling through the test's 20 queries, list_servers
#      (a meta-tool answered in the dispatcher without ranking: the floor), and everything's echo called
#      directly and through call_tool (a real backend round trip, for scale);
#   3. the in-process cost (cargo bench --bench tool_search): building the index, and ranking the whole
#      catalog for one query.
# Numbers only: nothing is asserted on time. The proxy is a release build of this tree (BENCH_PROXY=path
# overrides); the servers come from scripts/install-test-deps.sh, the client is scripts/bench/loadgen.
# Every process started here is stopped on exit. Takes about a minute once built.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
N="${BENCH_N:-1000}"
WARMUP="${BENCH_WARMUP:-100}"
PY="$ROOT/.deps/venv/bin/python"

log() { printf 'bench-tool-search: %s\n' "$*" >&2; }

WORK="$(mktemp -d /tmp/mcp-bench-search.XXXXXX)"
PROXY_PID=""
LGPID=""
cleanup() {
  [ -n "$LGPID" ] && kill -TERM "$LGPID" 2>/dev/null
  if [ -n "$PROXY_PID" ]; then
    kill -TERM -- "-$PROXY_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL -- "-$PROXY_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries and servers ----------------------------------------------------------------------------
bash scripts/install-test-deps.sh >&2 || { log "install-test-deps failed"; exit 1; }
if [ -n "${BENCH_PROXY:-}" ]; then
  PROXY="$BENCH_PROXY"
else
  cargo build --quiet --release --locked || exit 1
  PROXY="$TARGET_DIR/release/mcp-proxy-server"
fi
BT="$TARGET_DIR/bench"
CARGO_TARGET_DIR="$BT" cargo build --quiet --release --manifest-path scripts/bench/loadgen/Cargo.toml || { log "building loadgen failed"; exit 1; }
LOADGEN="$BT/release/bench-loadgen"
log "building the in-process bench (cargo bench --no-run)"
cargo bench --quiet --locked --bench tool_search --no-run 2>&1 | grep -v '^ *Executable' >&2

"$PY" scripts/bench/tool_search_catalog.py config "$WORK" >/dev/null || { log "writing the config failed"; exit 1; }

# --- the proxy ---------------------------------------------------------------------------------------
# Fourteen servers start at once on a small machine: the first request waits for all of them.
MCP_PROXY_STARTUP_TIMEOUT=60 MCP_PROXY_CONFIG_POLL=0 \
  setsid "$PROXY" --sse --host 127.0.0.1 --port 0 --config "$WORK/mcp_server.json" >/dev/null 2>"$WORK/proxy.log" </dev/null &
PROXY_PID=$!
URL=""
for _ in $(seq 600); do
  URL="$(grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' "$WORK/proxy.log" | head -1 | sed 's/^listening on //')"
  [ -n "$URL" ] && break
  kill -0 "$PROXY_PID" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$URL" ]; then log "the proxy did not start:"; cat "$WORK/proxy.log" >&2; exit 1; fi
log "proxy: $PROXY ($(stat -c %s "$PROXY") bytes) at $URL"

# --- 1. sizes ----------------------------------------------------------------------------------------
if ! SIZES="$("$PY" scripts/bench/tool_search_catalog.py sizes "$URL" "$WORK")"; then
  log "tools/list failed:"; tail -20 "$WORK/proxy.log" >&2; exit 1
fi
field() { awk -v view="view=$1" -v key="$2" '$1 == view { for (i = 2; i <= NF; i++) if (index($i, key "=") == 1) print substr($i, length(key) + 2) }' <<<"$SIZES"; }

# --- 2. latency through the proxy --------------------------------------------------------------------
declare -A R
lg() {
  local row="$1" kv; shift
  timeout 300 "$LOADGEN" http --n "$N" --warmup "$WARMUP" "$@" >"$WORK/lg.out" 2>>"$WORK/loadgen.err" &
  LGPID=$!
  wait "$LGPID" || log "$row: loadgen failed (see below)"
  LGPID=""
  [ -s "$WORK/lg.out" ] || tail -3 "$WORK/loadgen.err" >&2
  for kv in $(cat "$WORK/lg.out"); do R["$row.${kv%%=*}"]="${kv#*=}"; done
}
get() { local v="${R[$1]:-}"; printf '%s' "${v:--}"; }
log "latency: $N calls each (after $WARMUP) over Streamable HTTP"
lg search --url "$URL/mcp/search" --tool search_tools --args-file "$WORK/search-args.jsonl"
lg list_servers --url "$URL/mcp/search" --tool list_servers --args '{}'
lg echo_direct --url "$URL/mcp" --tool everything__echo --args '{"message":"hello"}'
lg echo_call_tool --url "$URL/mcp/search" --tool call_tool --args '{"name":"everything__echo","arguments":{"message":"hello"}}'

# --- 3. in process -----------------------------------------------------------------------------------
INPROC="$(cargo bench --quiet --locked --bench tool_search -- "$WORK/catalog.json" "$WORK/queries.txt" "$N" 2>>"$WORK/bench.err")" \
  || { log "cargo bench failed:"; tail -5 "$WORK/bench.err" >&2; }
inproc() { sed -n "s/^$1 .*$2=\([^ ]*\).*/\1/p" <<<"$INPROC"; }

# --- report ------------------------------------------------------------------------------------------
echo
echo "Tool search on $(field full tools) tools from $(field full servers) servers ($(nproc) cores, loopback, $(basename "$PROXY"))"
echo
echo "1. tools/list, what a client is handed (tokens estimated as bytes / 4)"
printf '   %-44s %6s %10s %10s\n' view tools bytes "~tokens"
printf '   %-44s %6s %10s %10s\n' "whole aggregate (/mcp)" "$(field full tools)" "$(field full bytes)" "$(field full tokens_est)"
printf '   %-44s %6s %10s %10s\n' "profile of 2 servers: filesystem, git" "$(field pair tools)" "$(field pair bytes)" "$(field pair tokens_est)"
printf '   %-44s %6s %10s %10s\n' "tool-search profile (3 meta-tools)" "$(field search tools)" "$(field search bytes)" "$(field search tokens_est)"
printf '   %-44s %6s %10s %10s\n' "then each search_tools answer (mean of 20)" "$(field answer tools)" "$(field answer bytes)" "$(field answer tokens_est)"
printf '   (search answers: %s to %s bytes; the text and structuredContent each carry the matches)\n' "$(field answer smallest)" "$(field answer largest)"
echo
echo "2. tools/call through the proxy, Streamable HTTP, sequential, $N calls (µs)"
printf '   %-52s %8s %8s %8s\n' call p50 p99 mean
for row in "search:search_tools (20 queries in turn, 5 matches)" "list_servers:list_servers (answered in the proxy, no ranking)" \
  "echo_direct:everything__echo, called directly (/mcp)" "echo_call_tool:everything__echo through call_tool"; do
  key="${row%%:*}"
  printf '   %-52s %8s %8s %8s\n' "${row#*:}" "$(get "$key.p50_us")" "$(get "$key.p99_us")" "$(get "$key.mean_us")"
  [ "$(get "$key.errors")" = 0 ] || printf '     (%s errors)\n' "$(get "$key.errors")"
done
echo
echo "3. in process (cargo bench, release profile), µs"
printf '   %-52s %8s %8s %8s\n' "" p50 p99 mean
printf '   %-52s %8s %8s %8s\n' "build the index over the catalog" "$(inproc index_build p50_us)" "$(inproc index_build p99_us)" "$(inproc index_build mean_us)"
printf '   %-52s %8s %8s %8s\n' "rank the catalog for one query ($N, 20 in turn)" "$(inproc search p50_us)" "$(inproc search p99_us)" "$(inproc search mean_us)"
