// examples/gpt2/main.cpp — the gpt2 program: a minimal GPT-2 assembled from frugal's parts (see app.hpp, --help).
#include <cstdio>
#include <exception>

#include "entry.hpp"

int main(int argc, char** argv) {
  try {
    const gpt2::cli a = gpt2::cli::parse(argc, argv);
    const frugal::dtype dt = frugal::parse_dtype(a.dtype);
    const bool cuda = a.device == "cuda";
#if !defined(FRUGAL_GPT2_CUDA)
    if (cuda) {
      std::fprintf(stderr, "gpt2: this build has no CUDA (configure with -DFRUGAL_ENABLE_CUDA=ON); use --device cpu\n");
      return 2;
    }
#endif
#if defined(FRUGAL_GPT2_LEAN)
    if (dt != (cuda ? frugal::dtype::f16 : frugal::dtype::f32)) {
      std::fprintf(stderr, "gpt2: a lean build (FRUGAL_GPT2_LEAN) runs f32 on the CPU and f16 on CUDA only\n");
      return 2;
    }
#if defined(FRUGAL_GPT2_CUDA)
    if (cuda) return gpt2::run_cuda_f16(a);
#endif
    return gpt2::run_cpu_f32(a);
#else
#if defined(FRUGAL_GPT2_CUDA)
    if (cuda)
      return dt == frugal::dtype::f16    ? gpt2::run_cuda_f16(a)
             : dt == frugal::dtype::bf16 ? gpt2::run_cuda_bf16(a)
                                         : gpt2::run_cuda_f32(a);
#endif
    return dt == frugal::dtype::f16 ? gpt2::run_cpu_f16(a) : dt == frugal::dtype::bf16 ? gpt2::run_cpu_bf16(a) : gpt2::run_cpu_f32(a);
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt2: %s\n", e.what());
    return 1;
  }
}
