#!/usr/bin/env bash
# The GPU-machine run behind docs/sparsify.md: builds the sparsify targets, runs the CUDA + CPU tests, the demo,
# both benchmarks (JSON), the torch.topk reference, then compute-sanitizer memcheck (full test) and racecheck
# (FRUGAL_TEST_SMALL=1 sweep). Run from the repository root with .deps staged (../shared/tools/stage-device-deps):
#   OUT=/tmp/out bash benchmarks/sparsify/gpu_run.sh
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=${B:-/tmp/b-topk}
# Build from a copy of just the parts these targets need, so that other components' work in progress in the same
# working tree cannot break the configure step.
SRC=${SRC:-/tmp/src-topk}
rm -rf "$SRC"; mkdir -p "$SRC"
for p in CMakeLists.txt cmake include/frugal/core include/frugal/frugal.hpp include/frugal/sparsify tests/CMakeLists.txt \
         tests/main.cpp tests/common tests/core tests/sparsify tests/packaging benchmarks/CMakeLists.txt benchmarks/common \
         benchmarks/sparsify examples/CMakeLists.txt examples/topk_demo; do
  mkdir -p "$SRC/$(dirname "$p")"; cp -r "$p" "$SRC/$p"
done
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PWD/.deps" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DFRUGAL_BUILD_BENCHMARKS=ON -DFRUGAL_BUILD_EXAMPLES=ON >"$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build "$B" -j16 --target test_sparsify_topk test_sparsify_topk_cuda bench_sparsify_topk bench_sparsify_topk_cpu \
  topk_demo_cuda 2>&1 | tail -5
T=$B/tests/sparsify
echo "=== cuda test";   timeout 120 "$T/test_sparsify_topk_cuda" 2>&1 | tail -12
echo "=== cpu test";    timeout 60 "$T/test_sparsify_topk" 2>&1 | tail -3
echo "=== demo";        timeout 30 "$B/examples/topk_demo/topk_demo_cuda"
echo "=== bench cuda";  timeout 150 "$B/benchmarks/sparsify/bench_sparsify_topk" --benchmark_min_time=${CUDA_MIN_TIME:-0.03} \
  --benchmark_out="$OUT/bench_topk_cuda.json" --benchmark_out_format=json 2>&1 | grep -E "x4096/(frugal|select|empty|cub)|rror"
echo "=== bench cpu";   timeout 120 "$B/benchmarks/sparsify/bench_sparsify_topk_cpu" --benchmark_min_time=${CPU_MIN_TIME:-0.05} \
  --benchmark_out="$OUT/bench_topk_cpu.json" --benchmark_out_format=json 2>&1 | grep -E "f32/(1|256)x4096/|rror"
[ -n "${SKIP_TORCH:-}" ] || { echo "=== torch";       timeout 60 python3 benchmarks/sparsify/torch_topk_ref.py >"$OUT/torch_topk.json" 2>"$OUT/torch.err"; tail -2 "$OUT/torch.err"; }
echo "=== memcheck";    timeout ${MEMCHECK_S:-150} compute-sanitizer --tool memcheck "$T/test_sparsify_topk_cuda" 2>&1 | tail -4
echo "=== racecheck";   FRUGAL_TEST_SMALL=1 timeout ${RACECHECK_S:-150} compute-sanitizer --tool racecheck "$T/test_sparsify_topk_cuda" 2>&1 | tail -4
echo "=== done"
