// frugal/vocab/detail/patch_embeddings_cuda.cuh — CUDA patch embedding init (nvcc only; included by
// patch_embeddings.hpp). One block per patch; threads stride over the d columns; sums in float; one store.
#pragma once

#include <cstdint>

#include "../../core/detail/cuda_common.cuh"

FRUGAL_NAMESPACE_BEGIN
namespace detail {

template <class C>
__global__ void init_patch_embeddings_kernel(C* __restrict__ emb, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                             const std::int32_t* __restrict__ targets,
                                             const std::int32_t* __restrict__ pieces, int max_n,
                                             patch_embedding_role role, float alpha) {
  const std::int64_t q = blockIdx.x;
  const std::int32_t* pc = pieces + q * max_n;
  const std::int32_t target = targets[q];
  if (target < 0 || target >= rows) return;
  int k = 0;
  while (k < max_n && pc[k] >= 0) ++k;
  for (int i = 0; i < k; ++i)
    if (pc[i] >= rows || pc[i] == target) return;
  float w[16];
  for (int i = 0; i < k; ++i) w[i] = patch_weight(role, alpha, i, k);
  C* dst = emb + static_cast<std::int64_t>(target) * ld;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float acc = 0.f;
    for (int i = 0; i < k; ++i) acc += w[i] * load_f(emb[static_cast<std::int64_t>(pc[i]) * ld + c]);
    dst[c] = store_f<C>(acc);
  }
}

template <class T>
void init_patch_embeddings_cuda(cuda_t tag, matrix_view<T> emb, const std::int32_t* targets,
                                const std::int32_t* pieces, std::int64_t p, int max_n, patch_embedding_role role,
                                float alpha) {
  if (p == 0 || emb.cols == 0) return;
  FRUGAL_CHECK(p < (std::int64_t{1} << 31), "init_patch_embeddings", "too many patches (", p, ")");
  const int threads = emb.cols >= 256 ? 256 : 128;
  init_patch_embeddings_kernel<<<static_cast<unsigned>(p), threads, 0, tag.stream>>>(
      as_cuda(emb.data), emb.rows, emb.cols, emb.ld, targets, pieces, max_n, role, alpha);
  check_launch("init_patch_embeddings", "init_patch_embeddings_kernel");
}

}  // namespace detail
FRUGAL_NAMESPACE_END
