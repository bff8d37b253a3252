#!/usr/bin/env bash
# The rotation component's GPU session: build its CUDA targets, run the CUDA tests, compute-sanitizer memcheck
# (small cases), the CUDA eigh benchmark, and — when build/rotation-cpu/ was carried along with a prebuilt
# bench_rotation_eigh_cpu and its LAPACK libraries — the CPU benchmark on 2 pinned cores.
# Run from the repository root on the GPU machine (carry .deps, optionally build/rotation-cpu):
#   OUT=/some/dir bash benchmarks/rotation/gpu_run.sh [bench-filter]
set -u
root=$PWD
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$root/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
filter=${1:-.}
b=/tmp/b-rotation
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
lscpu | grep -E 'Model name' | tee -a "$out/gpu.txt"
date -u | tee -a "$out/gpu.txt"
SECONDS=0
cmake -S . -B $b -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$root/.deps" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DFRUGAL_BUILD_BENCHMARKS=ON -DFRUGAL_BUILD_EXAMPLES=OFF > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build $b --target test_rotation_cuda bench_rotation_eigh -j16 > "$out/build.log" 2>&1 || {
  grep -m30 -E 'error' "$out/build.log"; exit 1; }
echo "build: ${SECONDS}s"

SECONDS=0
timeout 200 $b/tests/rotation/test_rotation_cuda -s > "$out/test_rotation_cuda.log" 2>&1
echo "tests rc=$? (${SECONDS}s)"
grep -E 'MESSAGE: cuda' "$out/test_rotation_cuda.log" | sed 's/.*MESSAGE: //' | awk '{$1=$1};1' | cut -c1-150
grep -E 'ERROR|FAILED|failed|Status' "$out/test_rotation_cuda.log" | head -30

SECONDS=0
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 $b/tests/rotation/test_rotation_cuda \
  -tce='*768*,*4096*,*larosa*' > "$out/memcheck.log" 2>&1
echo "memcheck rc=$? (${SECONDS}s): $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1) $(grep -E 'Status' "$out/memcheck.log" | tail -1)"

SECONDS=0
timeout 150 $b/benchmarks/rotation/bench_rotation_eigh --benchmark_filter="$filter" \
  --benchmark_out="$out/bench_rotation_eigh.json" --benchmark_out_format=json > "$out/bench_rotation_eigh.txt" 2>&1
echo "bench cuda rc=$? (${SECONDS}s)"
grep -E '^eigh' "$out/bench_rotation_eigh.txt" | sed -E 's/\/iterations:[0-9]+\/manual_time//' | awk '{$1=$1};1' | cut -c1-200

if [ -x build/rotation-cpu/bench_rotation_eigh_cpu ]; then
  SECONDS=0
  LD_LIBRARY_PATH=$root/build/rotation-cpu/lib:$LD_LIBRARY_PATH FRUGAL_BENCH_THREADS=2 OPENBLAS_NUM_THREADS=2 \
    timeout 100 taskset -c 2,3 build/rotation-cpu/bench_rotation_eigh_cpu --benchmark_filter="$filter" \
    --benchmark_out="$out/bench_rotation_eigh_cpu.json" --benchmark_out_format=json > "$out/bench_rotation_eigh_cpu.txt" 2>&1
  echo "bench cpu rc=$? (${SECONDS}s)"
  grep -E '^eigh|rror' "$out/bench_rotation_eigh_cpu.txt" | sed -E 's/\/iterations:[0-9]+\/manual_time//' | awk '{$1=$1};1' | cut -c1-200
fi
