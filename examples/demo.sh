#!/usr/bin/env bash
# The README's demo command: installs what is missing (Debian packages), builds the GPT-2 example and runs its
# short demo — a prompt through the real GPT-2 tokenizer, a few dozen tokens in each decoding mode, and a table
# of measured times. Runs on CUDA when a GPU is present, otherwise on the CPU (CUDA code is then not even built).
#
#   bash examples/demo.sh [extra gpt2 arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash cmake/install-deps.sh
export PATH=$PATH:/usr/local/cuda/bin

cuda=OFF; device=cpu
if command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  cuda=ON; device=cuda
fi
bash tests/vocab/fetch-gpt2-tokenizer.sh "$root/.cache/gpt2"

cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRUGAL_ENABLE_CUDA=$cuda -DFRUGAL_BUILD_TESTS=OFF \
  -DFRUGAL_INSTALL=OFF -DFRUGAL_GPT2_LEAN=ON -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-native}" >/dev/null
cmake --build build/demo --target gpt2 -j "$(nproc)"
exec build/demo/examples/gpt2/gpt2 --demo --device "$device" --tokenizer-dir "$root/.cache/gpt2" "$@"
