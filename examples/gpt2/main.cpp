// examples/gpt2/main.cpp — the gpt2 program: a minimal GPT-2 assembled from frugal's parts (see app.hpp, --help).
#include <cstdio>
#include <exception>

#include "app.hpp"

#if defined(FRUGAL_GPT2_CUDA)
namespace gpt2 {
int run_cuda(const cli& a);  // gpt2_cuda.cu
}
#endif

int main(int argc, char** argv) {
  try {
    const gpt2::cli a = gpt2::cli::parse(argc, argv);
    if (a.device == "cuda") {
#if defined(FRUGAL_GPT2_CUDA)
      return gpt2::run_cuda(a);
#else
      std::fprintf(stderr, "gpt2: this build has no CUDA (configure with -DFRUGAL_ENABLE_CUDA=ON); use --device cpu\n");
      return 2;
#endif
    }
    switch (frugal::parse_dtype(a.dtype)) {
      case frugal::dtype::f16: return gpt2::runner<frugal::cpu_t, frugal::half>(a).run();
      case frugal::dtype::bf16: return gpt2::runner<frugal::cpu_t, frugal::bfloat16>(a).run();
      default: return gpt2::runner<frugal::cpu_t, float>(a).run();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt2: %s\n", e.what());
    return 1;
  }
}
