#!/usr/bin/env bash
# GPU run of the GPT-2 example on the GPU machine, from the repository root:
#   OUT=/some/dir bash examples/gpt2/gpu_run.sh [steps...]      steps: build test bench xl profile memcheck (default all)
# Builds an isolated copy (frugal's headers + examples/gpt2 + tests/gpt2 only; the headers from $GPT2_INCLUDE when
# set, e.g. a snapshot of the last commit, so that other components' work in progress cannot break the build), then:
#   test      test_gpt2_cuda and test_gpt2_modes
#   bench     the 124M benchmark (f16): what `bash examples/gpt2/bench.sh --device cuda` runs
#   xl        the XL set (f16): what `bash examples/gpt2/bench.sh --device cuda --model 1558M --set xl` runs
#   profile   gpt2 --profile for 124M and XL at p = 0.5 (fused step, unfused step and TEAL, op by op)
#   memcheck  compute-sanitizer memcheck of test_gpt2_cuda
# Writes logs and JSON into $OUT. The plots are made afterwards from the JSON with examples/gpt2/plot.py.
set -u
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
ROOT=$PWD
steps=${*:-build test bench xl profile memcheck}
export LD_LIBRARY_PATH=$ROOT/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
SRC=/tmp/gpt2-src
B=/tmp/gpt2-build
has() { [[ " $steps " == *" $1 "* ]]; }
if has build; then
  mkdir -p "$SRC/tests" "$SRC/examples"
  rm -rf "$SRC/include" "$SRC/examples/gpt2" "$SRC/tests/gpt2" "$SRC/cmake"
  cp -r CMakeLists.txt cmake "$SRC/"
  cp -r "${GPT2_INCLUDE:-include}" "$SRC/include"
  cp -r tests/CMakeLists.txt tests/main.cpp tests/common tests/gpt2 "$SRC/tests/"
  cp -r examples/CMakeLists.txt examples/gpt2 "$SRC/examples/"
  {
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
    date -u
    cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$ROOT/.deps" \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DFRUGAL_BUILD_TESTS=ON -DFRUGAL_BUILD_BENCHMARKS=OFF -DFRUGAL_BUILD_EXAMPLES=ON \
      -DFRUGAL_GPT2_LEAN=ON -DFRUGAL_INSTALL=OFF >/dev/null
    time cmake --build "$B" --target gpt2 test_gpt2_cuda test_gpt2_modes -j16 2>&1 |
      grep -E "error|warning|FAILED|Linking" | tail -30
  } >"$OUT/build.log" 2>&1
  cat "$OUT/build.log"
fi
G=$B/examples/gpt2/gpt2
common=(--corpus "$ROOT/.cache/corpus" --tokenizer-dir "$ROOT/.cache/gpt2")
if has test; then
  for t in test_gpt2_cuda test_gpt2_modes; do
    echo "== $t"
    timeout 150 "$B/tests/gpt2/$t" 2>&1 | tail -25
  done | tee "$OUT/tests.log"
fi
if has bench; then
  timeout 150 "$G" --bench "$OUT/gpt2_cuda_f16_124M.json" --bench-set full --device cuda --dtype f16 --model 124M \
    "${common[@]}" --patch-vocab "$ROOT/.cache/gpt2-patch-10000.json" 2>&1 | tail -40 | tee "$OUT/bench.log"
fi
if has xl; then
  timeout 150 "$G" --bench "$OUT/gpt2_cuda_f16_1558M_xl.json" --bench-set xl --device cuda --dtype f16 --model 1558M \
    "${common[@]}" 2>&1 | tail -20 | tee "$OUT/xl.log"
fi
if has profile; then
  {
    timeout 60 "$G" --profile "$OUT/gpt2_cuda_f16_124M_profile.json" --device cuda --dtype f16 --p 0.5 "${common[@]}"
    timeout 90 "$G" --profile "$OUT/gpt2_cuda_f16_1558M_profile.json" --device cuda --dtype f16 --model 1558M --p 0.5 \
      "${common[@]}"
  } 2>&1 | tee "$OUT/profile.log"
fi
if has memcheck; then
  {
    echo "== memcheck test_gpt2_cuda"
    timeout 150 compute-sanitizer --tool memcheck --error-exitcode 3 "$B/tests/gpt2/test_gpt2_cuda" 2>&1 | tail -6
    echo "rc=${PIPESTATUS[0]}"
  } 2>&1 | tee "$OUT/sanitizer.log"
fi
