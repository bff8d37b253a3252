// GPT-2 BPE encode throughput (1 thread and batch), patched encode, AdaptiVocab build time and token savings.
// Names: <op>/cpu/gpt2/<corpus>/<variant>. Counters: bytes_per_second (MB/s of input text), tokens, saving_pct.
// Inputs: GPT-2 files (tests/vocab/fetch-gpt2-tokenizer.sh), man pages (tests/vocab/make-corpus.sh), and Debian's
// license texts as English prose; a missing input skips its benchmarks with a message.
#include <benchmark/benchmark.h>

#include <frugal/vocab/patch_tokenizer.hpp>

#include "bench_vocab_data.hpp"

namespace {

bool inputs_ok(benchmark::State& st, const std::string& corpus) {
  if (!vocab_bench::gpt2()) {
    st.SkipWithError("GPT-2 files missing: run tests/vocab/fetch-gpt2-tokenizer.sh");
    return false;
  }
  if (vocab_bench::text(corpus).empty()) {
    st.SkipWithError("corpus missing: run tests/vocab/make-corpus.sh");
    return false;
  }
  return true;
}

const frugal::patch_tokenizer* patched(int m) {
  static std::map<int, std::unique_ptr<frugal::patch_tokenizer>> cache;
  auto& p = cache[m];
  if (!p) {
    const auto docs = vocab_bench::split_docs(vocab_bench::text("manpages-train"));
    frugal::patch_vocab_options o;
    o.num_patches = m;
    p = std::make_unique<frugal::patch_tokenizer>(*vocab_bench::gpt2(),
                                                  frugal::patch_vocab::build(frugal::cpu, *vocab_bench::gpt2(), docs, o));
  }
  return p.get();
}

void encode_one_thread(benchmark::State& st, std::string corpus, bool patch) {
  if (!inputs_ok(st, corpus) || (patch && !inputs_ok(st, "manpages-train"))) return;
  const auto& tok = *vocab_bench::gpt2();
  const std::string& text = vocab_bench::text(corpus);
  const frugal::patch_tokenizer* pt = patch ? patched(10000) : nullptr;
  std::size_t n = 0;
  for (auto _ : st) {
    auto ids = pt ? pt->encode(text) : tok.encode(text);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * text.size()));
  st.counters["tokens"] = static_cast<double>(n);
  st.counters["bytes"] = static_cast<double>(text.size());
}

void encode_batch(benchmark::State& st, std::string corpus, bool patch) {
  if (!inputs_ok(st, corpus) || (patch && !inputs_ok(st, "manpages-train"))) return;
  const auto& tok = *vocab_bench::gpt2();
  const std::string& text = vocab_bench::text(corpus);
  const auto docs = vocab_bench::split_docs(text);
  const frugal::patch_tokenizer* pt = patch ? patched(10000) : nullptr;
  const frugal::cpu_t tag{};
  for (auto _ : st) {
    auto ids = pt ? pt->encode_batch(tag, docs) : tok.encode_batch(tag, docs);
    benchmark::DoNotOptimize(ids.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * text.size()));
  st.counters["threads"] = tag.num_threads();
  st.counters["documents"] = static_cast<double>(docs.size());
}

//! Build on the training split, measure tokens on the held-out split (documents encoded one by one).
void build_and_saving(benchmark::State& st, int m, int max_n, bool overlap_aware, bool keep_containing = false) {
  if (!inputs_ok(st, "manpages-train") || !inputs_ok(st, "manpages-test")) return;
  const auto& tok = *vocab_bench::gpt2();
  const auto train = vocab_bench::split_docs(vocab_bench::text("manpages-train"));
  const auto test = vocab_bench::split_docs(vocab_bench::text("manpages-test"));
  frugal::patch_vocab_options o;
  o.num_patches = m;
  o.max_n = max_n;
  o.overlap_aware = overlap_aware;
  o.keep_containing = keep_containing;
  frugal::patch_vocab pv;
  for (auto _ : st) pv = frugal::patch_vocab::build(frugal::cpu, tok, train, o);
  const frugal::patch_tokenizer pt(tok, pv);
  double nb = 0, np = 0;
  for (const auto d : test) {
    nb += static_cast<double>(tok.encode(d).size());
    np += static_cast<double>(pt.encode(d).size());
  }
  st.counters["patches"] = pv.size();
  st.counters["base_tokens"] = nb;
  st.counters["patched_tokens"] = np;
  st.counters["saving_pct"] = 100.0 * (1.0 - np / nb);
  st.counters["train_bytes"] = static_cast<double>(pv.stats().corpus_bytes);
}

}  // namespace

BENCHMARK_CAPTURE(encode_one_thread, "encode/cpu/gpt2/licenses/base_1thread", std::string("licenses"), false)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_one_thread, "encode/cpu/gpt2/manpages-test/base_1thread", std::string("manpages-test"), false)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_one_thread, "encode/cpu/gpt2/manpages-test/patched10k_1thread", std::string("manpages-test"), true)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_batch, "encode_batch/cpu/gpt2/manpages-train/base_threads", std::string("manpages-train"), false)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(encode_batch, "encode_batch/cpu/gpt2/manpages-train/patched10k_threads", std::string("manpages-train"), true)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(build_and_saving, "patch_build/cpu/gpt2/manpages/m10000_n4_overlap", 10000, 4, true)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(build_and_saving, "patch_build/cpu/gpt2/manpages/m10000_n3_overlap", 10000, 3, true)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(build_and_saving, "patch_build/cpu/gpt2/manpages/m10000_n4_naive", 10000, 4, false)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(build_and_saving, "patch_build/cpu/gpt2/manpages/m10000_n4_keep_containing", 10000, 4, true, true)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(build_and_saving, "patch_build/cpu/gpt2/manpages/m2000_n4_overlap", 2000, 4, true)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

BENCHMARK_MAIN();
