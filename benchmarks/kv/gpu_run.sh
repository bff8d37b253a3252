#!/usr/bin/env bash
# GPU run of the kv component (tests, compute-sanitizer, benchmarks) on the GPU machine, from the repository root:
#   OUT=/some/dir bash benchmarks/kv/gpu_run.sh
# Builds an isolated copy (core + kv only) so that other components' work in progress cannot break the configure.
# Writes into $OUT: run.log (build, tests, benchmark console, sanitizers), bench_kv_decode_attention.json, memory.md
# (and with KV_TUNE=1 the variants' JSON and ncu.txt): at most 7 files.
# KV_TUNE=1 also builds the kernel-knob variants (s4 / s6: 4 / 6 cp.async stages, t32k: 32 KB tiles), runs them on
# the B = 1 and B = 8/32, T = 8192 shapes, and runs Nsight Compute on B = 1, T = 8192 (attention + merge kernels).
# Quick mode (a short device budget): PREBUILT=<dir> skips the build and takes the binaries from <dir> (built here
# for sm_90: tests/kv/* and benchmarks/kv/* flattened into <dir>; carry it with .deps); TESTS='names' picks the test
# programs; BENCH_FILTER=regex is passed as --benchmark_filter; BENCH_VARIANTS='tag ...' also runs
# bench_kv_decode_attention_<tag> (same filter; each into its own JSON; FRUGAL_KV_TL_DIR=$OUT for the timeline
# variants); BENCH_REPEAT=n runs the list n times (interleaved A/B). Quick mode runs no sanitizers; in the full
# mode KV_SAN=0 skips them.
set -u
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
ROOT=$PWD
export LD_LIBRARY_PATH=$ROOT/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
SRC=/tmp/kv-src
B=/tmp/kv-build
if [ -n "${PREBUILT:-}" ]; then
  {
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
    date -u
    git log -1 --format='commit %H %s' 2>/dev/null
  } >"$OUT/run.log" 2>&1
  cat "$OUT/run.log"
  P=$PREBUILT
  for t in ${TESTS:-test_kv_block_allocator test_kv_paged_kv test_kv_paged_kv_cuda test_kv_vmm_cuda}; do
    echo "== $t"
    timeout ${TEST_TIMEOUT:-120} "$P/$t" 2>&1 | tail -25
  done 2>&1 | tee -a "$OUT/run.log" | grep -E "^==|Status|test cases|ERROR"
  echo "== benchmarks" | tee -a "$OUT/run.log"
  for r in $(seq 1 ${BENCH_REPEAT:-1}); do
    for v in "" ${BENCH_VARIANTS:-}; do
      b=bench_kv_decode_attention${v:+_$v}
      echo "== $b (round $r)"
      FRUGAL_KV_TL_DIR=$OUT timeout ${BENCH_TIMEOUT:-150} "$P/$b" --benchmark_filter="${BENCH_FILTER:-.}" \
        --benchmark_out="$OUT/$b.r$r.json" --benchmark_out_format=json 2>&1 | grep -E "attn/" | cut -c1-110
    done
  done 2>&1 | tee -a "$OUT/run.log"
  # at most 8 files come back from the device tool: the JSON and CSV files in one archive
  (cd "$OUT" && tar -czf bench_out.tgz ./*.json $(ls ./*.csv 2>/dev/null) && rm -f ./*.json ./*.csv)
  ls -la "$OUT"
  echo "== test summary"
  grep -E "^==|Status|test cases|ERROR" "$OUT/run.log" | grep -v "^== bench"
  exit 0
fi
rm -rf "$SRC" && mkdir -p "$SRC/tests" "$SRC/benchmarks" "$SRC/examples"
cp -r CMakeLists.txt cmake include "$SRC/"
cp -r tests/CMakeLists.txt tests/main.cpp tests/common tests/kv "$SRC/tests/"
cp -r benchmarks/CMakeLists.txt benchmarks/common benchmarks/kv "$SRC/benchmarks/"
: > "$SRC/examples/CMakeLists.txt"
V=""
[ "${KV_TUNE:-0}" = 1 ] && V="bench_kv_decode_attention_s4 bench_kv_decode_attention_s6 bench_kv_decode_attention_t32k"
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
  date -u
  cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$ROOT/.deps" \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DFRUGAL_BUILD_BENCHMARKS=ON -DFRUGAL_BUILD_EXAMPLES=OFF -DFRUGAL_INSTALL=OFF >/dev/null
  time cmake --build "$B" --target test_kv_paged_kv_cuda test_kv_vmm_cuda bench_kv_decode_attention bench_kv_memory \
    test_kv_block_allocator test_kv_paged_kv $V -j16 2>&1 | grep -E "error|warning|FAILED|Linking" | tail -30
} >"$OUT/run.log" 2>&1
cat "$OUT/run.log"
T=$B/tests/kv
BB=$B/benchmarks/kv
for t in test_kv_block_allocator test_kv_paged_kv test_kv_paged_kv_cuda test_kv_vmm_cuda; do
  echo "== $t"
  timeout ${TEST_TIMEOUT:-120} "$T/$t" 2>&1 | tail -25
done 2>&1 | tee -a "$OUT/run.log" | grep -E "^==|Status|test cases|ERROR"
echo "== benchmarks"
timeout ${BENCH_TIMEOUT:-150} "$BB/bench_kv_decode_attention" --benchmark_out="$OUT/bench_kv_decode_attention.json" \
  --benchmark_out_format=json --benchmark_counters_tabular=true 2>&1 | tee -a "$OUT/run.log" | grep -E "attn/|Run on|MHz" |
  grep -E "floor|b1_t8192|b32_t8192_h32_kv8_d128/paged |Run on" | cut -c1-150
"$BB/bench_kv_memory" >"$OUT/memory.md" 2>&1
if [ -n "$V" ]; then
  for v in $V; do
    timeout ${VAR_TIMEOUT:-20} "$BB/$v" --benchmark_filter='b1_t(8192|32768)_h32.*/paged/|b32_t8192_h32.*/paged/' \
      --benchmark_out="$OUT/$v.json" --benchmark_out_format=json >/dev/null 2>&1
  done
  for f in 'b1_t8192_h32_kv8_d128/paged/'; do
    timeout ${NCU_TIMEOUT:-40} ncu -k regex:attention -c 2 --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section WarpStateStats --section Occupancy --section LaunchStats --section SchedulerStats \
      "$BB/bench_kv_decode_attention" --benchmark_filter="$f" 2>&1 | grep -v "^==PROF==" | grep -E -v "^\s*$|-----"
  done >"$OUT/ncu.txt" 2>&1
fi
[ "${KV_SAN:-1}" = 1 ] && {
  echo "== memcheck test_kv_paged_kv_cuda (FRUGAL_KV_QUICK)"
  FRUGAL_KV_QUICK=1 timeout ${SAN_TIMEOUT:-100} compute-sanitizer --tool memcheck --error-exitcode 3 "$T/test_kv_paged_kv_cuda" 2>&1 | tail -6
  echo "rc=${PIPESTATUS[0]}"
  echo "== memcheck test_kv_vmm_cuda"
  timeout ${VMM_SAN_TIMEOUT:-60} compute-sanitizer --tool memcheck --error-exitcode 3 "$T/test_kv_vmm_cuda" 2>&1 | tail -6
  echo "rc=${PIPESTATUS[0]}"
  echo "== racecheck test_kv_paged_kv_cuda (graph + prefill cases)"
  timeout ${RACE_TIMEOUT:-70} compute-sanitizer --tool racecheck --error-exitcode 3 "$T/test_kv_paged_kv_cuda" \
    -tc="*Graph*,*prefill*<float>*,*fused*<float>*" 2>&1 | tail -6
  echo "rc=${PIPESTATUS[0]}"
} 2>&1 | tee -a "$OUT/run.log"
ls -la "$OUT"
