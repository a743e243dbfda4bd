#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer) for a bounded time each.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      default 60
#   FUZZ_TARGETS="glob catalog" scripts/fuzz.sh 30     only these targets
#
# Installs cargo-fuzz (pinned) into .deps/cargo if it is missing. The stable toolchain is used with
# RUSTC_BOOTSTRAP=1 for the -Z sanitizer flags cargo fuzz passes. Each target starts from its committed
# seeds (fuzz/seeds/<target>) plus the corpus earlier runs grew (fuzz/corpus/<target>, git-ignored).
# Exits non-zero if any target crashes (panic, failed invariant, sanitizer report, timeout, OOM), and
# prints where the reproducing input was written (fuzz/artifacts/<target>/).
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
CARGO_FUZZ_VERSION=0.13.2
ROOT="$PWD/.deps/cargo"
export PATH="$ROOT/bin:$PATH"
export RUSTC_BOOTSTRAP=1

if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $ROOT"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$ROOT" || exit 2
fi

ALL_TARGETS=$(cd fuzz && cargo fuzz list)
TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"

echo "fuzz: building ${TARGETS//$'\n'/ }"
(cd fuzz && cargo fuzz build -O --debug-assertions) || exit 2

failed=()
summary=()
for target in $TARGETS; do
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  log="fuzz/artifacts/$target.log"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  # -timeout: one input taking over 10 s counts as a hang; -rss_limit_mb: memory blow-ups are crashes.
  (cd fuzz && cargo fuzz run -O --debug-assertions "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="artifacts/$target/" -print_final_stats=1) >"$log" 2>&1
  status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  if [ $status -ne 0 ]; then
    artifact=$(grep -o "artifacts/$target/[^ ]*" "$log" | tail -1)
    echo "fuzz: $target FAILED (exit $status): reproducer fuzz/$artifact; log $log"
    grep -m1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)|deadly signal|SUMMARY" "$log" | sed 's/^/    /'
    echo "    replay: (cd fuzz && RUSTC_BOOTSTRAP=1 $ROOT/bin/cargo-fuzz run -O --debug-assertions $target $artifact)"
    failed+=("$target")
    summary+=("$(printf '%-16s %12s %8s  CRASH fuzz/%s' "$target" "${execs:-?}" "${cov:-?}" "$artifact")")
  else
    summary+=("$(printf '%-16s %12s %8s  ok' "$target" "${execs:-?}" "${cov:-?}")")
  fi
done

echo
printf '%-16s %12s %8s  %s\n' target executions coverage result
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}"
  exit 1
fi
echo "fuzz: no crashes"
