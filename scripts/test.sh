#!/usr/bin/env bash
# The test command (README): installs dependencies, builds everything, runs every suite, then
# builds the LibTorch-free code with ASan+UBSan and runs its tests too.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
jobs=${MUSC_BUILD_JOBS:-2}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure

# Sanitizers for the code that does not link LibTorch (Debian's LibTorch is not instrumented).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMUSC_SANITIZE=ON
cmake --build build-asan -j"$jobs"
ctest --test-dir build-asan --output-on-failure

# libFuzzer on the parsers of untrusted input, a fixed number of runs each (scripts/fuzz.sh).
scripts/fuzz.sh
