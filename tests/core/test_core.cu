// Core on CUDA: the host half/bfloat16 conversions agree bit for bit with the CUDA intrinsics.
#include <frugal/frugal.hpp>

#include "common/cuda_test_util.cuh"
#include "common/test_util.hpp"

namespace {
__global__ void convert_kernel(const float* in, std::uint16_t* h, std::uint16_t* b, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    h[i] = __half_as_ushort(__float2half_rn(in[i]));
    b[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
  }
}
}  // namespace

TEST_CASE("cuda: host conversions equal __float2half_rn / __float2bfloat16_rn") {
  FRUGAL_REQUIRE_GPU();
  const int n = 1 << 20;
  std::vector<float> in(n);
  std::mt19937 rng(3);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (auto& f : in) {
    std::uint32_t u = bits(rng);
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) f = 0.f;  // NaN payloads legitimately differ
  }
  frugal_test::device_buffer<float> d_in(in);
  frugal_test::device_buffer<std::uint16_t> d_h(n), d_b(n);
  convert_kernel<<<n / 256, 256>>>(d_in.data(), d_h.data(), d_b.data(), n);
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
  const auto h = d_h.download(), b = d_b.download();
  for (int i = 0; i < n; ++i) {
    REQUIRE(frugal::half(in[i]).bits == h[i]);
    REQUIRE(frugal::bfloat16(in[i]).bits == b[i]);
  }
}

TEST_CASE("cuda: errors from the runtime name the operation (deliberate API error)") {
  FRUGAL_REQUIRE_GPU();
  FRUGAL_CHECK_THROWS_WITH(FRUGAL_CUDA_CHECK(cudaMemcpy(nullptr, reinterpret_cast<void*>(16), 4, cudaMemcpyDeviceToHost),
                                             "copy_test"),
                           "frugal::copy_test: cudaMemcpy");
}
