// examples/gpt2/run_cpu_bf16.cpp — the gpt2 program on the CPU in bf16 (one translation unit per dtype: parallel builds).
#include "app.hpp"
#include "entry.hpp"

int gpt2::run_cpu_bf16(const cli& a) { return runner<frugal::cpu_t, frugal::bfloat16>(a).run(); }
