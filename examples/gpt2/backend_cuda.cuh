// examples/gpt2/backend_cuda.cuh — backend<cuda_t>: device memory, copies on the context's stream, the prefill GEMM
// (cuBLAS, f32 accumulation), CUDA Graph capture/replay of a decode step, and a copy-bandwidth probe. nvcc only.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <frugal/core/detail/cuda_common.cuh>

#include <chrono>
#include <string>
#include <type_traits>

#include "backend.hpp"

namespace gpt2 {

namespace detail {
inline void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cublas", what, " failed with status ", static_cast<int>(s));
}

template <class T>
__global__ void bias_rows_kernel(T* __restrict__ y, const T* __restrict__ bias, std::int64_t rows, int N, bool acc) {
  const std::int64_t n = rows * N;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const float b = frugal::detail::load_f(bias[i % N]);
    y[i] = frugal::detail::store_f<T>(acc ? frugal::detail::load_f(y[i]) + b : b);
  }
}
}  // namespace detail

template <>
struct backend<frugal::cuda_t> {
  using tag_t = frugal::cuda_t;
  static constexpr bool is_cuda = true;
  static constexpr const char* name = "cuda";
  using graph_t = cudaGraphExec_t;

  struct context {
    frugal::cuda_t tag;
    cublasHandle_t blas = nullptr;
    context() {
      cudaStream_t s;
      FRUGAL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "gpt2");
      tag = frugal::cuda.on(s);
      detail::cublas_check(cublasCreate(&blas), "cublasCreate");
      detail::cublas_check(cublasSetStream(blas, s), "cublasSetStream");
      detail::cublas_check(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    }
    context(const context&) = delete;
    context& operator=(const context&) = delete;
    ~context() {
      cublasDestroy(blas);
      cudaStreamDestroy(tag.stream);
    }
  };

  static void* alloc(context&, std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    FRUGAL_CUDA_CHECK(cudaMalloc(&p, bytes), "gpt2 alloc");
    return p;
  }
  static void release(void* p) { cudaFree(p); }
  //! Host -> device, complete on return (the host buffer may be reused at once).
  static void to_device(context& c, void* dst, const void* src, std::size_t bytes) {
    if (!bytes) return;
    FRUGAL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c.tag.stream), "gpt2 upload");
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(c.tag.stream), "gpt2 upload");
  }
  //! Host (pinned, kept alive by the caller until the stream passes) -> device, asynchronous.
  static void to_device_async(context& c, void* dst, const void* src, std::size_t bytes) {
    if (bytes) FRUGAL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c.tag.stream), "gpt2 upload");
  }
  static void to_host(context& c, void* dst, const void* src, std::size_t bytes) {
    if (!bytes) return;
    FRUGAL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c.tag.stream), "gpt2 download");
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(c.tag.stream), "gpt2 download");
  }
  static void copy(context& c, void* dst, const void* src, std::size_t bytes) {
    if (bytes) FRUGAL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c.tag.stream), "gpt2 copy");
  }
  static void zero(context& c, void* p, std::size_t bytes) {
    if (bytes) FRUGAL_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, c.tag.stream), "gpt2 zero");
  }
  static void sync(context& c) { FRUGAL_CUDA_CHECK(cudaStreamSynchronize(c.tag.stream), "gpt2 sync"); }
  static void* alloc_pinned(std::size_t bytes) {
    void* p = nullptr;
    if (bytes) FRUGAL_CUDA_CHECK(cudaMallocHost(&p, bytes), "gpt2 pinned alloc");
    return p;
  }
  static void release_pinned(void* p) {
    if (p) cudaFreeHost(p);
  }

  //! y[rows, N] (+)= x[rows, K] · w[K, N] + bias with cuBLAS (row-major through the transposed problem), f32 compute.
  template <class T>
  static void gemm(context& c, frugal::matrix_view<const T> x, frugal::matrix_view<const T> w, const T* bias,
                   frugal::matrix_view<T> y, bool accumulate) {
    const int rows = static_cast<int>(x.rows), K = static_cast<int>(x.cols), N = static_cast<int>(w.cols);
    if (rows == 0) return;
    cudaDataType_t dt = std::is_same_v<T, float> ? CUDA_R_32F : std::is_same_v<T, frugal::half> ? CUDA_R_16F : CUDA_R_16BF;
    const float one = 1.f;
    float beta = accumulate ? 1.f : 0.f;
    if (bias) {  // y = bias (or y += bias), then y += x·w
      const std::int64_t n = std::int64_t(rows) * N;
      const int blocks = static_cast<int>(std::min<std::int64_t>((n + 255) / 256, 8192));
      detail::bias_rows_kernel<<<blocks, 256, 0, c.tag.stream>>>(frugal::detail::as_cuda(y.data),
                                                                  frugal::detail::as_cuda(bias), rows, N, accumulate);
      frugal::detail::check_launch("gpt2::gemm", "bias_rows_kernel");
      beta = 1.f;
    }
    // Column-major view: Y^T[N, rows] = W^T[N, K] · X^T[K, rows]; W row-major [K, N] is column-major [N, K], ld = w.ld.
    detail::cublas_check(cublasGemmEx(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, N, rows, K, &one, w.data, dt, static_cast<int>(w.ld),
                                      x.data, dt, static_cast<int>(x.ld), &beta, y.data, dt, static_cast<int>(y.ld),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "cublasGemmEx");
  }

  //! Offline weight rotation in f32 with cuBLAS (LaRoSA folding): left ? W [rows, cols] <- Qᵀ·W : W <- W·Q.
  static void rotate(context& c, bool left, float* w, std::int64_t rows, std::int64_t cols, const float* q) {
    const std::int64_t n = left ? rows : cols;
    const std::size_t wb = std::size_t(rows) * cols * sizeof(float), qb = std::size_t(n) * n * sizeof(float);
    float *dw = static_cast<float*>(alloc(c, wb)), *dq = static_cast<float*>(alloc(c, qb)),
          *dy = static_cast<float*>(alloc(c, wb));
    to_device(c, dw, w, wb);
    to_device(c, dq, q, qb);
    const float one = 1.f, zero = 0.f;
    // Row-major Y = A·B is column-major Yᵀ = Bᵀ·Aᵀ.
    if (left)  // Y [rows, cols] = Qᵀ W: column-major Yᵀ = Wᵀ · Q  (Wᵀ: cols x rows, ld cols; Q col-major = Qᵀ row-major)
      detail::cublas_check(cublasSgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(cols), static_cast<int>(rows),
                                       static_cast<int>(rows), &one, dw, static_cast<int>(cols), dq, static_cast<int>(n),
                                       &zero, dy, static_cast<int>(cols)),
                           "cublasSgemm");
    else  // Y = W Q: column-major Yᵀ = Qᵀ · Wᵀ
      detail::cublas_check(cublasSgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(cols), static_cast<int>(rows),
                                       static_cast<int>(cols), &one, dq, static_cast<int>(n), dw, static_cast<int>(cols),
                                       &zero, dy, static_cast<int>(cols)),
                           "cublasSgemm");
    to_host(c, w, dy, wb);
    release(dw), release(dq), release(dy);
  }

  //! Captures fn's launches on the context stream into an instantiated graph.
  template <class F>
  static graph_t capture(context& c, F&& fn) {
    cudaGraph_t g;
    FRUGAL_CUDA_CHECK(cudaStreamBeginCapture(c.tag.stream, cudaStreamCaptureModeThreadLocal), "gpt2 graph capture");
    try {
      fn();
    } catch (...) {
      cudaStreamEndCapture(c.tag.stream, &g);
      throw;
    }
    FRUGAL_CUDA_CHECK(cudaStreamEndCapture(c.tag.stream, &g), "gpt2 graph capture");
    graph_t e;
    FRUGAL_CUDA_CHECK(cudaGraphInstantiate(&e, g, 0), "gpt2 graph instantiate");
    cudaGraphDestroy(g);
    return e;
  }
  static void launch(context& c, graph_t g) { FRUGAL_CUDA_CHECK(cudaGraphLaunch(g, c.tag.stream), "gpt2 graph launch"); }
  static void destroy(graph_t g) {
    if (g) cudaGraphExecDestroy(g);
  }

  static std::string device_name(context&) {
    int dev = 0;
    cudaDeviceProp prop{};
    FRUGAL_CUDA_CHECK(cudaGetDevice(&dev), "gpt2");
    FRUGAL_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev), "gpt2");
    return prop.name;
  }

  //! Per-op timer for --profile: a CUDA event after each op (no graph), durations between consecutive events.
  struct profiler {
    std::vector<cudaEvent_t> ev;
    std::vector<const char*> names;
    std::size_t used = 0;
    void record(context& c) {
      if (used == ev.size()) {
        cudaEvent_t e;
        FRUGAL_CUDA_CHECK(cudaEventCreate(&e), "gpt2 profiler");
        ev.push_back(e);
      }
      FRUGAL_CUDA_CHECK(cudaEventRecord(ev[used++], c.tag.stream), "gpt2 profiler");
    }
    void begin(context& c) {
      used = 0;
      names.clear();
      record(c);
    }
    void mark(context& c, const char* name) {
      names.push_back(name);
      record(c);
    }
    std::vector<std::pair<const char*, double>> end(context& c) {
      sync(c);
      std::vector<std::pair<const char*, double>> r;
      for (std::size_t i = 1; i < used; ++i) {
        float ms = 0;
        FRUGAL_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[i - 1], ev[i]), "gpt2 profiler");
        r.push_back({names[i - 1], ms * 1e-3});
      }
      return r;
    }
    ~profiler() {
      for (auto e : ev) cudaEventDestroy(e);
    }
  };

  static double now(context& c) {
    sync(c);
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }

  //! Read+write bandwidth of a device-to-device cudaMemcpy of `bytes` (best of 5), bytes/s.
  static double copy_bandwidth(context& c, std::size_t bytes = std::size_t(1) << 30) {
    void *a = alloc(c, bytes), *b = alloc(c, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    double best = 0;
    for (int it = 0; it < 6; ++it) {
      cudaEventRecord(e0, c.tag.stream);
      FRUGAL_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c.tag.stream), "copy_bandwidth");
      cudaEventRecord(e1, c.tag.stream);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      if (it > 0) best = std::max(best, 2.0 * double(bytes) / (ms * 1e-3));
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    release(a), release(b);
    return best;
  }
};

}  // namespace gpt2
