# Shared by scripts/bench.sh and scripts/bench-isolation.sh (sourced, after `cd` to the repository and
# `log` defined): a scratch folder and the cleanup of every process a benchmark starts, the benchmark's
# own Rust programs, and which proxy binary to measure.
#
# After sourcing: WORK (removed on exit), PIDS (add each started process group's leader), LGPID (a
# running load generator, or empty), ECHO, LOADGEN and RELAY (built into $TARGET_DIR/bench), PROXY; and the
# helpers below (results in the associative array R, ports, stopping a process group).

WORK="$(mktemp -d /tmp/mcp-bench.XXXXXX)"
PIDS=()
LGPID=""
cleanup() {
  local p
  # the running load generator: `timeout` leads its own process group (with any proxy it spawned)
  [ -n "$LGPID" ] && kill -TERM -- "-$LGPID" 2>/dev/null
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BT="$TARGET_DIR/bench"
for crate in echo-backend loadgen relay; do
  CARGO_TARGET_DIR="$BT" cargo build --quiet --release --manifest-path "scripts/bench/$crate/Cargo.toml" || { log "building $crate failed"; exit 1; }
done
ECHO="$BT/release/bench-echo-backend"
LOADGEN="$BT/release/bench-loadgen"
RELAY="$BT/release/bench-relay"

if [ -n "${BENCH_PROXY:-}" ]; then
  PROXY="$BENCH_PROXY"
elif [ -x dist/mcp-proxy-server-x86_64-linux-musl ]; then
  PROXY="$ROOT/dist/mcp-proxy-server-x86_64-linux-musl"
  if [ -n "$(find src Cargo.toml -newer "$PROXY" -print -quit)" ]; then
    log "warning: $PROXY is older than the sources: run scripts/build-release.sh to measure them"
  fi
else
  log "dist/ has no musl binary (scripts/build-release.sh makes it): using a release build (glibc: RSS differs)"
  cargo build --quiet --release --locked || exit 1
  PROXY="$TARGET_DIR/release/mcp-proxy-server"
fi
log "proxy: $PROXY ($(stat -c %s "$PROXY") bytes, $(file -b "$PROXY" | grep -oE 'statically linked|static-pie linked|dynamically linked' || echo '?'))"

# --- helpers ---------------------------------------------------------------------------------------
declare -A R   # results: R[row.key]=value

# record ROW LINE: stores every key=value of LINE under ROW.
record() {
  local row="$1" kv
  for kv in $2; do R["$row.${kv%%=*}"]="${kv#*=}"; done
}
get() { local v="${R[$1]:-}"; printf '%s' "${v:--}"; }
num() { [[ "$1" =~ ^[0-9.]+$ ]]; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_port PORT: up to 15 s.
wait_port() {
  local i
  for ((i = 0; i < 300; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# stop_pid PID: SIGTERM to its group, SIGKILL after 3 s.
stop_pid() {
  local i
  kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null
  for ((i = 0; i < 60; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -KILL -- "-$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
