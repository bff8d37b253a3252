// examples/gpt2/gpt2_cuda.cu — the CUDA instantiation of the gpt2 program (f32, f16, bf16).
#include "app.hpp"

namespace gpt2 {
int run_cuda(const cli& a) {
  switch (frugal::parse_dtype(a.dtype)) {
    case frugal::dtype::f16: return runner<frugal::cuda_t, frugal::half>(a).run();
    case frugal::dtype::bf16: return runner<frugal::cuda_t, frugal::bfloat16>(a).run();
    default: return runner<frugal::cuda_t, float>(a).run();
  }
}
}  // namespace gpt2
