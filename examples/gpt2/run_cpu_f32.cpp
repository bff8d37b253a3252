// examples/gpt2/run_cpu_f32.cpp — the gpt2 program on the CPU in f32 (one translation unit per dtype: parallel builds).
#include "app.hpp"
#include "entry.hpp"

int gpt2::run_cpu_f32(const cli& a) { return runner<frugal::cpu_t, float>(a).run(); }
