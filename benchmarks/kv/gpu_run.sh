#!/usr/bin/env bash
# GPU run of the kv component (tests, compute-sanitizer, benchmarks) on the GPU machine, from the repository root:
#   OUT=/some/dir bash benchmarks/kv/gpu_run.sh
# Builds an isolated copy (core + kv only) so that other components' work in progress cannot break the configure.
# Writes logs and the benchmark JSON into $OUT.
set -u
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
ROOT=$PWD
export LD_LIBRARY_PATH=$ROOT/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
SRC=/tmp/kv-src
B=/tmp/kv-build
rm -rf "$SRC" && mkdir -p "$SRC/tests" "$SRC/benchmarks" "$SRC/examples"
cp -r CMakeLists.txt cmake include "$SRC/"
cp -r tests/CMakeLists.txt tests/main.cpp tests/common tests/kv "$SRC/tests/"
cp -r benchmarks/CMakeLists.txt benchmarks/common benchmarks/kv "$SRC/benchmarks/"
: > "$SRC/examples/CMakeLists.txt"
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
  date -u
  cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$ROOT/.deps" \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DFRUGAL_BUILD_BENCHMARKS=ON -DFRUGAL_BUILD_EXAMPLES=OFF -DFRUGAL_INSTALL=OFF >/dev/null
  time cmake --build "$B" --target test_kv_paged_kv_cuda test_kv_vmm_cuda bench_kv_decode_attention bench_kv_memory \
    test_kv_block_allocator test_kv_paged_kv -j16 2>&1 | grep -E "error|warning|FAILED|Linking" | tail -30
} >"$OUT/build.log" 2>&1
cat "$OUT/build.log"
T=$B/tests/kv
for t in test_kv_block_allocator test_kv_paged_kv test_kv_paged_kv_cuda test_kv_vmm_cuda; do
  echo "== $t"
  timeout 120 "$T/$t" 2>&1 | tail -25
done | tee "$OUT/tests.log"
echo "== benchmarks"
timeout ${BENCH_TIMEOUT:-150} "$B/benchmarks/kv/bench_kv_decode_attention" --benchmark_out="$OUT/bench_kv_decode_attention.json" \
  --benchmark_out_format=json --benchmark_counters_tabular=true 2>&1 | tee "$OUT/bench.log" | grep -E "attn/|Run on|MHz" | cut -c1-150
"$B/benchmarks/kv/bench_kv_memory" >"$OUT/memory.md" 2>&1
{
  echo "== memcheck test_kv_paged_kv_cuda (FRUGAL_KV_QUICK)"
  FRUGAL_KV_QUICK=1 timeout ${SAN_TIMEOUT:-100} compute-sanitizer --tool memcheck --error-exitcode 3 "$T/test_kv_paged_kv_cuda" 2>&1 | tail -6
  echo "rc=${PIPESTATUS[0]}"
  echo "== memcheck test_kv_vmm_cuda"
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 "$T/test_kv_vmm_cuda" 2>&1 | tail -6
  echo "rc=${PIPESTATUS[0]}"
  echo "== racecheck test_kv_paged_kv_cuda (graph + prefill cases)"
  timeout ${RACE_TIMEOUT:-70} compute-sanitizer --tool racecheck --error-exitcode 3 "$T/test_kv_paged_kv_cuda" \
    -tc="*Graph*,*prefill*<float>*" 2>&1 | tail -6
  echo "rc=${PIPESTATUS[0]}"
} 2>&1 | tee "$OUT/sanitizer.log"
