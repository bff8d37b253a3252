// Sparse GEMV on CUDA: frugal's dense / input-sparse / fused forms against cuBLAS dense GEMV, in the same run.
//
// Names: gemv/cuda/<dtype>/<N>x<K>/<variant>[_b<b>]   (b = 1 unless suffixed)
//   cublas        cublasGemmEx, W channel-major [K, N] read as column-major N x K (CUBLAS_OP_N) — the layout frugal
//                 uses; f32 accumulation (CUBLAS_COMPUTE_32F)
//   cublas_t      cublasGemmEx on a row-major [N, K] copy (nn.Linear layout, CUBLAS_OP_T); the baseline used for
//                 speedups is the faster of the two
//   dense         frugal::gemv
//   list_s<S>     frugal::sparse_gemv, per-row index lists (ascending) of the (1 - S%) largest |x|
//   thresh_s<S>   frugal::sparse_gemv_threshold, per-row thresholds (device) at the S% quantile of |x|
//   topk_s<S>     frugal::sparse_gemv_topk with k = (1 - S%) K: b = 1 and K <= 8192 select inside the GEMV kernel
//                 (one launch), otherwise topk_select + threshold GEMV (two kernels, both timed)
//   topk2k_s<S>   the same forced through topk_select + threshold GEMV (A/B of the in-kernel select)
//   shared_s<S>   (batches) thresh with the same kept channels in every row (correlated masks)
//   dense_sp<P>_seg<B> / thresh_s50_sp<P>_seg<B>   tuning: gemv_options::splits = P, segment_bytes = B
//   ..._ln / _rms / _gelu  with the fused layernorm / rmsnorm prologue and / or the tanh-GELU epilogue
//   dense..._ahead  the weights-ahead kernel (gemv_options::weights_ahead = 1; single calls have no previous kernel
//                 to overlap, so this measures its tiling and loads alone)
// Shapes: the issue's LLaMA-sized and GPT-2 XL ones, and GPT-2 124M's decode GEMVs (2304x768 qkv, 768x768 attn
// proj, 3072x768 fc, 768x3072 mlp proj, 50257x768 LM head; N not a multiple of 8 is padded: ldw = ceil8(N)).
// x ~ N(0, 1) per row (independent rows), weights ~ N(0, 1) / sqrt(K), no bias.
// Timing: CUDA events around one call (UseManualTime), 3 repetitions x 200 iterations, aggregates reported. Before
// every call: L2 evicted by reading a 2 x L2 buffer (clean lines: no write-back is charged to the call), then the
// activations (x, thresholds, lists: a few KB) read back into L2 as in decode, then a 40 us spin kernel so the host
// has enqueued the call before the start event fires (GPU time only, host launch overhead hidden as under CUDA
// Graphs; the same for cuBLAS). Weights therefore always come from HBM. GB/s counts the bytes the call must touch:
// the kept weight rows (union over the batch), x (twice for topk: select + GEMV), index lists, y written.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>

#include <frugal/gemv/gemv.hpp>
#include <frugal/sparsify/topk.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/bench_cuda.cuh"

namespace {

using frugal::matrix_view;
using frugal_bench::check;

void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuBLAS error in %s: %d\n", what, static_cast<int>(s));
    std::exit(1);
  }
}

template <class T>
cudaDataType_t cuda_dtype() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  if constexpr (std::is_same_v<T, frugal::half>) return CUDA_R_16F;
  return CUDA_R_16BF;
}

template <class C>
__global__ void fill_kernel(C* p, std::int64_t n, std::uint64_t seed, float scale) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  std::uint64_t z = (static_cast<std::uint64_t>(i) + seed) * 0x9E3779B97F4A7C15ull;  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const float u = (static_cast<float>(z >> 40) + 0.5f) * (1.f / 16777216.f) * 2.f - 1.f;  // uniform (-1, 1)
  p[i] = frugal::detail::store_f<C>(u * scale * 1.7320508f);                              // variance scale^2
}

//! Evicts L2 by reading (not writing) a buffer twice its size: the lines left behind are clean, so the measured
//! call does not pay for write-backs of dirty flush data (a memset-based flush leaves ~50 MB of dirty lines).
__global__ void read_flush_kernel(const uint4* p, std::int64_t n, unsigned* sink) {
  unsigned acc = 0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcg(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *sink = acc;  // practically never; keeps the loads alive
}

//! Brings the activations (x, thresholds, index lists) back into L2, as in decode where the previous kernel wrote them.
__global__ void touch_kernel(const unsigned char* p, std::int64_t n, unsigned* sink) {
  unsigned acc = 0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    acc += __ldcg(p + i);
  if (acc == 0xffffffffu) *sink = acc;
}

//! Keeps the GPU busy for `ns` so that the host enqueues the timed call before the GPU reaches it: the events then
//! measure GPU execution only (host launch overhead hidden, as under CUDA Graphs), for frugal and cuBLAS alike.

class flusher {
 public:
  flusher() {
    int dev = 0, l2 = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev), "L2 size");
    n_ = static_cast<std::int64_t>(l2) * 2 / 16;
    check(cudaMalloc(&buf_, static_cast<std::size_t>(n_) * 16), "malloc flush");
    check(cudaMemset(buf_, 1, static_cast<std::size_t>(n_) * 16), "init flush");
    check(cudaMalloc(&sink_, sizeof(unsigned)), "malloc sink");
  }
  ~flusher() {
    cudaFree(buf_);
    cudaFree(sink_);
  }
  void flush() { read_flush_kernel<<<1056, 256>>>(static_cast<const uint4*>(buf_), n_, sink_); }
  void touch(const void* p, std::size_t bytes) {
    if (bytes) touch_kernel<<<64, 256>>>(static_cast<const unsigned char*>(p), static_cast<std::int64_t>(bytes), sink_);
  }

 private:
  void* buf_ = nullptr;
  unsigned* sink_ = nullptr;
  std::int64_t n_ = 0;
};

template <class T>
__global__ void transpose_kernel(const T* in, std::int64_t rows, std::int64_t cols, T* out) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const std::int64_t r = i / cols, c = i % cols;
  out[c * rows + r] = in[i];
}

template <class T>
struct dev {
  T* p = nullptr;
  std::size_t n = 0;
  explicit dev(std::size_t count) : n(count) {
    check(cudaMalloc(&p, std::max<std::size_t>(1, n) * sizeof(T)), "malloc");
  }
  ~dev() { cudaFree(p); }
  dev(const dev&) = delete;
  dev& operator=(const dev&) = delete;
  void upload(const std::vector<T>& h) {
    check(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
};

//! Weights of one shape/dtype, kept while consecutive benchmarks use them.
struct weights_cache {
  std::string key;
  std::shared_ptr<void> w, wt;  // channel-major [K, N], row-major [N, K]
};
weights_cache g_cache;

inline std::int64_t ldw_of(std::int64_t N) {
  return (N + 7) / 8 * 8;
}

template <class T>
std::pair<const T*, const T*> get_weights(std::int64_t N, std::int64_t K) {
  const std::string key = std::string(frugal::dtype_traits<T>::name) + std::to_string(N) + "x" + std::to_string(K);
  if (g_cache.key != key) {
    g_cache = {};
    const std::int64_t ld = ldw_of(N);
    auto w = std::make_shared<dev<T>>(static_cast<std::size_t>(ld * K));
    auto wt = std::make_shared<dev<T>>(static_cast<std::size_t>(ld * K));
    const std::int64_t n = ld * K;
    fill_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(frugal::detail::as_cuda(w->p), n, 1234,
                                                                 1.f / std::sqrt(float(K)));
    transpose_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256>>>(w->p, K, ld, wt->p);
    check(cudaDeviceSynchronize(), "init weights");
    g_cache = {key, w, wt};
  }
  return {static_cast<dev<T>*>(g_cache.w.get())->p, static_cast<dev<T>*>(g_cache.wt.get())->p};
}

enum class variant { cublas, cublas_t, dense, list, thresh, topk, shared, topk2k };

struct config {
  variant v;
  std::int64_t N, K, b;
  int s_pct;       // sparsity in percent
  int splits;      // 0 = auto
  int seg = 0;     // segment bytes, 0 = auto
  int fuse = 0;    // 1: layernorm prologue, 2: rmsnorm prologue, +4: gelu epilogue
  int ahead = -1;  // gemv_options::weights_ahead
};

template <class T>
void run(benchmark::State& state, config cfg) {
  const std::int64_t N = cfg.N, K = cfg.K, b = cfg.b;
  auto [w, wt] = get_weights<T>(N, K);
  const double s = cfg.s_pct / 100.0;
  const std::int64_t keep = std::max<std::int64_t>(1, std::llround((1.0 - s) * static_cast<double>(K)));

  // Host x, per-row thresholds and lists.
  std::mt19937_64 rng(77);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<T> hx(static_cast<std::size_t>(b * K));
  for (std::int64_t r = 0; r < b; ++r)
    for (std::int64_t k = 0; k < K; ++k) {
      const float v = cfg.v == variant::shared && r > 0 ? frugal::to_float(hx[k]) * (1.f + 0.01f * r) : nd(rng);
      hx[r * K + k] = frugal::from_float<T>(v);
    }
  std::vector<float> thr(static_cast<std::size_t>(b));
  std::vector<std::int32_t> idx(static_cast<std::size_t>(b * K)), nnz(static_cast<std::size_t>(b));
  std::vector<T> val(static_cast<std::size_t>(b * K));
  std::vector<char> uni(static_cast<std::size_t>(K), 0);
  for (std::int64_t r = 0; r < b; ++r) {
    std::vector<float> a(static_cast<std::size_t>(K));
    for (std::int64_t k = 0; k < K; ++k) a[k] = std::fabs(frugal::to_float(hx[r * K + k]));
    std::vector<float> sorted = a;
    std::nth_element(sorted.begin(), sorted.begin() + (K - keep), sorted.end());
    thr[r] = cfg.s_pct == 0 ? 0.f : sorted[K - keep];
    std::int32_t n = 0;
    for (std::int64_t k = 0; k < K; ++k)
      if (a[k] >= thr[r]) {
        idx[r * K + n] = static_cast<std::int32_t>(k);
        val[r * K + n] = hx[r * K + k];
        uni[k] = 1;
        ++n;
      }
    nnz[r] = n;
  }
  const auto kept_union = static_cast<double>(std::count(uni.begin(), uni.end(), 1));
  std::int64_t total_nnz = 0;
  for (auto n : nnz) total_nnz += n;

  dev<T> dx(hx.size()), dy(static_cast<std::size_t>(b * N)), dval(val.size());
  dev<std::int32_t> didx(idx.size()), dnnz(nnz.size());
  dev<float> dthr(thr.size());
  dx.upload(hx);
  dval.upload(val);
  didx.upload(idx);
  dnnz.upload(nnz);
  dthr.upload(thr);
  const std::size_t wsb = cfg.v == variant::topk2k
                              ? frugal::detail::gemv_cuda_workspace_bytes<T>(b, K, N, static_cast<int>(keep), true)
                              : frugal::gemv_workspace_bytes<T>(frugal::cuda, b, K, N, static_cast<int>(keep));
  dev<std::byte> ws(wsb);

  cublasHandle_t h = nullptr;
  if (cfg.v == variant::cublas || cfg.v == variant::cublas_t) {
    cublas_check(cublasCreate(&h), "create");
    cublas_check(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "math mode");
  }
  const float one = 1.f, zero = 0.f;
  frugal::gemv_options opt;
  opt.splits = cfg.splits;
  opt.segment_bytes = cfg.seg;
  opt.norm = (cfg.fuse & 3) == 1   ? frugal::gemv_norm::layernorm
             : (cfg.fuse & 3) == 2 ? frugal::gemv_norm::rmsnorm
                                   : frugal::gemv_norm::none;
  opt.act = cfg.fuse & 4 ? frugal::gemv_act::gelu_tanh : frugal::gemv_act::none;
  opt.weights_ahead = cfg.ahead;
  const std::int64_t ldw = ldw_of(N);
  const matrix_view<const T> xv(dx.p, b, K), wv(w, K, N, ldw);
  const matrix_view<T> yv(dy.p, b, N);
  auto call = [&] {
    switch (cfg.v) {
      case variant::cublas:
        cublas_check(
            cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(b), static_cast<int>(K),
                         &one, w, cuda_dtype<T>(), static_cast<int>(ldw), dx.p, cuda_dtype<T>(), static_cast<int>(K),
                         &zero, dy.p, cuda_dtype<T>(), static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "gemm");
        break;
      case variant::cublas_t:
        cublas_check(
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(b), static_cast<int>(K),
                         &one, wt, cuda_dtype<T>(), static_cast<int>(K), dx.p, cuda_dtype<T>(), static_cast<int>(K),
                         &zero, dy.p, cuda_dtype<T>(), static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "gemm_t");
        break;
      case variant::dense:
        frugal::gemv(frugal::cuda, xv, wv, nullptr, yv, opt);
        break;
      case variant::list:
        frugal::sparse_gemv(frugal::cuda, frugal::sparse_rows<T>{didx.p, dval.p, dnnz.p, b, K, K}, wv, nullptr, yv,
                            opt);
        break;
      case variant::thresh:
      case variant::shared:
        frugal::sparse_gemv_threshold(frugal::cuda, xv, frugal::threshold{dthr.p, 0.f}, wv, nullptr, yv, opt);
        break;
      case variant::topk:
        frugal::sparse_gemv_topk(frugal::cuda, xv, static_cast<int>(keep), wv, nullptr, yv, opt,
                                 frugal::workspace{ws.p, wsb});
        break;
      case variant::topk2k:
        frugal::detail::gemv_topk_cuda<T>(frugal::cuda, xv, static_cast<int>(keep), wv, nullptr, yv, opt,
                                          frugal::workspace{ws.p, wsb}, true);
        break;
    }
  };
  flusher fl;
  for (int i = 0; i < 3; ++i) call();  // warm-up
  check(cudaDeviceSynchronize(), "warm-up");
  for (auto _ : state) {
    fl.flush();
    fl.touch(dx.p, hx.size() * sizeof(T));
    if (cfg.v == variant::list) {
      fl.touch(didx.p, idx.size() * 4);
      fl.touch(dval.p, val.size() * sizeof(T));
      fl.touch(dnnz.p, nnz.size() * 4);
    }
    if (cfg.v == variant::thresh || cfg.v == variant::shared) fl.touch(dthr.p, thr.size() * 4);
    frugal_bench::delay_kernel<<<1, 1>>>(40000);
    frugal_bench::cuda_timer t;
    call();
    state.SetIterationTime(t.seconds());
  }
  check(cudaGetLastError(), "timing loop");
  const double es = sizeof(T);
  const bool dense_like = cfg.v == variant::cublas || cfg.v == variant::cublas_t || cfg.v == variant::dense;
  double bytes = (dense_like ? static_cast<double>(K) : kept_union) * N * es + b * K * es + b * N * es;
  if (cfg.v == variant::list) bytes += total_nnz * (4 + es) - b * K * es;       // lists instead of x
  if (cfg.v == variant::topk || cfg.v == variant::topk2k) bytes += b * K * es;  // select reads x too
  frugal_bench::set_bytes(state, bytes);
  state.counters["kept"] = dense_like ? 1.0 : kept_union / static_cast<double>(K);
  if (h) cublasDestroy(h);
}

std::string vname(const config& c) {
  std::string n;
  switch (c.v) {
    case variant::cublas:
      n = "cublas";
      break;
    case variant::cublas_t:
      n = "cublas_t";
      break;
    case variant::dense:
      n = "dense";
      break;
    case variant::list:
      n = "list_s" + std::to_string(c.s_pct);
      break;
    case variant::thresh:
      n = "thresh_s" + std::to_string(c.s_pct);
      break;
    case variant::topk:
      n = "topk_s" + std::to_string(c.s_pct);
      break;
    case variant::shared:
      n = "shared_s" + std::to_string(c.s_pct);
      break;
    case variant::topk2k:
      n = "topk2k_s" + std::to_string(c.s_pct);
      break;
  }
  if (c.splits) n += "_sp" + std::to_string(c.splits);
  if (c.seg) n += "_seg" + std::to_string(c.seg);
  if ((c.fuse & 3) == 1) n += "_ln";
  if ((c.fuse & 3) == 2) n += "_rms";
  if (c.fuse & 4) n += "_gelu";
  if (c.ahead == 1) n += "_ahead";
  if (c.b != 1) n += "_b" + std::to_string(c.b);
  return n;
}

template <class T>
void add(const config& c) {
  const std::string name = "gemv/cuda/" + std::string(frugal::dtype_traits<T>::name) + "/" + std::to_string(c.N) + "x" +
                           std::to_string(c.K) + "/" + vname(c);
  benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& st) { run<T>(st, c); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->Iterations(200)
      ->Repetitions(3)
      ->ReportAggregatesOnly(true);
}

template <class T>
void register_dtype() {
  const std::int64_t shapes[][2] = {{4096, 4096},  {11008, 4096}, {4096, 11008}, {12288, 4096},
                                    {14336, 4096}, {4800, 1600},  {6400, 1600},  {1600, 6400}};
  const int sparsities[] = {25, 40, 50, 75, 90};
  for (auto& sh : shapes) {
    const std::int64_t N = sh[0], K = sh[1];
    add<T>({variant::cublas, N, K, 1, 0, 0});
    add<T>({variant::cublas_t, N, K, 1, 0, 0});
    add<T>({variant::dense, N, K, 1, 0, 0});
    add<T>({variant::dense, N, K, 1, 0, 0, 0, 0, 1});
    add<T>({variant::thresh, N, K, 1, 0, 0});
    add<T>({variant::topk, N, K, 1, 0, 0});
    for (int s : sparsities) {
      add<T>({variant::list, N, K, 1, s, 0});
      add<T>({variant::thresh, N, K, 1, s, 0});
      add<T>({variant::topk, N, K, 1, s, 0});
      if (s == 50 || s == 75) add<T>({variant::topk2k, N, K, 1, s, 0});
    }
  }
  // GPT-2 124M decode GEMVs (1-5 MB each, LM head 77 MB in 16-bit) and XL's attention projection.
  const std::int64_t gpt2[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}, {50257, 768}, {1600, 1600}};
  for (auto& sh : gpt2) {
    const std::int64_t N = sh[0], K = sh[1];
    add<T>({variant::cublas, N, K, 1, 0, 0});
    add<T>({variant::cublas_t, N, K, 1, 0, 0});
    add<T>({variant::dense, N, K, 1, 0, 0});
    add<T>({variant::dense, N, K, 1, 0, 0, 0, 1});      // ln_1 -> qkv / ln_2 -> fc
    add<T>({variant::dense, N, K, 1, 0, 0, 0, 1 | 4});  // ln_2 -> fc -> gelu
    add<T>({variant::dense, N, K, 1, 0, 0, 0, 0, 1});
    add<T>({variant::dense, N, K, 1, 0, 0, 0, 1 | 4, 1});
    for (int s : {50, 75}) {
      add<T>({variant::thresh, N, K, 1, s, 0});
      add<T>({variant::topk, N, K, 1, s, 0});
      add<T>({variant::topk2k, N, K, 1, s, 0});
    }
    add<T>({variant::thresh, N, K, 1, 50, 0, 0, 1 | 4});
    add<T>({variant::topk, N, K, 1, 50, 0, 0, 2 | 4});
  }
  // Batches: union of independent masks vs shared masks.
  for (auto& sh : {std::pair<std::int64_t, std::int64_t>{4096, 4096}, {14336, 4096}})
    for (std::int64_t b : {2, 4, 8, 16}) {
      add<T>({variant::cublas, sh.first, sh.second, b, 0, 0});
      add<T>({variant::cublas_t, sh.first, sh.second, b, 0, 0});
      add<T>({variant::dense, sh.first, sh.second, b, 0, 0});
      add<T>({variant::thresh, sh.first, sh.second, b, 50, 0});
      add<T>({variant::shared, sh.first, sh.second, b, 50, 0});
      add<T>({variant::list, sh.first, sh.second, b, 50, 0});
      add<T>({variant::topk, sh.first, sh.second, b, 50, 0});
      if (b == 2) add<T>({variant::topk2k, sh.first, sh.second, b, 50, 0});
    }
  // Launch-shape tuning (bf16 only): every segment width x split count (1 = no cluster) on the GPT-2 shapes and
  // the widest LLaMA shape; the sparse form on three of them.
  if (std::is_same_v<T, frugal::bfloat16>)
    for (auto& sh : {std::pair<std::int64_t, std::int64_t>{768, 768},
                     {2304, 768},
                     {768, 3072},
                     {4800, 1600},
                     {1600, 6400},
                     {14336, 4096}})
      for (int seg : {128, 256, 512})
        for (int p : {1, 2, 4, 8}) {
          add<T>({variant::dense, sh.first, sh.second, 1, 0, p, seg});
          if (sh.first == 4800 || sh.first == 1600 || sh.first == 14336)
            add<T>({variant::thresh, sh.first, sh.second, 1, 50, p, seg});
        }
}

// ---------------------------------------------------------------------------------------------------------------
// A decode step's projection GEMVs back to back in one CUDA Graph (what the GPT-2 example runs):
//   gemv/cuda/<dtype>/gpt2-124m-12L/<variant>  12 layers x [qkv 2304x768, attn proj 768x768, fc 3072x768,
//                                                mlp proj 768x3072] = 48 GEMVs, 170 MB of bf16 weights
//   gemv/cuda/<dtype>/gpt2-xl-48L/<variant>    48 layers x [4800x1600, 1600x1600, 6400x1600, 1600x6400] = 192
// Every GEMV has its own weights (HBM-bound like the real step). Variants: cublas / cublas_t (cublasGemmEx, as
// above), dense, dense_pdl (gemv_options::pdl: with it the dense GEMVs run the weights-ahead kernel, see
// gemv_types.hpp), fused_pdl (dense + layernorm before qkv and fc, gelu after fc), dense_pdl_noahead /
// fused_pdl_noahead (the same with weights_ahead = 0: the other dense kernel), thresh_s50[_pdl] (per-row device
// thresholds at the median |x|), topk_s50_pdl (fused top-k: the select inside the GEMV), topk2k_s50_pdl (the same
// through topk_select + GEMV per call). Time = one graph replay (L2 flushed before it); counter us_per_gemv = time /
// GEMVs.
// ---------------------------------------------------------------------------------------------------------------
enum class seq_variant {
  cublas,
  cublas_t,
  dense,
  dense_pdl,
  fused_pdl,
  thresh,
  thresh_pdl,
  topk_pdl,
  topk2k_pdl,
  dense_pdl_noahead,
  fused_pdl_noahead
};

template <class T>
void run_seq(benchmark::State& state, int layers, std::vector<std::array<std::int64_t, 3>> shapes, seq_variant v) {
  const int ns = static_cast<int>(shapes.size());
  std::vector<std::unique_ptr<dev<T>>> ws_, x_, y_;
  std::vector<std::unique_ptr<dev<float>>> t_;
  std::vector<std::unique_ptr<dev<std::byte>>> wk_;
  std::vector<std::size_t> wkb;
  std::vector<int> kk;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (auto& sh : shapes) {
    const std::int64_t N = sh[0], K = sh[1];
    std::vector<T> hx(static_cast<std::size_t>(K));
    std::vector<float> a(static_cast<std::size_t>(K));
    for (std::int64_t k = 0; k < K; ++k) {
      hx[k] = frugal::from_float<T>(nd(rng));
      a[k] = std::fabs(frugal::to_float(hx[k]));
    }
    std::nth_element(a.begin(), a.begin() + K / 2, a.end());
    x_.push_back(std::make_unique<dev<T>>(static_cast<std::size_t>(K)));
    x_.back()->upload(hx);
    y_.push_back(std::make_unique<dev<T>>(static_cast<std::size_t>(N)));
    t_.push_back(std::make_unique<dev<float>>(1));
    t_.back()->upload(std::vector<float>{a[K / 2]});
    kk.push_back(static_cast<int>(K / 2));
    wkb.push_back(v == seq_variant::topk2k_pdl
                      ? frugal::detail::gemv_cuda_workspace_bytes<T>(1, K, N, static_cast<int>(K / 2), true)
                      : frugal::gemv_workspace_bytes<T>(frugal::cuda, 1, K, N, static_cast<int>(K / 2)));
    wk_.push_back(std::make_unique<dev<std::byte>>(wkb.back()));
  }
  for (int l = 0; l < layers; ++l)
    for (auto& sh : shapes) {
      const std::int64_t N = sh[0], K = sh[1], ld = ldw_of(N);
      auto w = std::make_unique<dev<T>>(static_cast<std::size_t>(ld * K));
      const std::int64_t n = ld * K;
      fill_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(frugal::detail::as_cuda(w->p), n, 99 + l,
                                                                   1.f / std::sqrt(float(K)));
      if (v == seq_variant::cublas_t) {
        auto wt = std::make_unique<dev<T>>(static_cast<std::size_t>(ld * K));
        transpose_kernel<T><<<static_cast<unsigned>((n + 255) / 256), 256>>>(w->p, K, ld, wt->p);
        check(cudaDeviceSynchronize(), "transpose");
        w = std::move(wt);
      }
      ws_.push_back(std::move(w));
    }
  check(cudaDeviceSynchronize(), "init seq weights");
  cudaStream_t st;
  check(cudaStreamCreate(&st), "stream");
  cublasHandle_t h = nullptr;
  if (v == seq_variant::cublas || v == seq_variant::cublas_t) {
    cublas_check(cublasCreate(&h), "create");
    cublas_check(cublasSetStream(h, st), "stream");
  }
  const float one = 1.f, zero = 0.f;
  auto step = [&] {
    for (int l = 0; l < layers; ++l)
      for (int i = 0; i < ns; ++i) {
        const std::int64_t N = shapes[i][0], K = shapes[i][1], ld = ldw_of(N);
        const T* w = ws_[l * ns + i]->p;
        const matrix_view<const T> xv(x_[i]->p, 1, K), wv(w, K, N, ld);
        const matrix_view<T> yv(y_[i]->p, 1, N);
        frugal::gemv_options o;
        o.pdl = v != seq_variant::cublas && v != seq_variant::cublas_t && v != seq_variant::dense &&
                v != seq_variant::thresh;
        const bool fused = v == seq_variant::fused_pdl || v == seq_variant::fused_pdl_noahead;
        if (v == seq_variant::dense_pdl_noahead || v == seq_variant::fused_pdl_noahead) o.weights_ahead = 0;
        if (fused) {
          o.norm = shapes[i][2] & 1 ? frugal::gemv_norm::layernorm : frugal::gemv_norm::none;
          o.act = shapes[i][2] & 4 ? frugal::gemv_act::gelu_tanh : frugal::gemv_act::none;
        }
        switch (v) {
          case seq_variant::cublas:
            cublas_check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(N), 1, static_cast<int>(K), &one, w,
                                      cuda_dtype<T>(), static_cast<int>(ld), x_[i]->p, cuda_dtype<T>(),
                                      static_cast<int>(K), &zero, y_[i]->p, cuda_dtype<T>(), static_cast<int>(N),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "gemm");
            break;
          case seq_variant::cublas_t:
            cublas_check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), 1, static_cast<int>(K), &one, w,
                                      cuda_dtype<T>(), static_cast<int>(K), x_[i]->p, cuda_dtype<T>(),
                                      static_cast<int>(K), &zero, y_[i]->p, cuda_dtype<T>(), static_cast<int>(N),
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "gemm_t");
            break;
          case seq_variant::dense:
          case seq_variant::dense_pdl:
          case seq_variant::fused_pdl:
          case seq_variant::dense_pdl_noahead:
          case seq_variant::fused_pdl_noahead:
            frugal::gemv(frugal::cuda.on(st), xv, wv, nullptr, yv, o);
            break;
          case seq_variant::thresh:
          case seq_variant::thresh_pdl:
            frugal::sparse_gemv_threshold(frugal::cuda.on(st), xv, frugal::threshold{t_[i]->p, 0.f}, wv, nullptr, yv,
                                          o);
            break;
          case seq_variant::topk_pdl:
            frugal::sparse_gemv_topk(frugal::cuda.on(st), xv, kk[i], wv, nullptr, yv, o,
                                     frugal::workspace{wk_[i]->p, wkb[i]});
            break;
          case seq_variant::topk2k_pdl:
            frugal::detail::gemv_topk_cuda<T>(frugal::cuda.on(st), xv, kk[i], wv, nullptr, yv, o,
                                              frugal::workspace{wk_[i]->p, wkb[i]}, true);
            break;
        }
      }
  };
  step();  // warm-up (cuBLAS picks its kernels / workspace outside the capture)
  check(cudaStreamSynchronize(st), "seq warm-up");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  check(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "capture");
  step();
  check(cudaStreamEndCapture(st, &graph), "end capture");
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  check(cudaGraphLaunch(exec, st), "graph warm-up");
  check(cudaStreamSynchronize(st), "graph warm-up");
  flusher fl;
  for (auto _ : state) {
    fl.flush();
    check(cudaDeviceSynchronize(), "flush");
    frugal_bench::delay_kernel<<<1, 1, 0, st>>>(40000);
    frugal_bench::cuda_timer t(st);
    check(cudaGraphLaunch(exec, st), "graph");
    state.SetIterationTime(t.seconds());
  }
  check(cudaGetLastError(), "seq timing loop");
  state.counters["us_per_gemv"] = benchmark::Counter(
      1e-6 * layers * ns, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  if (h) cublasDestroy(h);
  cudaStreamDestroy(st);
}

template <class T>
void register_seq() {
  const char* vn[] = {"cublas",           "cublas_t",       "dense",        "dense_pdl",      "fused_pdl",
                      "thresh_s50",       "thresh_s50_pdl", "topk_s50_pdl", "topk2k_s50_pdl", "dense_pdl_noahead",
                      "fused_pdl_noahead"};
  struct model {
    const char* name;
    int layers;
    std::vector<std::array<std::int64_t, 3>> shapes;  // N, K, fuse (1 layernorm, 4 gelu)
  };
  const model models[] = {
      {"gpt2-124m-12L", 12, {{2304, 768, 1}, {768, 768, 0}, {3072, 768, 1 | 4}, {768, 3072, 0}}},
      {"gpt2-xl-48L", 48, {{4800, 1600, 1}, {1600, 1600, 0}, {6400, 1600, 1 | 4}, {1600, 6400, 0}}}};
  for (const auto& m : models)
    for (int i = 0; i < 11; ++i) {
      const std::string name = "gemv/cuda/" + std::string(frugal::dtype_traits<T>::name) + "/" + m.name + "/" + vn[i];
      const auto v = static_cast<seq_variant>(i);
      benchmark::RegisterBenchmark(name.c_str(),
                                   [m, v](benchmark::State& st) { run_seq<T>(st, m.layers, m.shapes, v); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond)
          ->Iterations(50)
          ->Repetitions(3)
          ->ReportAggregatesOnly(true);
    }
}

}  // namespace

int main(int argc, char** argv) {
  if (!frugal_bench::have_gpu()) {
    std::fprintf(stderr, "bench_gemv: no CUDA device, nothing to measure\n");
    return 0;
  }
  register_seq<frugal::bfloat16>();
  register_dtype<frugal::bfloat16>();
  register_dtype<frugal::half>();
  for (auto v : {variant::cublas, variant::cublas_t, variant::dense}) add<float>({v, 4096, 4096, 1, 0, 0});
  add<float>({variant::thresh, 4096, 4096, 1, 50, 0});
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
