#!/usr/bin/env bash
# Benchmarks the proxy side by side with its peers, on loopback, and prints tables:
#   1. latency of sequential tools/call (p50/p99) and overhead over the direct backend: direct (the floor),
#      ours over stdio, Streamable HTTP (keep-alive, Mcp-Session-Id) and legacy SSE, and the peers
#      (PyPI mcp-proxy, npm supergateway, npm mcp-proxy) in front of the same backend; plus one row set
#      with the real backend mcp-server-time;
#   2. throughput: BENCH_CLIENTS concurrent clients for BENCH_LOAD_SECS s over Streamable HTTP; and one
#      pipelined stdio client (BENCH_PIPE_DEPTH requests in flight), direct and through ours, with the ratio,
#      and through scripts/bench/relay (the proxy's thread shape doing none of its work: that shape's ceiling);
#   3. RSS of the proxy process: idle (ours with 3 stdio backends; the peers with their 1), after the load;
#   4. BENCH_SESSIONS concurrent SSE sessions held open (legacy GET /sse, Streamable GET /mcp): RSS, errors;
#   5. time from exec to port open, with 0 and 1 backend;
#   6. isolation per client session: 100 sessions each starting its own instance of an isolated server,
#      against one shared server (scripts/bench-isolation.sh; BENCH_ISOLATION=0 skips it).
# `bash scripts/bench.sh isolation` runs section 6 alone.
# Budgets are checked and printed (OK/OVER) but never fail the run: benchmarks are not tests.
#
# The backend is scripts/bench/echo-backend (a minimal Rust stdio MCP server), the client
# scripts/bench/loadgen (Rust; both built here into $CARGO_TARGET_DIR/bench). The proxy is
# dist/mcp-proxy-server-x86_64-linux-musl when present (scripts/build-release.sh), else a release build;
# BENCH_PROXY=path overrides. Peers are installed by scripts/bench/install-peers.sh into .deps/bench/
# (BENCH_PEERS=0 skips them); mcp-server-time comes from .deps/venv (scripts/install-test-deps.sh).
# Every process started here is killed on exit. Takes ~3 minutes (plus installs and helper builds the first time).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = isolation ]; then exec bash scripts/bench-isolation.sh; fi
ROOT="$PWD"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

N="${BENCH_N:-2000}"                   # sequential calls per latency row (echo backend)
WARMUP="${BENCH_WARMUP:-200}"
TIME_N="${BENCH_TIME_N:-1000}"          # sequential calls per mcp-server-time row
CLIENTS="${BENCH_CLIENTS:-32}"
PIPE_N="${BENCH_PIPE_N:-100000}"         # calls per pipelined stdio row
PIPE_DEPTH="${BENCH_PIPE_DEPTH:-32}"     # requests in flight in the pipelined rows
LOAD_SECS="${BENCH_LOAD_SECS:-5}"
SESSIONS="${BENCH_SESSIONS:-1000}"
STARTUP_RUNS="${BENCH_STARTUP_RUNS:-20}"
PEERS="${BENCH_PEERS:-1}"

log() { printf 'bench: %s\n' "$*" >&2; }
T_START=$(date +%s)
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- limits, workspace, cleanup --------------------------------------------------------------------
hard=$(ulimit -Hn)
want=$((SESSIONS * 2 + 1024))
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then ulimit -Hn "$want" 2>/dev/null || true; fi
ulimit -Sn "$want" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
log "ulimit -n $(ulimit -n)"

# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh

TIME_SERVER="$ROOT/.deps/venv/bin/mcp-server-time"
if [ ! -x "$TIME_SERVER" ]; then
  log "installing the test dependencies (mcp-server-time)"
  bash scripts/install-test-deps.sh >&2 || log "install-test-deps failed: no mcp-server-time rows"
fi

PY_PROXY="$ROOT/.deps/bench/venv-mcp-proxy/bin/mcp-proxy"
SUPERGATEWAY="$ROOT/.deps/bench/node/node_modules/.bin/supergateway"
NPM_PROXY="$ROOT/.deps/bench/node/node_modules/.bin/mcp-proxy"
if [ "$PEERS" = 1 ]; then bash scripts/bench/install-peers.sh; fi

# --- configs ---------------------------------------------------------------------------------------
mkdir -p "$WORK/c0" "$WORK/c1" "$WORK/c3" "$WORK/ctime"
echo '{"mcpServers": {}}' > "$WORK/c0/mcp_server.json"
printf '{"mcpServers": {"echo": {"command": "%s"}}}\n' "$ECHO" > "$WORK/c1/mcp_server.json"
printf '{"mcpServers": {"a": {"command": "%s", "args": ["--name", "a"]}, "b": {"command": "%s", "args": ["--name", "b"]}, "c": {"command": "%s", "args": ["--name", "c"]}}}\n' \
  "$ECHO" "$ECHO" "$ECHO" > "$WORK/c3/mcp_server.json"
printf '{"mcpServers": {"time": {"command": "%s", "env": {"TZ": "UTC"}}}}\n' "$TIME_SERVER" > "$WORK/ctime/mcp_server.json"
for d in c0 c1 c3 ctime; do echo '{}' > "$WORK/$d/tool_config.json"; done

# --- helpers ---------------------------------------------------------------------------------------



# start NAME CMD...: runs CMD in the background in its own process group; sets SPID.
start() {
  local name="$1"; shift
  setsid "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
  SPID=$!
  PIDS+=("$SPID")
}



rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo -; }

# lg ROW ARGS...: runs the load generator (bounded by timeout), records its line under ROW.
lg() {
  local row="$1"; shift
  local out rc
  # in the background + wait, so that Ctrl-C / SIGTERM interrupt the script at once (the traps run)
  timeout 300 "$LOADGEN" "$@" >"$WORK/lg.out" 2>>"$WORK/loadgen.err" &
  LGPID=$!
  wait "$LGPID"; rc=$?
  LGPID=""
  out="$(cat "$WORK/lg.out")"
  [ "$rc" -eq 0 ] || log "$row: loadgen exited $rc (see below)"
  [ -n "$out" ] || { log "$row: no result"; tail -3 "$WORK/loadgen.err" >&2; }
  record "$row" "$out"
}

# serve ROW KIND PORT: measures one HTTP server already started (SPID) on PORT: idle RSS, latency over
# Streamable HTTP (and legacy SSE if KIND has sse), the load, RSS after.
serve() {
  local row="$1" kind="$2" port="$3" tool="$4" pid="$SPID"
  if ! wait_port "$port"; then
    log "$row: port $port never opened"; tail -5 "$WORK/$row.err" >&2; stop_pid "$pid"; return
  fi
  sleep 1.5
  R["$row.rss_idle_kib"]="$(rss "$pid")"
  lg "$row.mcp" http --url "http://127.0.0.1:$port/mcp" --n "$N" --warmup "$WARMUP" --tool "$tool"
  if [[ "$kind" == *sse* ]]; then
    lg "$row.sse" http --url "http://127.0.0.1:$port/sse" --transport sse --n "$N" --warmup "$WARMUP" --tool "$tool"
  fi
  lg "$row.load" load --url "http://127.0.0.1:$port/mcp" --clients "$CLIENTS" --secs "$LOAD_SECS" --tool "$tool"
  sleep 0.5
  R["$row.rss_after_kib"]="$(rss "$pid")"
  R["$row.threads_after"]="$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)"
  stop_pid "$pid"
}

# --- 1-3: latency, load, RSS -----------------------------------------------------------------------
log "latency: direct to the echo backend"
lg direct stdio --n "$N" --warmup "$WARMUP" -- "$ECHO"
log "latency: ours over stdio (1 backend), idle RSS with 3 backends"
lg ours_stdio stdio --n "$N" --warmup "$WARMUP" --tool echo__echo -- "$PROXY" --config "$WORK/c1/mcp_server.json"
lg ours_stdio3 stdio --n 200 --warmup 20 --idle-ms 1000 --tool b__echo -- "$PROXY" --config "$WORK/c3/mcp_server.json"

log "pipelined stdio: $PIPE_DEPTH requests in flight, direct and through ours (1 backend)"
lg pipe_direct pipeline --n "$PIPE_N" --warmup 5000 --depth "$PIPE_DEPTH" -- "$ECHO"
lg pipe_ours pipeline --n "$PIPE_N" --warmup 5000 --depth "$PIPE_DEPTH" --tool echo__echo -- "$PROXY" --config "$WORK/c1/mcp_server.json"
lg pipe_relay pipeline --n "$PIPE_N" --warmup 5000 --depth "$PIPE_DEPTH" -- "$RELAY" --hub -- "$ECHO"

log "ours over HTTP (1 backend): latency /mcp and /sse, load"
port=$(free_port); start ours "$PROXY" --sse --port "$port" --config "$WORK/c1/mcp_server.json"
serve ours mcp+sse "$port" echo__echo

log "ours over HTTP, 3 backends, idle RSS"
port=$(free_port); start ours3 "$PROXY" --sse --port "$port" --config "$WORK/c3/mcp_server.json"
if wait_port "$port"; then sleep 1.5; R["ours3.rss_idle_kib"]="$(rss "$SPID")"; fi
stop_pid "$SPID"

PEER_ROWS=()
if [ "$PEERS" = 1 ]; then
  if [ -x "$PY_PROXY" ]; then
    log "peer: PyPI mcp-proxy"
    port=$(free_port); start pyproxy "$PY_PROXY" --port "$port" --host 127.0.0.1 --log-level WARNING -- "$ECHO"
    serve pyproxy mcp+sse "$port" echo; PEER_ROWS+=(pyproxy)
  else log "PyPI mcp-proxy not installed: skipped"; fi
  if [ -x "$SUPERGATEWAY" ]; then
    log "peer: supergateway"
    port=$(free_port); start supergw "$SUPERGATEWAY" --stdio "$ECHO" --outputTransport streamableHttp --stateful --port "$port" --logLevel none
    serve supergw mcp "$port" echo; PEER_ROWS+=(supergw)
  else log "supergateway not installed: skipped"; fi
  if [ -x "$NPM_PROXY" ]; then
    log "peer: npm mcp-proxy"
    port=$(free_port); start npmproxy "$NPM_PROXY" --port "$port" --host 127.0.0.1 -- "$ECHO"
    serve npmproxy mcp+sse "$port" echo; PEER_ROWS+=(npmproxy)
  else log "npm mcp-proxy not installed: skipped"; fi
fi

if [ -x "$TIME_SERVER" ]; then
  log "latency: mcp-server-time direct, through ours (stdio, HTTP)"
  TARGS='{"timezone":"UTC"}'
  lg time_direct stdio --n "$TIME_N" --warmup 100 --tool get_current_time --args "$TARGS" -- env TZ=UTC "$TIME_SERVER"
  lg time_ours_stdio stdio --n "$TIME_N" --warmup 100 --tool time__get_current_time --args "$TARGS" -- "$PROXY" --config "$WORK/ctime/mcp_server.json"
  port=$(free_port); start ourstime "$PROXY" --sse --port "$port" --config "$WORK/ctime/mcp_server.json"
  if wait_port "$port"; then
    lg time_ours_mcp http --url "http://127.0.0.1:$port/mcp" --n "$TIME_N" --warmup 100 --tool time__get_current_time --args "$TARGS"
  fi
  stop_pid "$SPID"
fi

# --- 4: sessions held open -------------------------------------------------------------------------
for kind in sse mcp; do
  log "ours: $SESSIONS $kind sessions held open"
  # The proxy notices a client that closed its stream only when a keep-alive write fails (the second one
  # after the close): keep-alive 5 s here instead of 15, and "released" is read 11 s after the close.
  port=$(free_port)
  # All sessions come from one address here: the per-address caps (256 by default) are lifted.
  start "hold_$kind" env MCP_PROXY_SSE_KEEPALIVE=5 MCP_PROXY_MAX_CONNECTIONS_PER_ADDRESS=0 MCP_PROXY_MAX_SESSIONS_PER_ADDRESS=0 \
    "$PROXY" --sse --port "$port" --config "$WORK/c1/mcp_server.json"
  if wait_port "$port"; then
    sleep 1
    path=/sse; [ "$kind" = mcp ] && path=/mcp
    lg "hold_$kind" hold --url "http://127.0.0.1:$port$path" --kind "$kind" --sessions "$SESSIONS" --pid "$SPID" \
      --tool echo__echo --hold-ms 1000 --release-wait-ms 11000
  fi
  stop_pid "$SPID"
done

# --- 5: start-up ----------------------------------------------------------------------------------
log "start-up: exec to port open"
lg start_ours0 startup --runs "$STARTUP_RUNS" -- "$PROXY" --sse --port '{port}' --config "$WORK/c0/mcp_server.json"
lg start_ours1 startup --runs "$STARTUP_RUNS" -- "$PROXY" --sse --port '{port}' --config "$WORK/c1/mcp_server.json"
if [ "$PEERS" = 1 ]; then
  [ -x "$PY_PROXY" ] && lg start_pyproxy startup --runs 3 -- "$PY_PROXY" --port '{port}' --host 127.0.0.1 -- "$ECHO"
  [ -x "$SUPERGATEWAY" ] && lg start_supergw startup --runs 3 -- "$SUPERGATEWAY" --stdio "$ECHO" --outputTransport streamableHttp --stateful --port '{port}' --logLevel none
  [ -x "$NPM_PROXY" ] && lg start_npmproxy startup --runs 3 -- "$NPM_PROXY" --port '{port}' --host 127.0.0.1 -- "$ECHO"
fi

# --- tables ----------------------------------------------------------------------------------------
declare -A LABEL=([ours]="mcp-proxy-server (ours)" [pyproxy]="PyPI mcp-proxy 0.13.0" [supergw]="npm supergateway 4.0.0 --stateful" [npmproxy]="npm mcp-proxy 6.7.19")
sub() { if num "$1" && num "$2"; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", a - b }'; else echo -; fi; }
ratio() { # ratio A B [DECIMALS]: A/B as "1.5x"
  if num "$1" && num "$2" && [ "$(awk -v b="$2" 'BEGIN { print (b > 0) }')" = 1 ]; then
    awk -v a="$1" -v b="$2" -v d="${3:-1}" 'BEGIN { printf "%." d "fx", a / b }'
  else echo -; fi
}
mib() { if num "$1"; then awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; else echo -; fi; }
check() { # check VALUE BUDGET: OK / OVER / -
  if num "$1"; then awk -v v="$1" -v b="$2" 'BEGIN { print (v <= b) ? "OK" : "OVER" }'; else echo "-"; fi
}

D50="$(get direct.p50_us)"
O50="$(get ours.mcp.p50_us)"
OS50="$(get ours.sse.p50_us)"
echo
echo "== Latency: $N sequential tools/call after $WARMUP warm-up, echo backend (Rust, stdio); µs =="
printf '%-36s %-18s %9s %9s %12s %10s %12s %12s %6s\n' target transport p50 p99 "p50 over" calls/s "p50 vs ours" "over vs ours" errors
lat_row() { # lat_row LABEL TRANSPORT ROW OURS_P50
  local p50; p50="$(get "$3.p50_us")"
  local over; over="$(sub "$p50" "$D50")"
  local ours_over; ours_over="$(sub "$4" "$D50")"
  printf '%-36s %-18s %9s %9s %12s %10s %12s %12s %6s\n' "$1" "$2" "$p50" "$(get "$3.p99_us")" "$over" \
    "$(get "$3.calls_per_s")" "$(ratio "$p50" "$4")" "$(ratio "${over#+}" "${ours_over#+}")" "$(get "$3.errors")"
}
lat_row "direct (the floor)" stdio direct ""
lat_row "${LABEL[ours]}" stdio ours_stdio "$(get ours_stdio.p50_us)"
lat_row "${LABEL[ours]}" "Streamable HTTP" ours.mcp "$O50"
lat_row "${LABEL[ours]}" "legacy SSE" ours.sse "$OS50"
for p in "${PEER_ROWS[@]}"; do
  lat_row "${LABEL[$p]}" "Streamable HTTP" "$p.mcp" "$O50"
  [ -n "${R[$p.sse.p50_us]:-}" ] && lat_row "${LABEL[$p]}" "legacy SSE" "$p.sse" "$OS50"
done
if [ -n "${R[time_direct.p50_us]:-}" ]; then
  TD50="$(get time_direct.p50_us)"
  echo
  echo "-- real backend mcp-server-time (Python), get_current_time, $TIME_N calls; µs --"
  for r in "time_direct:direct (the floor):stdio" "time_ours_stdio:${LABEL[ours]}:stdio" "time_ours_mcp:${LABEL[ours]}:Streamable HTTP"; do
    IFS=: read -r row label tr <<<"$r"
    printf '%-36s %-18s %9s %9s %12s %10s %6s\n' "$label" "$tr" "$(get "$row.p50_us")" "$(get "$row.p99_us")" \
      "$(sub "$(get "$row.p50_us")" "$TD50")" "$(get "$row.calls_per_s")" "$(get "$row.errors")"
  done
fi

echo
echo "== Throughput: $CLIENTS concurrent clients (one session + keep-alive connection each), ${LOAD_SECS} s, Streamable HTTP =="
printf '%-36s %10s %9s %9s %8s %12s\n' target calls/s "p50 µs" "p99 µs" errors "ours/peer"
OT="$(get ours.load.calls_per_s)"
for p in ours "${PEER_ROWS[@]}"; do
  printf '%-36s %10s %9s %9s %8s %12s\n' "${LABEL[$p]}" "$(get "$p.load.calls_per_s")" "$(get "$p.load.p50_us")" \
    "$(get "$p.load.p99_us")" "$(get "$p.load.errors")" "$([ "$p" = ours ] && echo - || ratio "$OT" "$(get "$p.load.calls_per_s")")"
done

[ -n "${R[supergw.load.calls_per_s]:-}" ] && echo "(supergateway --stateful starts one backend per session, $((CLIENTS + 1)) here; the other proxies share one backend)"
echo
echo "== Throughput: one stdio client, $PIPE_DEPTH requests in flight (pipelined), $PIPE_N calls, echo backend =="
printf '%-36s %10s %9s %9s %8s %12s\n' target calls/s "p50 µs" "p99 µs" errors "vs direct"
for r in "pipe_direct:direct (the ceiling)" "pipe_ours:${LABEL[ours]}" "pipe_relay:relay, no work, the proxy's threads"; do
  IFS=: read -r row label <<<"$r"
  printf '%-36s %10s %9s %9s %8s %12s\n' "$label" "$(get "$row.calls_per_s")" "$(get "$row.p50_us")" "$(get "$row.p99_us")" \
    "$(get "$row.errors")" "$([ "$row" != pipe_direct ] && ratio "$(get "$row.calls_per_s")" "$(get pipe_direct.calls_per_s)" 2 || echo -)"
done
echo
echo "== RSS of the proxy process (MiB; backends not included) =="
printf '%-36s %-34s %9s %s\n' target state MiB budget
printf '%-36s %-34s %9s %s\n' "${LABEL[ours]}" "stdio, 3 backends, idle" "$(mib "$(get ours_stdio3.rss_idle_kib)")" \
  "<= 4 MiB: $(check "$(get ours_stdio3.rss_idle_kib)" 4096)"
printf '%-36s %-34s %9s %s\n' "${LABEL[ours]}" "HTTP, 3 backends, idle" "$(mib "$(get ours3.rss_idle_kib)")" \
  "<= 4 MiB: $(check "$(get ours3.rss_idle_kib)" 4096)"
for p in ours "${PEER_ROWS[@]}"; do
  printf '%-36s %-34s %9s\n' "${LABEL[$p]}" "HTTP, 1 backend, idle" "$(mib "$(get "$p.rss_idle_kib")")"
  printf '%-36s %-34s %9s\n' "${LABEL[$p]}" "HTTP, after latency + load runs" "$(mib "$(get "$p.rss_after_kib")")"
done
printf '%-36s %-34s %9s\n' "${LABEL[ours]}" "stdio, 1 backend, after $N calls" "$(mib "$(get ours_stdio.rss_after_kib)")"

echo
echo "== $SESSIONS concurrent SSE sessions held open, ours (1 backend; one tools/call checked per session on its own stream) =="
printf '%-22s %6s %7s %7s %9s %11s %9s %9s %12s %8s %13s %12s %s\n' stream held errors open_s calls_ok before_MiB held_MiB peak_MiB KiB/session threads released_MiB threads_rel budget
for kind in sse mcp; do
  r="hold_$kind"; label="legacy GET /sse"; [ "$kind" = mcp ] && label="Streamable GET /mcp"
  per="-"
  if num "$(get "$r.rss_held_kib")" && num "$(get "$r.rss_before_kib")" && num "$(get "$r.held")" && [ "$(get "$r.held")" -gt 0 ]; then
    per=$(( ($(get "$r.rss_held_kib") - $(get "$r.rss_before_kib")) / $(get "$r.held") ))
  fi
  printf '%-22s %6s %7s %7s %9s %11s %9s %9s %12s %8s %13s %12s %s\n' "$label" "$(get "$r.held")" "$(get "$r.errors")" \
    "$(get "$r.open_s")" "$(get "$r.calls_ok")" "$(mib "$(get "$r.rss_before_kib")")" "$(mib "$(get "$r.rss_held_kib")")" \
    "$(mib "$(get "$r.hwm_kib")")" "$per" "$(get "$r.threads_held")" "$(mib "$(get "$r.rss_released_kib")")" \
    "$(get "$r.threads_released")" "<= 64 MiB: $(check "$(get "$r.hwm_kib")" 65536)"
done
echo "(released: 11 s after the clients closed, keep-alive 5 s; the proxy finds a closed stream on a failed keep-alive write)"

echo
echo "== Start-up: exec to port open (ms) =="
printf '%-36s %-12s %6s %8s %8s %8s %s\n' target backends runs median min max budget
printf '%-36s %-12s %6s %8s %8s %8s %s\n' "${LABEL[ours]}" 0 "$(get start_ours0.runs)" "$(get start_ours0.median_ms)" \
  "$(get start_ours0.min_ms)" "$(get start_ours0.max_ms)" "<= 20 ms: $(check "$(get start_ours0.median_ms)" 20)"
printf '%-36s %-12s %6s %8s %8s %8s %s\n' "${LABEL[ours]}" "1 (echo)" "$(get start_ours1.runs)" "$(get start_ours1.median_ms)" \
  "$(get start_ours1.min_ms)" "$(get start_ours1.max_ms)" "<= 20 ms: $(check "$(get start_ours1.median_ms)" 20)"
for p in "${PEER_ROWS[@]}"; do
  printf '%-36s %-12s %6s %8s %8s %8s\n' "${LABEL[$p]}" "1 (echo)" "$(get "start_$p.runs")" "$(get "start_$p.median_ms")" \
    "$(get "start_$p.min_ms")" "$(get "start_$p.max_ms")"
done

echo
echo "bench: proxy $(basename "$PROXY"); $(nproc) cores shared by client, proxy and backend; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures); took $(( $(date +%s) - T_START )) s"
if [ -s "$WORK/loadgen.err" ]; then
  echo "bench: load generator messages (first 15):"
  head -15 "$WORK/loadgen.err" | sed 's/^/  /'
fi

# --- 6: isolation per client session (its own script, its own table) -------------------------------
if [ "${BENCH_ISOLATION:-1}" = 1 ]; then
  echo
  BENCH_PROXY="$PROXY" bash scripts/bench-isolation.sh
fi
exit 0
