// The cost of one kernel boundary in a decode step's chain (CUDA Graph of back-to-back kernels), without any of
// frugal's work: what a batch-1 decode step pays per kernel before a GEMV or an attention does anything useful.
//
// Names: chain/cuda/<variant>/k<kernels>_b<blocks>. One CUDA Graph of `kernels` launches of `blocks` x 256 threads
// (8; 128 ≈ one block per SM of an H100, as the decode GEMVs launch; 264 = two), timed as one replay (CUDA events,
// a 40 us spin before the start event so the replay is queued, 3 x 50); counter us_per_kernel = time / kernels.
//   empty          the kernel returns at once; plain launches (stream order: each starts after the previous ends)
//   empty_pdl      griddepcontrol.launch_dependents, then griddepcontrol.wait, nothing else; launched with
//                  programmatic dependent launch (the attribute frugal's decode kernels use)
//   rw_pdl         as empty_pdl, then what every decode kernel must do after its wait at least: every block reads the
//                  previous kernel's output x (768 floats, from L2), sums it (block reduction) and writes its share
//                  of the next x (x[i] + sum · 1e-9, so the chain is a true data dependence)
//   rw_cluster_pdl as rw_pdl in clusters of 8 blocks whose values go all-to-all through distributed shared memory
//                  the way frugal's GEMVs reduce their K splits (gemv_cluster_reduce: cluster barrier phase 0 arrived
//                  at start and waited on before the stores, the stores, cluster.sync, the local sums)
//   rw_mbar_pdl    the same exchange signalled one way by remote mbarrier arrives (below) instead of cluster.sync
#include <benchmark/benchmark.h>
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <string>

#include <frugal/core/detail/cuda_common.cuh>

#include "common/bench_cuda.cuh"

namespace {

using frugal::detail::grid_dependency_wait;
using frugal::detail::trigger_dependents;
using frugal_bench::check;

constexpr int threads = 256;
constexpr int width = 768;  // GPT-2 124M's residual stream

__global__ void empty_kernel(const float*, float*) {}

//! The sum of x[0..width) over the block (every thread gets it): strided loads, shuffles, the warps via `red`.
__device__ float block_sum_of(const float* x, float* red) {
  float s = 0.f;
  for (int i = threadIdx.x; i < width; i += threads) s += x[i];
  for (int off = 16; off >= 1; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = s;
  __syncthreads();
  float t = 0.f;
  for (int w = 0; w < threads / 32; ++w) t += red[w];
  return t;
}

__global__ void empty_pdl_kernel(const float*, float*) {
  trigger_dependents();
  grid_dependency_wait();
}

template <bool Cluster>
__global__ void rw_pdl_kernel(const float* x, float* y) {
  if constexpr (Cluster) asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");  // as gemv's blocks
  trigger_dependents();
  grid_dependency_wait();
  __shared__ float red[threads / 32];
  __shared__ float inbox[8];
  float t = block_sum_of(x, red);
  if constexpr (Cluster) {  // gemv_cluster_reduce's pattern: wait for phase 0, all-to-all DSMEM stores, cluster.sync
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    const unsigned rank = cl.block_rank(), n = cl.num_blocks();
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    if (threadIdx.x < n) *cl.map_shared_rank(&inbox[rank], threadIdx.x) = t;
    cl.sync();
    t = 0.f;
    for (unsigned r = 0; r < n; ++r) t += inbox[r];
  }
  // block b writes x[i] for i = b, b + blocks, ... (each element once per kernel)
  for (int i = blockIdx.x + threadIdx.x * gridDim.x; i < width; i += threads * gridDim.x) y[i] = x[i] + t * 1e-9f;
}

//! rw_mbar_pdl: the all-to-all exchange of rw_cluster_pdl signalled one way: remote stores, then a remote mbarrier
//! arrive (release, cluster scope) on the receiver; each block waits only for its own barrier, no cluster.sync.
//! The cluster barrier that makes sure every block has started (and has initialised its mbarrier) is arrived at
//! kernel start and waited on just before the first remote access.
__global__ void rw_mbar_pdl_kernel(const float* x, float* y) {
  namespace cg = cooperative_groups;
  __shared__ __align__(8) unsigned long long bar;
  __shared__ float inbox[8];
  __shared__ float red[threads / 32];
  cg::cluster_group cl = cg::this_cluster();
  const unsigned rank = cl.block_rank(), n = cl.num_blocks();
  const auto bar_addr = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar_addr), "r"(n - 1) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
  trigger_dependents();
  grid_dependency_wait();
  float t = block_sum_of(x, red);
  asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");  // every block started, barriers initialised
  if (threadIdx.x < n) {
    const unsigned to = threadIdx.x;
    if (to != rank) {
      *cl.map_shared_rank(&inbox[rank], to) = t;
      unsigned remote;
      asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(bar_addr), "r"(to));
      asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
    } else {
      inbox[rank] = t;
    }
  }
  unsigned done = 0;
  while (!done)
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(bar_addr)
        : "memory");
  __syncthreads();  // inbox[rank] (local) visible
  float u = 0.f;
  for (unsigned r = 0; r < n; ++r) u += inbox[r];
  for (int i = blockIdx.x + threadIdx.x * gridDim.x; i < width; i += threads * gridDim.x) y[i] = x[i] + u * 1e-9f;
}

enum class variant { empty, empty_pdl, rw_pdl, rw_cluster_pdl, rw_mbar_pdl };

void run(benchmark::State& state, variant v, int kernels, int blocks) {
  float* buf = nullptr;
  check(cudaMalloc(&buf, 2 * width * sizeof(float)), "malloc");
  check(cudaMemset(buf, 0, 2 * width * sizeof(float)), "memset");
  cudaStream_t st;
  check(cudaStreamCreate(&st), "stream");
  cudaLaunchAttribute attr[2];
  unsigned na = 0;
  if (v == variant::rw_cluster_pdl || v == variant::rw_mbar_pdl) {
    attr[na].id = cudaLaunchAttributeClusterDimension;
    attr[na].val.clusterDim.x = 8, attr[na].val.clusterDim.y = 1, attr[na].val.clusterDim.z = 1;
    ++na;
  }
  if (v != variant::empty) {
    attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[na].val.programmaticStreamSerializationAllowed = 1;
    ++na;
  }
  void (*kernel)(const float*, float*) = v == variant::empty       ? empty_kernel
                                         : v == variant::empty_pdl ? empty_pdl_kernel
                                         : v == variant::rw_pdl    ? rw_pdl_kernel<false>
                                         : v == variant::rw_mbar_pdl ? rw_mbar_pdl_kernel
                                                                     : rw_pdl_kernel<true>;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  check(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "capture");
  for (int k = 0; k < kernels; ++k) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(blocks));
    cfg.blockDim = dim3(threads);
    cfg.stream = st;
    cfg.attrs = na ? attr : nullptr;
    cfg.numAttrs = na;
    const float* x = buf + (k % 2) * width;
    float* y = buf + ((k + 1) % 2) * width;
    check(cudaLaunchKernelEx(&cfg, kernel, x, y), "launch");
  }
  check(cudaStreamEndCapture(st, &graph), "end capture");
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  check(cudaGraphLaunch(exec, st), "warm-up");
  check(cudaStreamSynchronize(st), "warm-up");
  for (auto _ : state) {
    frugal_bench::delay_kernel<<<1, 1, 0, st>>>(40000);
    frugal_bench::cuda_timer t(st);
    check(cudaGraphLaunch(exec, st), "graph");
    state.SetIterationTime(t.seconds());
  }
  state.counters["us_per_kernel"] =
      benchmark::Counter(1e-6 * kernels, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
  cudaFree(buf);
}

}  // namespace

int main(int argc, char** argv) {
  if (!frugal_bench::have_gpu()) {
    std::fprintf(stderr, "bench_pdl_chain: no CUDA device, nothing to measure\n");
    return 0;
  }
  const char* names[] = {"empty", "empty_pdl", "rw_pdl", "rw_cluster_pdl", "rw_mbar_pdl"};
  for (int v = 0; v < 5; ++v)
    for (int blocks : {8, 128, 264}) {
      const int kernels = 64;
      const std::string name =
          std::string("chain/cuda/") + names[v] + "/k" + std::to_string(kernels) + "_b" + std::to_string(blocks);
      benchmark::RegisterBenchmark(name.c_str(), [v, kernels, blocks](benchmark::State& s) {
        run(s, static_cast<variant>(v), kernels, blocks);
      })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond)
          ->Iterations(50)
          ->Repetitions(3)
          ->ReportAggregatesOnly(true);
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
