#!/usr/bin/env bash
# GPU run of the GPT-2 example (H100 numbers of docs/results.md), from the repository root on the GPU machine:
#   OUT=/some/dir bash examples/gpt2/gpu_run.sh [steps...]   steps: test bench xl profile memcheck (default: all)
# Builds an isolated copy (frugal's headers + examples/gpt2 + tests/gpt2 only, so that other components' tests and
# benchmarks cannot break the configure; headers from $GPT2_INCLUDE when set) with -j16, only the targets the steps
# need (gpt2 lean: CUDA f16; test_gpt2_cuda, test_gpt2_modes), then:
#   test      test_gpt2_cuda and test_gpt2_modes                                          (~40 s)
#   bench     the 124M f16 benchmark = `bash examples/gpt2/bench.sh --device cuda`         (~45 s)
#   xl        the XL f16 set = `bash examples/gpt2/bench.sh --device cuda --model 1558M --set xl`   (~60 s)
#   profile   `gpt2 --profile` for 124M and XL at p = 0.5: the fused step, the step with separate LayerNorm /
#             GELU / KV-append ops, and TEAL, op by op and as one graph replay                   (~40 s)
#   memcheck  compute-sanitizer memcheck of test_gpt2_cuda                                  (~120 s)
# Writes logs and JSON into $OUT. Back on a machine with matplotlib: `bash examples/gpt2/gpu_run.sh collect DIR`
# copies DIR's JSON into docs/data/ and makes the plots and tables (examples/gpt2/plot.py).
set -u
if [ "${1:-}" = collect ]; then
  dir=${2:?usage: gpu_run.sh collect DIR}
  py=/usr/bin/python3; [ -x "$py" ] || py=python3
  for n in gpt2_cuda_f16_124M gpt2_cuda_f16_1558M_xl gpt2_cuda_f16_124M_profile gpt2_cuda_f16_1558M_profile; do
    [ -s "$dir/$n.json" ] || { echo "collect: $dir/$n.json missing"; continue; }
    cp "$dir/$n.json" docs/data/ && "$py" examples/gpt2/plot.py "docs/data/$n.json" "docs/plots/$n"
  done
  exit 0
fi
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
ROOT=$PWD
steps=${*:-test bench xl profile memcheck}
has() { [[ " $steps " == *" $1 "* ]]; }
export LD_LIBRARY_PATH=$ROOT/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
SRC=/tmp/gpt2-src
B=/tmp/gpt2-build
targets=""
{ has bench || has xl || has profile; } && targets="$targets gpt2"
{ has test || has memcheck; } && targets="$targets test_gpt2_cuda"
has test && targets="$targets test_gpt2_modes"
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
  time cmake --build "$B" --target $targets -j16 2>&1 | grep -E "error|warning|FAILED|Linking" | tail -30
} >"$OUT/build.log" 2>&1
cat "$OUT/build.log"
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
