#!/usr/bin/env bash
# The GPT-2 benchmark: every decoding mode measured on one model in one run, then the plots.
#
#   bash examples/gpt2/bench.sh [--device cpu|cuda] [--dtype f32|f16|bf16] [--model 124M|355M|774M|1558M]
#                               [--set full|quick|xl] [--build DIR] [--jobs N] [-- extra gpt2 options]
#
# Writes docs/data/gpt2_<device>_<dtype>_<model>[_<set>].json (measured numbers, with command, device, date) and
# docs/plots/<same name>_{tokens,kv_memory,decode,speedup,quality,kv_vs_nocache,dashboard}.png (examples/gpt2/plot.py).
# Needs GPT-2's tokenizer files and the man-page corpus under .cache/ (fetched / rendered here when missing; a
# machine without network, e.g. the GPU machine, must get .cache/ carried over), and the patch vocabulary is cached
# in .cache/gpt2-patch-<m>.json after its first build.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
device=cpu; dtype=""; model=124M; set=full; build=""; jobs=$(nproc); extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --set) set=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) extra+=("$1"); shift ;;
  esac
done
[ -n "$dtype" ] || { [ "$device" = cuda ] && dtype=f16 || dtype=f32; }
build=${build:-build/gpt2-bench-$device}
cuda=OFF; [ "$device" = cuda ] && cuda=ON
export PATH=$PATH:/usr/local/cuda/bin
prefix=()
if [ -d "$root/.deps" ]; then  # the GPU machine: Debian packages staged by tools/stage-device-deps
  prefix=(-DCMAKE_PREFIX_PATH="$root/.deps")
  export LD_LIBRARY_PATH="$root/.deps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi

[ -s .cache/gpt2/encoder.json ] || bash tests/vocab/fetch-gpt2-tokenizer.sh "$root/.cache/gpt2"
[ -s .cache/corpus/train.txt ] || bash tests/vocab/make-corpus.sh "$root/.cache/corpus"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRUGAL_ENABLE_CUDA=$cuda -DFRUGAL_BUILD_TESTS=OFF \
  -DFRUGAL_INSTALL=OFF -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}" "${prefix[@]}" >/dev/null
cmake --build "$build" --target gpt2 -j "$jobs"

name=gpt2_${device}_${dtype}_${model}
[ "$set" = full ] || name=${name}_${set}
mkdir -p docs/data docs/plots
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}  # OpenBLAS threads park at once after the prefill GEMMs
"$build/examples/gpt2/gpt2" --bench "docs/data/$name.json" --bench-set "$set" --device "$device" --dtype "$dtype" \
  --model "$model" --corpus "$root/.cache/corpus" --tokenizer-dir "$root/.cache/gpt2" \
  --patch-vocab "$root/.cache/gpt2-patch-10000.json" "${extra[@]}"
py=/usr/bin/python3; [ -x "$py" ] || py=python3  # Debian's python3 has python3-matplotlib
"$py" examples/gpt2/plot.py "docs/data/$name.json" "docs/plots/$name"
