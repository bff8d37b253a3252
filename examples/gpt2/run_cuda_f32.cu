// examples/gpt2/run_cuda_f32.cu — the gpt2 program on CUDA in f32 (one translation unit per dtype: parallel builds).
#include "app.hpp"
#include "entry.hpp"

int gpt2::run_cuda_f32(const cli& a) { return runner<frugal::cuda_t, float>(a).run(); }
