// CUDA-side test helpers: the GPU skip rule and a device buffer that frees itself.
#pragma once

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <vector>

#include <frugal/core/detail/cuda_common.cuh>

namespace frugal_test {

//! True when a CUDA device is usable. CI has the runtime but no driver/GPU: CUDA cases then skip at run time.
inline bool gpu_available() {
  static const bool ok = [] {
    int n = 0;
    const bool found = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
    cudaGetLastError();  // clear the sticky "no device" error
    return found;
  }();
  return ok;
}

//! Put first in a CUDA test case: returns from it (printing why) when no GPU is present.
#define FRUGAL_REQUIRE_GPU()                                  \
  do {                                                        \
    if (!::frugal_test::gpu_available()) {                    \
      MESSAGE("skipped: no CUDA device on this machine");     \
      return;                                                 \
    }                                                         \
  } while (0)

template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t n) : n_(n) {
    if (n) FRUGAL_CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)), "test");
  }
  explicit device_buffer(const std::vector<T>& h) : device_buffer(h.size()) { upload(h); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  ~device_buffer() { if (p_) cudaFree(p_); }
  T* data() const { return p_; }
  std::size_t size() const { return n_; }
  void upload(const std::vector<T>& h) {
    if (!h.empty()) FRUGAL_CUDA_CHECK(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "test");
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_) FRUGAL_CUDA_CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "test");
    return h;
  }
  void zero() { if (n_) FRUGAL_CUDA_CHECK(cudaMemset(p_, 0, n_ * sizeof(T)), "test"); }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace frugal_test
