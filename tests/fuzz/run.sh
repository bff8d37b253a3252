#!/usr/bin/env bash
# Builds frugal's libFuzzer targets with clang (ASan+UBSan) and runs each for a bounded time.
#   bash tests/fuzz/run.sh [seconds per target, default 45]      (CI runs it through tests/run.sh)
#   bash tests/fuzz/run.sh 3600                                  (the long, documented run)
# New crash inputs land in build/fuzz/crashes/<target>/; fix the bug, then copy the input into
# tests/fuzz/regressions/<target>/ so the replay test keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-45}
cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFRUGAL_ENABLE_CUDA=OFF -DFRUGAL_BUILD_FUZZERS=ON -DFRUGAL_BUILD_EXAMPLES=OFF -DFRUGAL_INSTALL=OFF >/dev/null
targets=$(sed -n "s/^ *frugal_add_fuzzer(\([a-z_0-9]*\).*/\1/p" tests/fuzz/CMakeLists.txt)
cmake --build build/fuzz -j "$(nproc)" --target $(for t in $targets; do echo fuzz_$t; done)
for t in $targets; do
  [ -x build/fuzz/tests/fuzz/fuzz_$t ] || { echo "fuzz_$t not built (dependency missing)"; continue; }
  mkdir -p build/fuzz/corpus/$t build/fuzz/crashes/$t
  echo "=== fuzz_$t: ${secs}s ==="
  build/fuzz/tests/fuzz/fuzz_$t -max_total_time="$secs" -print_final_stats=1 -artifact_prefix=build/fuzz/crashes/$t/ \
    build/fuzz/corpus/$t tests/fuzz/corpus/$t 2>&1 | grep -E 'stat::number_of_executed_runs|ERROR|SUMMARY|Done' || true
  if ls build/fuzz/crashes/$t/* >/dev/null 2>&1; then echo "fuzz_$t found a crash: build/fuzz/crashes/$t"; exit 1; fi
done
