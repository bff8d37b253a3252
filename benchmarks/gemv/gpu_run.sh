#!/usr/bin/env bash
# GPU run of the gemv component (tests, compute-sanitizer, benchmarks) on the GPU machine, from the repository root:
#   OUT=/some/dir [BENCH_FILTER=regex] [BENCH_REPS=3] [SKIP_TESTS=1] bash benchmarks/gemv/gpu_run.sh
# Builds an isolated copy (core + sparsify + gemv only) so that other components' work in progress cannot break
# the configure. Writes logs and the benchmark JSON (bench_gemv.json) into $OUT.
set -u
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
ROOT=$PWD
export LD_LIBRARY_PATH=$ROOT/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
SRC=/tmp/gemv-src
B=/tmp/gemv-build
rm -rf "$SRC" && mkdir -p "$SRC/tests" "$SRC/benchmarks" "$SRC/examples"
cp -rp CMakeLists.txt cmake include "$SRC/"
cp -rp tests/CMakeLists.txt tests/main.cpp tests/common tests/gemv "$SRC/tests/"
cp -rp benchmarks/CMakeLists.txt benchmarks/common benchmarks/gemv "$SRC/benchmarks/"
: > "$SRC/examples/CMakeLists.txt"
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
  date -u
  cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$ROOT/.deps" \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DFRUGAL_BUILD_BENCHMARKS=ON -DFRUGAL_BUILD_EXAMPLES=OFF -DFRUGAL_INSTALL=OFF >/dev/null
  time cmake --build "$B" --target test_gemv test_gemv_cuda bench_gemv -j16 2>&1 | grep -E "error|warning|FAILED|Linking" | tail -30
} >"$OUT/build.log" 2>&1
cat "$OUT/build.log"
T=$B/tests/gemv
if [ -z "${SKIP_TESTS:-}" ]; then
  for t in test_gemv_cuda test_gemv; do
    echo "== $t"
    timeout ${TEST_TIMEOUT:-200} "$T/$t" >"$OUT/$t.log" 2>&1
    echo "rc=$?"
    grep -E "ERROR|FAILED|error" "$OUT/$t.log" | head -20
    tail -4 "$OUT/$t.log"
  done | tee "$OUT/tests.log"
fi
echo "== benchmarks"
timeout ${BENCH_TIMEOUT:-200} "$B/benchmarks/gemv/bench_gemv" --benchmark_filter="${BENCH_FILTER:-.}" \
  --benchmark_repetitions=${BENCH_REPS:-3} --benchmark_out="$OUT/bench_gemv.json" --benchmark_out_format=json \
  --benchmark_counters_tabular=true 2>&1 | tee "$OUT/bench.log" | grep -E "_mean|Run on|MHz" | cut -c1-150
if [ -z "${SKIP_TESTS:-}" ]; then
  {
    echo "== memcheck test_gemv_cuda (fused errors, outlier row, graphs, pdl chain, errors)"
    timeout ${SAN_TIMEOUT:-150} compute-sanitizer --tool memcheck --error-exitcode 3 "$T/test_gemv_cuda" \
      -tc="*fused options*,*outlier*,*Graph*,*programmatic*,*bad input*" 2>&1 | tail -6
    echo "rc=${PIPESTATUS[0]}"
    echo "== racecheck test_gemv_cuda (graph cases)"
    timeout ${RACE_TIMEOUT:-90} compute-sanitizer --tool racecheck --error-exitcode 3 "$T/test_gemv_cuda" \
      -tc="*Graph*,*programmatic*" 2>&1 | tail -6
    echo "rc=${PIPESTATUS[0]}"
  } 2>&1 | tee "$OUT/sanitizer.log"
fi
