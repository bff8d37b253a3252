// CUDA patch merge over many documents' id streams (the man-page training split, ~1000 documents, ~3M ids) against
// the CPU merge (all threads) measured in the same run; patch embedding init on a GPT-2-sized [50257, 768] matrix.
// Names: <op>/<device>/<dtype>/<shape>/<variant>; counters: ids_per_second, GB/s of bytes touched.
#include <benchmark/benchmark.h>

#include <frugal/vocab/patch_embeddings.hpp>
#include <frugal/vocab/patch_tokenizer.hpp>

#include "bench_vocab_data.hpp"
#include "common/bench_cuda.cuh"

namespace {

struct merge_input {
  std::unique_ptr<frugal::patch_tokenizer> pt;
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> offsets;
};

const merge_input* input() {
  static std::unique_ptr<merge_input> in = []() -> std::unique_ptr<merge_input> {
    if (!vocab_bench::gpt2() || vocab_bench::text("manpages-train").empty()) return nullptr;
    auto r = std::make_unique<merge_input>();
    const auto docs = vocab_bench::split_docs(vocab_bench::text("manpages-train"));
    frugal::patch_vocab_options o;
    o.num_patches = 10000;
    r->pt = std::make_unique<frugal::patch_tokenizer>(*vocab_bench::gpt2(),
                                                      frugal::patch_vocab::build(frugal::cpu, *vocab_bench::gpt2(), docs, o));
    r->pt->flatten(frugal::cpu, docs, r->ids, r->offsets);
    return r;
  }();
  return in.get();
}

void merge_cpu(benchmark::State& st) {
  const auto* in = input();
  if (!in) return st.SkipWithError("GPT-2 files or corpus missing");
  const std::int64_t docs = static_cast<std::int64_t>(in->offsets.size()) - 1;
  std::vector<std::int32_t> out(in->ids.size());
  std::vector<std::int64_t> counts(static_cast<std::size_t>(docs));
  for (auto _ : st)
    frugal::patch_merge(frugal::cpu, in->pt->table().view(), in->ids.data(), in->offsets.data(), docs, out.data(),
                        counts.data());
  st.counters["ids_per_second"] = benchmark::Counter(static_cast<double>(in->ids.size()), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = frugal::cpu.num_threads();
}

void merge_cuda(benchmark::State& st) {
  if (!frugal_bench::have_gpu()) return st.SkipWithError("no GPU");
  const auto* in = input();
  if (!in) return st.SkipWithError("GPT-2 files or corpus missing");
  const std::int64_t docs = static_cast<std::int64_t>(in->offsets.size()) - 1, total = in->offsets.back();
  const auto& tb = in->pt->table();
  std::uint64_t* keys;
  std::int32_t *values, *ids, *out;
  std::int64_t *offsets, *counts;
  void* ws;
  const std::size_t wsb = frugal::patch_merge_workspace_bytes(frugal::cuda, total, docs);
  frugal_bench::check(cudaMalloc(&keys, tb.keys.size() * 8), "malloc");
  frugal_bench::check(cudaMalloc(&values, tb.values.size() * 4), "malloc");
  frugal_bench::check(cudaMalloc(&ids, in->ids.size() * 4), "malloc");
  frugal_bench::check(cudaMalloc(&out, in->ids.size() * 4), "malloc");
  frugal_bench::check(cudaMalloc(&offsets, in->offsets.size() * 8), "malloc");
  frugal_bench::check(cudaMalloc(&counts, static_cast<std::size_t>(docs) * 8), "malloc");
  frugal_bench::check(cudaMalloc(&ws, wsb), "malloc");
  cudaMemcpy(keys, tb.keys.data(), tb.keys.size() * 8, cudaMemcpyHostToDevice);
  cudaMemcpy(values, tb.values.data(), tb.values.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(ids, in->ids.data(), in->ids.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(offsets, in->offsets.data(), in->offsets.size() * 8, cudaMemcpyHostToDevice);
  const auto view = tb.view_at(keys, values);
  for (int w = 0; w < 3; ++w)
    frugal::patch_merge(frugal::cuda, view, ids, offsets, docs, total, out, counts, frugal::workspace{ws, wsb});
  for (auto _ : st) {
    frugal_bench::cuda_timer t;
    frugal::patch_merge(frugal::cuda, view, ids, offsets, docs, total, out, counts, frugal::workspace{ws, wsb});
    st.SetIterationTime(t.seconds());
  }
  st.counters["ids_per_second"] = benchmark::Counter(static_cast<double>(total), benchmark::Counter::kIsIterationInvariantRate);
  for (void* p : {static_cast<void*>(keys), static_cast<void*>(values), static_cast<void*>(ids), static_cast<void*>(out),
                  static_cast<void*>(offsets), static_cast<void*>(counts), ws})
    cudaFree(p);
}

template <class T>
void embed_cuda(benchmark::State& st) {
  if (!frugal_bench::have_gpu()) return st.SkipWithError("no GPU");
  const std::int64_t V = 50257, d = 768, P = 10000, max_n = 4;
  std::vector<std::int32_t> targets(P), pieces(static_cast<std::size_t>(P * max_n), -1);
  for (std::int64_t p = 0; p < P; ++p) {
    targets[static_cast<std::size_t>(p)] = static_cast<std::int32_t>(V - 2 - p);
    for (int i = 0; i < 2 + p % 3; ++i) pieces[static_cast<std::size_t>(p * max_n + i)] = static_cast<std::int32_t>((p * 7 + i * 131) % 40000);
  }
  T* e;
  std::int32_t *t, *pc;
  frugal_bench::check(cudaMalloc(&e, static_cast<std::size_t>(V * d) * sizeof(T)), "malloc");
  cudaMemset(e, 0, static_cast<std::size_t>(V * d) * sizeof(T));
  frugal_bench::check(cudaMalloc(&t, targets.size() * 4), "malloc");
  frugal_bench::check(cudaMalloc(&pc, pieces.size() * 4), "malloc");
  cudaMemcpy(t, targets.data(), targets.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(pc, pieces.data(), pieces.size() * 4, cudaMemcpyHostToDevice);
  frugal_bench::l2_flusher flush;
  for (auto _ : st) {
    flush.flush();
    frugal_bench::cuda_timer tm;
    frugal::init_patch_embeddings(frugal::cuda, frugal::matrix_view<T>(e, V, d), t, pc, P, static_cast<int>(max_n),
                                  frugal::patch_embedding_role::input);
    st.SetIterationTime(tm.seconds());
  }
  frugal_bench::set_bytes(st, static_cast<double>(P * d * sizeof(T)) * 4.0);  // ~3 reads + 1 write per row element
  cudaFree(e);
  cudaFree(t);
  cudaFree(pc);
}

}  // namespace

BENCHMARK(merge_cpu)->Name("patch_merge/cpu/i32/manpages-train/m10000")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(merge_cuda)->Name("patch_merge/cuda/i32/manpages-train/m10000")->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK(embed_cuda<float>)->Name("patch_embed/cuda/f32/50257x768/p10000")->Unit(benchmark::kMicrosecond)->UseManualTime();
BENCHMARK(embed_cuda<frugal::half>)->Name("patch_embed/cuda/f16/50257x768/p10000")->Unit(benchmark::kMicrosecond)->UseManualTime();
BENCHMARK(embed_cuda<frugal::bfloat16>)->Name("patch_embed/cuda/bf16/50257x768/p10000")->Unit(benchmark::kMicrosecond)->UseManualTime();

BENCHMARK_MAIN();
