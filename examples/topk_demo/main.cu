// topk_demo_cuda: the same batch sparsified on the CPU and, when a GPU is present, with the CUDA kernel; checks
// that both keep the same entries.
#include <cuda_runtime.h>

#include "demo.hpp"

int main() {
  const auto x = demo::make_batch();
  std::vector<std::int32_t> idx(demo::rows * demo::k), gidx(idx.size());
  std::vector<float> val(idx.size()), gval(idx.size());
  demo::run_cpu(x, idx, val);

  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("[cuda] no GPU on this machine: skipped\n");
    return 0;
  }
  float *dx, *dv;
  std::int32_t* di;
  cudaMalloc(&dx, x.size() * sizeof(float));
  cudaMalloc(&dv, val.size() * sizeof(float));
  cudaMalloc(&di, idx.size() * sizeof(std::int32_t));
  cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice);
  frugal::matrix_view<const float> xv(dx, demo::rows, demo::n);
  frugal::matrix_view<std::int32_t> iv(di, demo::rows, demo::k);
  frugal::matrix_view<float> vv(dv, demo::rows, demo::k);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  frugal::topk(frugal::cuda, xv, demo::k, iv, vv);  // warm-up
  const int reps = 200;
  cudaEventRecord(a);
  for (int i = 0; i < reps; ++i) frugal::topk(frugal::cuda, xv, demo::k, iv, vv);
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaMemcpy(gidx.data(), di, gidx.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost);
  cudaMemcpy(gval.data(), dv, gval.size() * sizeof(float), cudaMemcpyDeviceToHost);
  demo::print_result("cuda", x, gidx, gval, 1e3 * ms / reps);
  std::printf("  same entries as the CPU: %s\n", gidx == idx && gval == val ? "yes" : "NO");
  cudaFree(dx);
  cudaFree(dv);
  cudaFree(di);
  return gidx == idx ? 0 : 1;
}
