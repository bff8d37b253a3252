// eigh on CUDA against cuSOLVER syevd (divide and conquer) and syevj (Jacobi, default tolerance = eps and up to 100
// sweeps) in the same run. Names: eigh/cuda/<dtype>/<n>/<variant>, variant = frugal | syevd | syevj.
// Timing: CUDA events around one call (frugal::eigh includes its input scan, copy and per-sweep host syncs; the
// cuSOLVER calls include a device copy of A, which they overwrite; handles, workspaces and info objects are made
// outside the loop). No L2 flush: the solves are compute/latency bound and re-read their working set many times.
// Counters: orth = max|QᵀQ - I|, residual = ||AQ - QΛ||_F / ||A||_F (f64; the products on the host for n < 4096, with
// cuBLAS DGEMM on the device from n = 4096), bound = 10·n·eps, sweeps (frugal, syevj), ratio_vs_syevd = this variant's
// time / syevd's time for the same dtype and n. The test matrix A = X Xᵀ / (2n) (X Gaussian n x 2n, seed 1234) is
// formed on the host below n = 4096 and with cuBLAS DGEMM from n = 4096 (same X; minutes of host time saved at 8192).
#include <frugal/rotation/eigh.hpp>

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench_eigh_common.hpp"
#include "common/bench_cuda.cuh"

namespace {

void cusolver_check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuSOLVER error %d in %s\n", static_cast<int>(s), what);
    std::exit(1);
  }
}

template <class T>
struct dev {
  T* p = nullptr;
  explicit dev(std::size_t n) { frugal_bench::check(cudaMalloc(&p, n * sizeof(T) + 1), "cudaMalloc"); }
  ~dev() { cudaFree(p); }
  dev(const dev&) = delete;
  dev& operator=(const dev&) = delete;
};

std::map<std::pair<int, int>, double>& syevd_seconds() {
  static std::map<std::pair<int, int>, double> m;
  return m;
}

void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuBLAS error %d in %s\n", static_cast<int>(s), what);
    std::exit(1);
  }
}

constexpr int gpu_from = 2048;  // matrix products on the device from this n on

//! C = opA(A) · opB(B), n x n, f64, all column-major device buffers.
void dgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int n, int k, const double* a, int lda,
           const double* b, int ldb, double* c, double alpha) {
  const double beta = 0.0;
  cublas_check(cublasDgemm(h, ta, tb, n, n, k, &alpha, a, lda, b, ldb, &beta, c, n), "cublasDgemm");
}

//! bench_eigh::matrix(n) for large n, formed on the device: the same Gaussian X (same seed and order), A = X Xᵀ.
const std::vector<double>& matrix_on_gpu(int n) {
  static std::map<int, std::vector<double>> cache;
  auto& m = cache[n];
  if (!m.empty()) return m;
  std::mt19937_64 rng(1234);
  std::normal_distribution<double> nd;
  const int k = 2 * n;
  std::vector<double> xt(static_cast<std::size_t>(k) * n);  // xt = Xᵀ row-major [k, n] == X column-major [n, k]
  for (auto& v : xt) v = nd(rng) / std::sqrt(static_cast<double>(k));
  dev<double> dx(xt.size()), da(static_cast<std::size_t>(n) * n);
  frugal_bench::check(cudaMemcpy(dx.p, xt.data(), xt.size() * sizeof(double), cudaMemcpyHostToDevice), "upload X");
  cublasHandle_t h;
  cublas_check(cublasCreate(&h), "create");
  // row-major xt [k, n] is column-major [n, k] = X; A = X · Xᵀ (symmetric, so either storage order)
  dgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, n, k, dx.p, n, dx.p, n, da.p, 1.0);
  cublasDestroy(h);
  m.resize(static_cast<std::size_t>(n) * n);
  frugal_bench::check(cudaMemcpy(m.data(), da.p, m.size() * sizeof(double), cudaMemcpyDeviceToHost), "download A");
  for (int i = 0; i < n; ++i)  // exact symmetry (the two triangles may differ in the last bit)
    for (int j = 0; j < i; ++j) m[static_cast<std::size_t>(i) * n + j] = m[static_cast<std::size_t>(j) * n + i];
  return m;
}

const std::vector<double>& test_matrix(int n) {
  return n >= gpu_from ? matrix_on_gpu(n) : bench_eigh::matrix(n);
}

//! The accuracy counters with the two n³ products on the device (cuBLAS DGEMM); q row-major [n, n], columns =
//! eigenvectors (q_column_major: cuSOLVER's layout).
template <class T>
void set_accuracy_gpu(benchmark::State& state, const std::vector<double>& a, const std::vector<T>& w,
                      const std::vector<T>& q, int n, bool q_column_major) {
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  std::vector<double> qd(nn);  // row-major Q
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      qd[static_cast<std::size_t>(i) * n + j] = static_cast<double>(
          q_column_major ? q[static_cast<std::size_t>(j) * n + i] : q[static_cast<std::size_t>(i) * n + j]);
  dev<double> da(nn), dq(nn), daq(nn), dqtq(nn);
  frugal_bench::check(cudaMemcpy(da.p, a.data(), nn * sizeof(double), cudaMemcpyHostToDevice), "upload A");
  frugal_bench::check(cudaMemcpy(dq.p, qd.data(), nn * sizeof(double), cudaMemcpyHostToDevice), "upload Q");
  cublasHandle_t h;
  cublas_check(cublasCreate(&h), "create");
  // The row-major buffer of Q is Qᵀ column-major. Column-major Qᵀ·A = (AQ)ᵀ: its buffer read row-major is AQ.
  dgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, dq.p, n, da.p, n, daq.p, 1.0);
  // Column-major Qᵀ·(Qᵀ)ᵀ = QᵀQ (symmetric: same buffer either way).
  dgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, n, n, dq.p, n, dq.p, n, dqtq.p, 1.0);
  cublasDestroy(h);
  std::vector<double> aq(nn), qtq(nn);
  frugal_bench::check(cudaMemcpy(aq.data(), daq.p, nn * sizeof(double), cudaMemcpyDeviceToHost), "download AQ");
  frugal_bench::check(cudaMemcpy(qtq.data(), dqtq.p, nn * sizeof(double), cudaMemcpyDeviceToHost), "download QtQ");
  double orth = 0, num = 0, den = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t e = static_cast<std::size_t>(i) * n + j;
      orth = std::max(orth, std::fabs(qtq[e] - (i == j ? 1.0 : 0.0)));
      const double d = aq[e] - qd[e] * static_cast<double>(w[static_cast<std::size_t>(j)]);
      num += d * d;
      den += a[e] * a[e];
    }
  state.counters["orth"] = orth;
  state.counters["residual"] = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  state.counters["bound"] = 10.0 * n * (sizeof(T) == 4 ? 1.1920928955078125e-07 : 2.220446049250313e-16);
}

template <class T>
std::vector<T> upload_matrix(int n, T* d) {
  const auto& a64 = test_matrix(n);
  std::vector<T> a(a64.begin(), a64.end());
  frugal_bench::check(cudaMemcpy(d, a.data(), a.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
  return a;
}

template <class T>
void finish(benchmark::State& state, int n, double total, bool is_syevd, const std::vector<T>& a, const T* dw,
            const T* dq, bool column_major) {
  const double per = total / static_cast<double>(state.iterations());
  const auto key = std::make_pair(static_cast<int>(sizeof(T)), n);
  if (is_syevd) syevd_seconds()[key] = per;
  const auto it = syevd_seconds().find(key);
  if (it != syevd_seconds().end() && !is_syevd) state.counters["ratio_vs_syevd"] = per / it->second;
  std::vector<T> w(static_cast<std::size_t>(n)), q(static_cast<std::size_t>(n) * n);
  frugal_bench::check(cudaMemcpy(w.data(), dw, w.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
  frugal_bench::check(cudaMemcpy(q.data(), dq, q.size() * sizeof(T), cudaMemcpyDeviceToHost), "download");
  if (n >= gpu_from)
    set_accuracy_gpu(state, std::vector<double>(a.begin(), a.end()), w, q, n, column_major);
  else
    bench_eigh::set_accuracy(state, std::vector<double>(a.begin(), a.end()), w, q, n, column_major);
}

//! Sets an environment variable of the solver (FRUGAL_EIGH_F64_SUBPROBLEMS, FRUGAL_EIGH_FULL_STEPS,
//! FRUGAL_EIGH_NO_PDL) to "1" for the lifetime of a benchmark.
struct scoped_env {
  scoped_env(const char* name, bool on) : name_(on ? name : nullptr) {
    if (name_) setenv(name_, "1", 1);
  }
  ~scoped_env() {
    if (name_) unsetenv(name_);
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  const char* name_;
};

//! Variants of the solver measured beside the default.
struct variant {
  bool f64_sub = false;     //!< f64 instead of f32 subproblems (f32, b = 16)
  bool full_steps = false;  //!< every step solves with the full 31-round ordering (b = 16; before the ninth session)
  bool no_pdl = false;      //!< b = 16 steps launched without programmatic dependent launch
  int block_size = 0;       //!< eigh_options::block_size
};

template <class T>
void bm_frugal(benchmark::State& state, int n, variant var = {}) {
  const scoped_env env1("FRUGAL_EIGH_F64_SUBPROBLEMS", var.f64_sub), env2("FRUGAL_EIGH_FULL_STEPS", var.full_steps),
      env3("FRUGAL_EIGH_NO_PDL", var.no_pdl);
  frugal::eigh_options o;
  o.block_size = var.block_size;
  dev<T> da(static_cast<std::size_t>(n) * n), dq(static_cast<std::size_t>(n) * n), dw(static_cast<std::size_t>(n));
  const auto a = upload_matrix<T>(n, da.p);
  const std::size_t bytes = frugal::eigh_workspace_bytes<T>(frugal::cuda, n, o);
  dev<std::byte> ws(bytes);
  frugal::eigh_info info =
      frugal::eigh<T>(frugal::cuda, frugal::matrix_view<const T>(da.p, n, n), dw.p, frugal::matrix_view<T>(dq.p, n, n),
                      frugal::workspace{ws.p, bytes}, o);  // warm-up
  double total = 0;
  for (auto _ : state) {
    frugal_bench::cuda_timer t;
    info = frugal::eigh<T>(frugal::cuda, frugal::matrix_view<const T>(da.p, n, n), dw.p,
                           frugal::matrix_view<T>(dq.p, n, n), frugal::workspace{ws.p, bytes}, o);
    const double s = t.seconds();
    state.SetIterationTime(s);
    total += s;
  }
  state.counters["sweeps"] = info.sweeps;
  finish(state, n, total, false, a, dw.p, dq.p, false);
}

template <class T>
void bm_cusolver(benchmark::State& state, int n, bool jacobi) {
  dev<T> da(static_cast<std::size_t>(n) * n), work_a(static_cast<std::size_t>(n) * n), dw(static_cast<std::size_t>(n));
  dev<int> dinfo(1);
  const auto a = upload_matrix<T>(n, da.p);
  cusolverDnHandle_t h;
  cusolver_check(cusolverDnCreate(&h), "create");
  syevjInfo_t params = nullptr;
  int lwork = 0;
  const auto mode = CUSOLVER_EIG_MODE_VECTOR;
  const auto uplo = CUBLAS_FILL_MODE_UPPER;
  if (jacobi) {
    cusolver_check(cusolverDnCreateSyevjInfo(&params), "syevj info");
    if constexpr (sizeof(T) == 4)
      cusolver_check(cusolverDnSsyevj_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork, params), "buffer");
    else
      cusolver_check(cusolverDnDsyevj_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork, params), "buffer");
  } else {
    if constexpr (sizeof(T) == 4)
      cusolver_check(cusolverDnSsyevd_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork), "buffer");
    else
      cusolver_check(cusolverDnDsyevd_bufferSize(h, mode, uplo, n, work_a.p, n, dw.p, &lwork), "buffer");
  }
  dev<T> work(static_cast<std::size_t>(lwork));
  auto call = [&] {
    cudaMemcpyAsync(work_a.p, da.p, static_cast<std::size_t>(n) * n * sizeof(T), cudaMemcpyDeviceToDevice);
    if (jacobi) {
      if constexpr (sizeof(T) == 4)
        cusolver_check(cusolverDnSsyevj(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p, params), "syevj");
      else
        cusolver_check(cusolverDnDsyevj(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p, params), "syevj");
    } else {
      if constexpr (sizeof(T) == 4)
        cusolver_check(cusolverDnSsyevd(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p), "syevd");
      else
        cusolver_check(cusolverDnDsyevd(h, mode, uplo, n, work_a.p, n, dw.p, work.p, lwork, dinfo.p), "syevd");
    }
  };
  call();  // warm-up (module loading), untimed
  frugal_bench::check(cudaDeviceSynchronize(), "warm-up");
  double total = 0;
  for (auto _ : state) {
    frugal_bench::cuda_timer t;
    call();
    const double s = t.seconds();
    state.SetIterationTime(s);
    total += s;
  }
  int info = 0;
  frugal_bench::check(cudaMemcpy(&info, dinfo.p, sizeof(int), cudaMemcpyDeviceToHost), "info");
  if (info != 0) state.SkipWithError("cuSOLVER reported info != 0");
  if (jacobi) {
    int sweeps = 0;
    cusolver_check(cusolverDnXsyevjGetSweeps(h, params, &sweeps), "sweeps");
    state.counters["sweeps"] = sweeps;
    cusolverDnDestroySyevjInfo(params);
  }
  cusolverDnDestroy(h);
  // cuSOLVER: eigenvectors are the columns of a column-major matrix == the rows of our row-major view
  finish(state, n, total, !jacobi, a, dw.p, work_a.p, true);
}

template <class T>
void register_n(int n, int iters, bool with_syevj) {
  const std::string base = std::string("eigh/cuda/") + (sizeof(T) == 4 ? "f32/" : "f64/") + std::to_string(n) + "/";
  benchmark::RegisterBenchmark((base + "syevd").c_str(), [n](benchmark::State& s) { bm_cusolver<T>(s, n, false); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(iters);
  if (with_syevj)
    benchmark::RegisterBenchmark((base + "syevj").c_str(), [n](benchmark::State& s) { bm_cusolver<T>(s, n, true); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iters);
  benchmark::RegisterBenchmark((base + "frugal").c_str(), [n](benchmark::State& s) { bm_frugal<T>(s, n); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->Iterations(iters);
  const auto add = [&](const char* name, variant var) {
    benchmark::RegisterBenchmark((base + name).c_str(), [n, var](benchmark::State& s) { bm_frugal<T>(s, n, var); })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iters);
  };
  const bool b16 = frugal::detail::eigh_cuda_block_size(n, 0) == 16;  // the automatic choice
  if (!b16) add("frugal_b16", {.block_size = 16});  // the one-kernel step where the automatic choice is b = 32
  if (b16 && n > 1024) add("frugal_b32", {.block_size = 32});
  if (b16) add("frugal_fullsteps", {.full_steps = true});              // the 31-round ordering in every step
  if (b16) add("frugal_nopdl", {.no_pdl = true});                      // steps launched one after the other
  if (b16 && sizeof(T) == 4) add("frugal_f64sub", {.f64_sub = true});  // f64 instead of f32 subproblems
}

}  // namespace

int main(int argc, char** argv) {
  if (!frugal_bench::have_gpu()) {
    std::fprintf(stderr, "bench_rotation_eigh: no CUDA device\n");
    return 0;
  }
  {  // warm up the context and cuSOLVER's library load outside any measurement
    cusolverDnHandle_t h;
    cusolver_check(cusolverDnCreate(&h), "create");
    cusolverDnDestroy(h);
  }
  for (int n : {256, 768, 1536, 2048, 4096}) {
    const int iters = n <= 768 ? 10 : (n <= 2048 ? 4 : 2);
    register_n<float>(n, iters, true);
    register_n<double>(n, iters, n < 4096);  // syevj f64 at 4096 takes ~1.5 s a call: left out
  }
  register_n<float>(8192, 1, false);
  register_n<double>(8192, 1, false);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
