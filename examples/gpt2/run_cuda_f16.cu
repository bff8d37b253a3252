// examples/gpt2/run_cuda_f16.cu — the gpt2 program on CUDA in f16 (one translation unit per dtype: parallel builds).
#include "app.hpp"
#include "entry.hpp"

int gpt2::run_cuda_f16(const cli& a) { return runner<frugal::cuda_t, frugal::half>(a).run(); }
