// Shared by main.cpp (CPU) and main.cu (CPU + CUDA): the batch, the CPU run, and the printout.
#pragma once

#include <frugal/sparsify/topk.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace demo {

constexpr int rows = 16, n = 4096, k = n / 2;  // a batch of 16 hidden states of width 4096, keep half

//! Activations with heavy tails, like an LLM's: Laplace-distributed, plus a few large outliers per row.
inline std::vector<float> make_batch() {
  std::mt19937 rng(2024);
  std::exponential_distribution<float> e(1.f);
  std::bernoulli_distribution sign(0.5), outlier(0.002);
  std::vector<float> x(static_cast<std::size_t>(rows) * n);
  for (auto& v : x) v = (sign(rng) ? 1.f : -1.f) * e(rng) * (outlier(rng) ? 20.f : 1.f);
  return x;
}

//! Median of `reps` timed calls of f, in microseconds (f must finish its work before returning).
template <class F>
double median_us(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[reps / 2];
}

inline void print_result(const char* device, const std::vector<float>& x, const std::vector<std::int32_t>& idx,
                         const std::vector<float>& val, double us) {
  double kept = 0, total = 0;
  for (float v : x) total += double(v) * v;
  for (float v : val) kept += double(v) * v;
  std::printf("[%s] top-k of %d x %d (k = %d): %.1f us per batch\n", device, rows, n, k, us);
  std::printf("  row 0 keeps:");
  for (int j = 0; j < 6; ++j) std::printf(" x[%d]=%.3f", idx[j], val[j]);
  std::printf(" ... (indices ascending)\n");
  std::printf("  kept %d of %d entries (%.0f%% sparse) and %.1f%% of the energy sum(x^2)\n", rows * k, rows * n,
              100.0 * (n - k) / n, 100.0 * kept / total);
}

//! The CPU run: top-k indices and values, plus the dense masked form, timed.
inline void run_cpu(const std::vector<float>& x, std::vector<std::int32_t>& idx, std::vector<float>& val) {
  frugal::matrix_view<const float> xv(x.data(), rows, n);
  frugal::matrix_view<std::int32_t> iv(idx.data(), rows, k);
  frugal::matrix_view<float> vv(val.data(), rows, k);
  const double us = median_us(50, [&] { frugal::topk(frugal::cpu, xv, k, iv, vv); });
  print_result("cpu", x, idx, val, us);
  std::vector<float> y(x.size());
  frugal::topk_mask(frugal::cpu, xv, k, frugal::matrix_view<float>(y.data(), rows, n));
  float kth = 0;
  frugal::topk_select(frugal::cpu, frugal::matrix_view<const float>(x.data(), 1, n), k, &kth);
  std::printf("  dense form: y = x on the kept entries, 0 elsewhere; row 0 keeps |x| >= %.4f\n", kth);
}

}  // namespace demo
