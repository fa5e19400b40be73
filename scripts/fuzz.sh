#!/usr/bin/env bash
# Fuzzes the parsers of untrusted input (fuzz/: image decoding, safetensors headers, TF.js
# manifests, the products file) with libFuzzer under ASan + UBSan, each for a fixed number of runs
# from its seed corpus. Fails on any crash, leak, sanitizer report or broken property.
#
# Usage: scripts/fuzz.sh [TARGET...]        (default: all four)
#   MUSC_FUZZ_RUNS=N        runs per target instead of the defaults below
#   MUSC_FUZZ_SEED=S        libFuzzer seed (default 1, so CI runs are repeatable; 0 = random)
#   MUSC_FUZZ_BUILD_DIR=D   build directory (default build-fuzz)
#   MUSC_BUILD_JOBS=J       build parallelism (default 2)
#
# The seed corpus is copied to a temporary directory first: what libFuzzer adds never lands in the
# repository. A crashing input is kept in $MUSC_FUZZ_BUILD_DIR/artifacts/ for reproduction:
#   build-fuzz/bin/fuzz_image_decode build-fuzz/artifacts/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

build=${MUSC_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${MUSC_BUILD_JOBS:-2}
seed=${MUSC_FUZZ_SEED:-1}

# Runs per target, sized so that the build and all four runs take under 3 minutes on 2 cores
# (measured figures: fuzz/README.md). Image decoding goes through OpenCV and is the slowest.
declare -A default_runs=(
  [fuzz_image_decode]=500000
  [fuzz_safetensors]=150000
  [fuzz_tfjs_manifest]=30000
  [fuzz_products_config]=100000
)
# Longest input each target is given: a little above its largest seed.
declare -A max_len=(
  [fuzz_image_decode]=4096
  [fuzz_safetensors]=2048
  [fuzz_tfjs_manifest]=4096
  [fuzz_products_config]=2048
)

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(fuzz_image_decode fuzz_safetensors fuzz_tfjs_manifest fuzz_products_config)
fi
for t in "${targets[@]}"; do
  if [[ -z "${default_runs[$t]:-}" ]]; then
    echo "fuzz.sh: unknown target $t (known: ${!default_runs[*]})" >&2
    exit 2
  fi
done

# -O1 and line tables only: fuzz builds are rebuilt in CI, and these are enough for stack traces.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DMUSC_SANITIZE=ON -DMUSC_FUZZ=ON -DMUSC_BUILD_TESTS=OFF -DMUSC_BUILD_BENCH=OFF
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

work=$(mktemp -d "${TMPDIR:-/tmp}/musc-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "${targets[@]}"; do
  runs=${MUSC_FUZZ_RUNS:-${default_runs[$t]}}
  corpus="$work/$t"
  mkdir -p "$corpus"
  cp fuzz/corpus/"$t"/* "$corpus"/
  echo "fuzz.sh: $t: $runs runs from $(find "$corpus" -type f | wc -l) seeds"
  dict=()
  if [[ -f fuzz/$t.dict ]]; then dict=(-dict="fuzz/$t.dict"); fi
  start=$SECONDS
  # -close_fd_mask=2: OpenCV and libpng print to stderr for every bad image; sanitizer and
  # libFuzzer reports still come through.
  # TMPDIR: whatever a target leaves in its temporary directory goes with $work.
  if TMPDIR="$work" "$build/bin/$t" "$corpus" "${dict[@]}" -runs="$runs" -seed="$seed" -max_len="${max_len[$t]}" \
      -detect_leaks=1 -timeout=20 -rss_limit_mb=2048 -close_fd_mask=2 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t-" >"$work/$t.log" 2>&1; then
    echo "fuzz.sh: $t: ok in $((SECONDS - start)) s ($(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1))"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/$t.log" |
      sed "s/^/fuzz.sh: $t: /" || true
  else
    echo "fuzz.sh: $t: FAILED after $((SECONDS - start)) s; log tail:" >&2
    tail -n 60 "$work/$t.log" >&2
    failed+=("$t")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: failed: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets passed"
