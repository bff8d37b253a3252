#!/usr/bin/env bash
# The rotation component's GPU session: build its CUDA targets, run the CUDA tests, compute-sanitizer memcheck
# (small cases), the CUDA eigh benchmark, and — when build/rotation-cpu/ was carried along with a prebuilt
# bench_rotation_eigh_cpu and its LAPACK libraries — the CPU benchmark pinned to 2 cores. Every stage gets a
# share of a global deadline (DEADLINE seconds, default 345); progress goes to $OUT/summary.txt as it happens.
# Run from the repository root on the GPU machine (carry .deps, optionally build/rotation-cpu):
#   OUT=/some/dir bash benchmarks/rotation/gpu_run.sh [bench-filter]
set -u
root=$PWD
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
sum=$out/summary.txt
export LD_LIBRARY_PATH=$root/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
filter=${1:-.}
deadline=$(( $(date +%s) + ${DEADLINE:-345} ))
left() { local l=$(( deadline - $(date +%s) )); [ "$l" -gt "$1" ] && echo "$1" || echo $(( l > 5 ? l : 5 )); }
say() { echo "$*" | tee -a "$sum"; }
b=/tmp/b-rotation
say "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
say "$(lscpu | grep -E 'Model name' | awk '{$1=$1};1')"
say "$(date -u)"
SECONDS=0
cmake -S . -B $b -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$root/.deps" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DFRUGAL_BUILD_BENCHMARKS=ON -DFRUGAL_BUILD_EXAMPLES=OFF > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build $b --target test_rotation_cuda bench_rotation_eigh -j16 > "$out/build.log" 2>&1 || {
  grep -m30 -E 'error' "$out/build.log"; exit 1; }
say "build: ${SECONDS}s"

SECONDS=0
FRUGAL_SLOW_TESTS=1 timeout "$(left 170)" $b/tests/rotation/test_rotation_cuda -d > "$out/test_rotation_cuda.log" 2>&1
say "tests rc=$? (${SECONDS}s)"
grep -E 'MESSAGE: cuda' "$out/test_rotation_cuda.log" | sed 's/.*MESSAGE: //' | awk '{$1=$1};1' | cut -c1-150 >> "$sum"
grep -E '^[0-9.]+ s:|ERROR|FAILED|CRASHED|test cases|Status' "$out/test_rotation_cuda.log" | head -40 | tee -a "$sum"

SECONDS=0
timeout "$(left 50)" compute-sanitizer --tool memcheck --error-exitcode 9 $b/tests/rotation/test_rotation_cuda \
  -tce='*768*,*4096*,*larosa*' > "$out/memcheck.log" 2>&1
say "memcheck rc=$? (${SECONDS}s): $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1) $(grep -E 'Status' "$out/memcheck.log" | tail -1)"

SECONDS=0
timeout "$(left 130)" $b/benchmarks/rotation/bench_rotation_eigh --benchmark_filter="$filter" \
  --benchmark_out="$out/bench_rotation_eigh.json" --benchmark_out_format=json > "$out/bench_rotation_eigh.txt" 2>&1
say "bench cuda rc=$? (${SECONDS}s)"
grep -E '^eigh' "$out/bench_rotation_eigh.txt" | sed -E 's/\/iterations:[0-9]+\/manual_time//' | awk '{$1=$1};1' | cut -c1-200 >> "$sum"

if [ -x build/rotation-cpu/bench_rotation_eigh_cpu ]; then
  SECONDS=0
  LD_LIBRARY_PATH=$root/build/rotation-cpu/lib:$LD_LIBRARY_PATH FRUGAL_BENCH_THREADS=2 OPENBLAS_NUM_THREADS=2 \
    timeout "$(left 120)" taskset -c 2,3 build/rotation-cpu/bench_rotation_eigh_cpu --benchmark_filter="$filter" \
    --benchmark_out="$out/bench_rotation_eigh_cpu.json" --benchmark_out_format=json > "$out/bench_rotation_eigh_cpu.txt" 2>&1
  say "bench cpu rc=$? (${SECONDS}s)"
  grep -E '^eigh|rror' "$out/bench_rotation_eigh_cpu.txt" | sed -E 's/\/iterations:[0-9]+\/manual_time//' | awk '{$1=$1};1' | cut -c1-200 >> "$sum"
fi
cat "$sum" | cut -c1-200
