#!/usr/bin/env bash
# Builds the static release binaries into dist/ and checks them:
#   dist/mcp-proxy-server-x86_64-linux-musl          (default features: HTTPS to remote backends and from clients)
#   dist/mcp-proxy-server-x86_64-linux-musl-notls    (--no-default-features)
#   dist/mcp-proxy-server-aarch64-linux-musl[-notls]
# then prints their sizes against the budgets (x86_64 musl: <= 2 MiB without TLS, <= 4 MiB with TLS;
# exit 1 when over), checks that `file` calls them statically linked, and smoke-tests each one
# (x86_64 natively, aarch64 under qemu-aarch64-static): `--list-tools` on a config aggregating the
# stdio mock backend must print its `a__echo` tool.
#
# Installs what it needs when missing: the rustup targets x86_64-unknown-linux-musl and
# aarch64-unknown-linux-musl; the Debian packages musl-tools (musl-gcc: ring's C for x86_64 musl),
# gcc-aarch64-linux-gnu + libc6-dev-arm64-cross (ring's C for aarch64: compiler and the headers it
# includes) and qemu-user-static (running aarch64). aarch64 is linked
# with rust-lld (shipped with rustc), so no aarch64 musl sysroot is needed.
# Honours CARGO_TARGET_DIR (default: target/). Takes ~2-4 min from a cold target dir on 2 cores.
# `--x86_64-only` builds and checks just the two x86_64 binaries (what CI runs for the size budget).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIST="$ROOT/dist"
NAME=mcp-proxy-server
TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
if [ "${1:-}" = "--x86_64-only" ]; then TARGETS=(x86_64-unknown-linux-musl); fi
wants() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
MIB=1048576
BUDGET_NOTLS=$((2 * MIB))   # x86_64 musl, --no-default-features
BUDGET_TLS=$((4 * MIB))     # x86_64 musl, default features

log() { printf 'build-release: %s\n' "$*" >&2; }

# --- prerequisites ---------------------------------------------------------------------------------
installed_targets="$(rustup target list --installed)"
for t in "${TARGETS[@]}"; do
  if ! grep -qx "$t" <<<"$installed_targets"; then
    log "rustup target add $t"
    rustup target add "$t"
  fi
done

missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
if wants aarch64-unknown-linux-musl; then
  command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
  # the cross gcc's libc headers (stdint.h, string.h): a Recommends of gcc-aarch64-linux-gnu, so explicit here
  [ -f /usr/aarch64-linux-gnu/include/stdint.h ] || missing+=(libc6-dev-arm64-cross)
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
fi
if ((${#missing[@]})); then
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  log "apt-get install ${missing[*]}"
  # Wait (up to 10 min) for another apt/dpkg run to release its lock rather than failing.
  APT=("${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600)
  "${APT[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ring's C and assembly: musl-gcc for x86_64 (cc-rs picks it by default for *-musl), the Debian cross gcc
# for aarch64; the aarch64 link itself is done by rust-lld against Rust's self-contained musl crt.
export CC_x86_64_unknown_linux_musl=musl-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld

# --- build -----------------------------------------------------------------------------------------
mkdir -p "$DIST"
grep -qx '/dist' .gitignore 2>/dev/null || echo '/dist' >> .gitignore

short() { case "$1" in x86_64-*) echo x86_64-linux-musl ;; aarch64-*) echo aarch64-linux-musl ;; esac; }

ARTIFACTS=()
for t in "${TARGETS[@]}"; do
  for variant in tls notls; do
    out="$DIST/$NAME-$(short "$t")"
    flags=()
    if [ "$variant" = notls ]; then out="$out-notls"; flags=(--no-default-features); fi
    log "cargo build --release --target $t ${flags[*]:-}"
    start=$(date +%s)
    cargo build --locked --release --quiet --target "$t" "${flags[@]}"
    cp "$TARGET_DIR/$t/release/$NAME" "$out"
    log "  -> $out ($(( $(date +%s) - start )) s)"
    ARTIFACTS+=("$out")
  done
done

# --- sizes, budgets, static linking ----------------------------------------------------------------
status=0
echo
printf '%-44s %10s %8s %10s  %s\n' binary bytes MiB budget check
for f in "${ARTIFACTS[@]}"; do
  bytes=$(stat -c %s "$f")
  mib=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
  budget=""; check="-"
  case "$(basename "$f")" in
    *x86_64*-notls) budget=$BUDGET_NOTLS ;;
    *x86_64*) budget=$BUDGET_TLS ;;
  esac
  if [ -n "$budget" ]; then
    if [ "$bytes" -le "$budget" ]; then check=OK; else check=OVER; status=1; fi
    budget="$((budget / MIB)) MiB"
  else
    budget="-"
  fi
  printf '%-44s %10s %8s %10s  %s\n' "$(basename "$f")" "$bytes" "$mib" "$budget" "$check"
done
echo
for f in "${ARTIFACTS[@]}"; do
  desc="$(file -b "$f")"
  if linked="$(grep -oE 'statically linked|static-pie linked' <<<"$desc")"; then check=OK; else linked="$desc"; check="NOT STATIC"; status=1; fi
  printf '%-44s %-10s %-20s %s\n' "$(basename "$f")" "$check" "$linked" "$(cut -d, -f2 <<<"$desc" | sed 's/^ *//')"
done

# --- smoke tests -----------------------------------------------------------------------------------
SMOKE="$(mktemp -d)"
trap 'rm -rf "$SMOKE"' EXIT
cat > "$SMOKE/mcp_server.json" <<EOF
{ "mcpServers": { "a": { "command": "python3", "args": ["$ROOT/tests/fixtures/mock_server.py", "--name", "a"] } } }
EOF
echo '{}' > "$SMOKE/tool_config.json"

smoke() { # smoke LABEL RUNNER... BINARY
  local label="$1"; shift
  local t0 t1 out rc=0
  t0=$(date +%s%N)
  out="$(LOGGING=warn MCP_PROXY_CONFIG_POLL=0 timeout 60 "$@" --list-tools --config "$SMOKE/mcp_server.json" 2>"$SMOKE/stderr")" || rc=$?
  t1=$(date +%s%N)
  if [ "$rc" -eq 0 ] && grep -q 'a__echo' <<<"$out"; then
    printf 'smoke %-52s OK   (--list-tools: %d tools, a__echo present, %d ms)\n' \
      "$label" "$(grep -c '__' <<<"$out")" $(((t1 - t0) / 1000000))
  else
    printf 'smoke %-52s FAIL (exit %s)\n' "$label" "$rc"
    sed 's/^/    stdout: /' <<<"$out" | head -20
    sed 's/^/    stderr: /' "$SMOKE/stderr" | head -20
    status=1
  fi
}
echo
for f in "${ARTIFACTS[@]}"; do
  case "$f" in
    *x86_64*) smoke "$(basename "$f") (native)" "$f" ;;
    *aarch64*) smoke "$(basename "$f") (qemu)" qemu-aarch64-static "$f" ;;
  esac
done

echo
if [ "$status" -eq 0 ]; then log "ok: ${#ARTIFACTS[@]} binaries in dist/"; else log "FAILED (see above)"; fi
exit "$status"
