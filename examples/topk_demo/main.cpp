// topk_demo: sparsify a batch of activations with per-row top-k on the CPU and show what was kept.
// (topk_demo_cuda does the same on the GPU as well.)
#include "demo.hpp"

int main() {
  const auto x = demo::make_batch();
  std::vector<std::int32_t> idx(demo::rows * demo::k);
  std::vector<float> val(idx.size());
  demo::run_cpu(x, idx, val);
  std::printf("[cuda] not built into this program: run topk_demo_cuda (built when CUDA is enabled)\n");
  return 0;
}
