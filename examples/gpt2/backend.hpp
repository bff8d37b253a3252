// examples/gpt2/backend.hpp — what the GPT-2 engine needs from a device besides frugal's kernels: memory, copies,
// a clock, and the prefill GEMM. backend<cpu_t> is here; backend<cuda_t> (cudaMalloc, cuBLAS, CUDA Graphs) is in
// backend_cuda.cuh, compiled only by nvcc.
#pragma once

#include <frugal/core/device.hpp>
#include <frugal/core/view.hpp>
#include <frugal/gemv/gemv.hpp>
#include <frugal/rotation/larosa.hpp>

#if defined(FRUGAL_GPT2_CBLAS)
#include <cblas.h>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "model.hpp"

namespace gpt2 {

template <class Tag>
struct backend;

template <>
struct backend<frugal::cpu_t> {
  using tag_t = frugal::cpu_t;
  static constexpr bool is_cuda = false;
  static constexpr const char* name = "cpu";
  using graph_t = int;  // no graphs on the CPU

  struct context {
    frugal::cpu_t tag;
    explicit context(frugal::cpu_t t = {}) : tag(t) {}
  };

  static void* alloc(context&, std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!p) fail("alloc", "out of host memory (", bytes, " bytes)");
    return p;
  }
  static void release(void* p) { std::free(p); }
  static void to_device(context&, void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void to_device_async(context& c, void* dst, const void* src, std::size_t bytes) { to_device(c, dst, src, bytes); }
  static void* alloc_pinned(std::size_t bytes) { return bytes ? std::malloc(bytes) : nullptr; }
  static void release_pinned(void* p) { std::free(p); }
  static void to_host(context&, void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void copy(context&, void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memmove(dst, src, bytes);
  }
  static void zero(context&, void* p, std::size_t bytes) {
    if (bytes) std::memset(p, 0, bytes);
  }
  static void sync(context&) {}

  //! y[rows, N] (+)= x[rows, K] · w[K, N] + bias: the prefill GEMM. f32 with OpenBLAS when the build found it
  //! (FRUGAL_GPT2_CBLAS); otherwise, and for f16/bf16, frugal::gemv's batched path (tiles of 8 rows share one pass
  //! over the weights).
  template <class T>
  static void gemm(context& c, frugal::matrix_view<const T> x, frugal::matrix_view<const T> w, const T* bias,
                   frugal::matrix_view<T> y, bool accumulate) {
#if defined(FRUGAL_GPT2_CBLAS)
    if constexpr (std::is_same_v<T, float>) {
      if (x.rows > 8) {
        const std::int64_t rows = x.rows, N = w.cols;
        if (bias)
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t n = 0; n < N; ++n) y(r, n) = (accumulate ? y(r, n) : 0.f) + bias[n];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(N),
                    static_cast<int>(x.cols), 1.f, x.data, static_cast<int>(x.ld), w.data, static_cast<int>(w.ld),
                    (accumulate || bias) ? 1.f : 0.f, y.data, static_cast<int>(y.ld));
        return;
      }
    }
#endif
    frugal::gemv(c.tag, x, w, bias, y, frugal::gemv_options{accumulate});
  }

  //! Offline weight rotation in f32 (LaRoSA folding): left ? W [rows, cols] <- Qᵀ·W (Q [rows, rows])
  //!                                                          : W [rows, cols] <- W·Q  (Q [cols, cols]).
  static void rotate(context& c, bool left, float* w, std::int64_t rows, std::int64_t cols, const float* q) {
    const std::int64_t n = left ? rows : cols;
#if defined(FRUGAL_GPT2_CBLAS)
    (void)c;
    const std::vector<float> t(w, w + rows * cols);
    if (left)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols),
                  static_cast<int>(rows), 1.f, q, static_cast<int>(n), t.data(), static_cast<int>(cols), 0.f, w,
                  static_cast<int>(cols));
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols),
                  static_cast<int>(cols), 1.f, t.data(), static_cast<int>(cols), q, static_cast<int>(n), 0.f, w,
                  static_cast<int>(cols));
#else
    const frugal::matrix_view<const float> Q(q, n, n);
    if (left)
      frugal::rotate_input<float, float>(c.tag, Q, frugal::matrix_view<float>(w, rows, cols), frugal::weight_layout::in_out);
    else
      frugal::rotate_output<float, float>(c.tag, frugal::matrix_view<float>(w, rows, cols), nullptr, Q,
                                          frugal::weight_layout::in_out);
#endif
  }

  //! Wall clock in seconds (after sync).
  static double now(context&) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  //! Per-op timer for --profile: mark(name) after each op; durations between marks (ops are synchronous here).
  struct profiler {
    std::vector<std::pair<const char*, double>> t;
    void begin(context& c) { t.assign(1, {nullptr, now(c)}); }
    void mark(context& c, const char* name) { t.push_back({name, now(c)}); }
    std::vector<std::pair<const char*, double>> end(context&) {
      std::vector<std::pair<const char*, double>> r;
      for (std::size_t i = 1; i < t.size(); ++i) r.push_back({t[i].first, t[i].second - t[i - 1].second});
      return r;
    }
  };

  //! Read+write bandwidth of a large memcpy (bytes/s), for the roofline figures.
  static double copy_bandwidth(context& c, std::size_t bytes = std::size_t(1) << 30) {
    std::vector<char> a(bytes, 1), b(bytes, 2);
    double best = 0;
    for (int it = 0; it < 3; ++it) {
      const double t0 = now(c);
      const std::int64_t chunks = 64;
      frugal::detail::parallel_for(c.tag, chunks, 1, [&](std::int64_t s, std::int64_t e) {
        for (std::int64_t i = s; i < e; ++i)
          std::memcpy(b.data() + bytes / chunks * i, a.data() + bytes / chunks * i, bytes / chunks);
      });
      const double dt = now(c) - t0;
      best = std::max(best, 2.0 * double(bytes) / dt);
    }
    return best;
  }
};

//! An owning array of T in the memory of Tag's device.
template <class Tag, class T>
class buffer {
 public:
  buffer() = default;
  buffer(typename backend<Tag>::context& c, std::size_t n) : n_(n) {
    p_ = static_cast<T*>(backend<Tag>::alloc(c, n * sizeof(T)));
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  buffer(buffer&& o) noexcept { swap(o); }
  buffer& operator=(buffer&& o) noexcept {
    buffer t(std::move(o));
    swap(t);
    return *this;
  }
  ~buffer() {
    if (p_ && owned_) backend<Tag>::release(p_);
  }
  void swap(buffer& o) noexcept {
    std::swap(p_, o.p_), std::swap(n_, o.n_), std::swap(owned_, o.owned_), std::swap(host_, o.host_);
  }
  //! CPU, float: adopts a host vector without copying (the f32 CPU engine reads the loader's arrays in place).
  static buffer adopt(std::vector<T>&& v) {
    buffer b;
    b.host_ = std::make_shared<std::vector<T>>(std::move(v));
    b.p_ = b.host_->data();
    b.n_ = b.host_->size();
    b.owned_ = false;
    return b;
  }
  T* data() const { return p_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }
  bool empty() const { return n_ == 0; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
  bool owned_ = true;
  std::shared_ptr<std::vector<T>> host_;
};

//! Converts host floats to T and copies them into a new device buffer (CPU f32: adopts the vector instead).
template <class Tag, class T>
buffer<Tag, T> upload(typename backend<Tag>::context& c, std::vector<float>&& v) {
  if constexpr (!backend<Tag>::is_cuda && std::is_same_v<T, float>) {
    return buffer<Tag, T>::adopt(std::move(v));
  } else {
    buffer<Tag, T> b(c, v.size());
    if (!v.empty()) {
      std::vector<T> t(v.size());
      frugal::detail::parallel_for(frugal::cpu, static_cast<std::int64_t>(v.size()), 1 << 16,
                                   [&](std::int64_t s, std::int64_t e) {
                                     for (std::int64_t i = s; i < e; ++i) t[i] = frugal::from_float<T>(v[i]);
                                   });
      backend<Tag>::to_device(c, b.data(), t.data(), t.size() * sizeof(T));
      backend<Tag>::sync(c);
    }
    std::vector<float>().swap(v);
    return b;
  }
}

template <class Tag, class T>
buffer<Tag, T> upload_copy(typename backend<Tag>::context& c, const std::vector<float>& v) {
  std::vector<float> t(v);
  return upload<Tag, T>(c, std::move(t));
}

template <class Tag, class T>
std::vector<T> download(typename backend<Tag>::context& c, const T* p, std::size_t n) {
  std::vector<T> h(n);
  backend<Tag>::to_host(c, h.data(), p, n * sizeof(T));
  backend<Tag>::sync(c);
  return h;
}

}  // namespace gpt2
