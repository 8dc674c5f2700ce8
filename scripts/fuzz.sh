#!/usr/bin/env bash
# Builds the cargo-fuzz targets (fuzz/) and runs each briefly, one at a time, from the
# committed seed corpus; exits non-zero if any target crashes (panic, abort, OOM, timeout).
#   scripts/fuzz.sh [--seconds N] [TARGET...]     (default: 20 s each, every target)
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Crash inputs are
# left in fuzz/artifacts/<target>/; libFuzzer's corpus growth in fuzz/corpus-run/ (ignored).
# CARGO_TARGET_DIR is honoured (default fuzz/target).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=20
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
cd "$repo/fuzz"
toolchain=${FUZZ_TOOLCHAIN:-+nightly}
target_dir=${CARGO_TARGET_DIR:-$repo/fuzz/target}
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "$toolchain" fuzz list)
fi
start=$(date +%s)
# One cargo build for every target (they share all dependencies).
cargo "$toolchain" fuzz build --target-dir "$target_dir" 2>&1 | tail -n 3 \
  || { echo "fuzz build failed" >&2; exit 2; }
echo "build: $(( $(date +%s) - start )) s"
failed=()
for t in "${targets[@]}"; do
  run="$repo/fuzz/corpus-run/$t"
  mkdir -p "$run" "$repo/fuzz/artifacts/$t"
  # Allocation bound: one malloc over 512 MiB, or RSS over 2 GiB, is a failure.
  if ! cargo "$toolchain" fuzz run --target-dir "$target_dir" "$t" "$run" "$repo/fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -print_final_stats=1 > "$run.log" 2>&1; then
    failed+=("$t")
    tail -n 40 "$run.log" >&2
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$run.log" | grep -o '[0-9]*$' || echo '?')
  echo "$t: ${seconds}s, $execs executions, $([ -n "${failed[*]:-}" ] && [[ " ${failed[*]} " == *" $t "* ]] && echo CRASH || echo ok)"
done
echo "total: $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
