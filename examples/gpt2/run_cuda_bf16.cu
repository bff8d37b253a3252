// examples/gpt2/run_cuda_bf16.cu — the gpt2 program on CUDA in bf16 (one translation unit per dtype: parallel builds).
#include "app.hpp"
#include "entry.hpp"

int gpt2::run_cuda_bf16(const cli& a) { return runner<frugal::cuda_t, frugal::bfloat16>(a).run(); }
