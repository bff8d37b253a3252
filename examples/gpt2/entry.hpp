// examples/gpt2/entry.hpp — one entry point per (device, dtype), each in its own translation unit so that the build
// compiles them in parallel (the demo builds and runs in under three minutes on two cores).
#pragma once

#include "cli.hpp"

namespace gpt2 {
int run_cpu_f32(const cli& a);
int run_cpu_f16(const cli& a);
int run_cpu_bf16(const cli& a);
#if defined(FRUGAL_GPT2_CUDA)
int run_cuda_f32(const cli& a);
int run_cuda_f16(const cli& a);
int run_cuda_bf16(const cli& a);
#endif
}  // namespace gpt2
