// How many sequences fit a fixed KV budget: paged (block_allocator) vs contiguous max-length reservation vs
// vAttention-style 2 MB pages, for lengths uniform in [64, 4096] (max 4096); and what fork() saves for parallel
// sampling. A CPU program: every number comes from actually allocating with frugal::block_allocator.
//   bench_kv_memory [trials=200]
#include <frugal/kv/block_allocator.hpp>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <tuple>
#include <vector>

namespace {

struct fill_result {
  double seqs = 0, waste = 0;
};

//! Admit sequences (lengths uniform in [lo, hi]) into a pool of `budget_tokens` slots until the next one does not fit.
fill_result fill_paged(std::int64_t budget_tokens, std::int32_t page, int lo, int hi, int trials) {
  fill_result r;
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> len(lo, hi);
  for (int t = 0; t < trials; ++t) {
    frugal::block_allocator a(static_cast<std::int32_t>(budget_tokens / page), page);
    int n = 0;
    for (;;) {
      const int l = len(rng);
      if (!a.can_allocate(l)) break;
      a.allocate(l);
      ++n;
    }
    r.seqs += n;
    r.waste += a.waste_fraction();
  }
  r.seqs /= trials;
  r.waste /= trials;
  return r;
}

//! Every sequence reserves `reserve` tokens (max length, or whole pages of `page` tokens for the VMM backend).
fill_result fill_reserved(std::int64_t budget_tokens, std::int64_t page, bool max_length, int lo, int hi, int trials) {
  fill_result r;
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> len(lo, hi);
  for (int t = 0; t < trials; ++t) {
    std::int64_t used = 0, stored = 0;
    int n = 0;
    for (;;) {
      const int l = len(rng);
      const std::int64_t take = max_length ? hi : (l + page - 1) / page * page;
      if (used + take > budget_tokens) break;
      used += take;
      stored += l;
      ++n;
    }
    r.seqs += n;
    r.waste += used ? 1.0 - static_cast<double>(stored) / static_cast<double>(used) : 0.0;
  }
  r.seqs /= trials;
  r.waste /= trials;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int trials = argc > 1 ? std::atoi(argv[1]) : 200;
  // Budget: 8 GiB of f16 KV for a Llama-3-8B-like model (32 layers, 8 KV heads, head_dim 128): 128 KiB per token.
  const std::int64_t bytes_per_token = 32LL * 2 * 8 * 128 * 2;
  const std::int64_t budget = (8LL << 30) / bytes_per_token;  // 65536 tokens
  const int lo = 64, hi = 4096;
  // 2 MB VMM pages hold 2 MiB / (8 * 128 * 2 B) = 1024 tokens of one layer's K (or V).
  const std::int64_t vmm_page_tokens = (2LL << 20) / (8 * 128 * 2);
  std::printf("# KV budget: 8 GiB = %lld tokens (Llama-3-8B-like: 32 layers x 8 KV heads x 128 x f16 = %lld KiB/token)\n",
              static_cast<long long>(budget), static_cast<long long>(bytes_per_token >> 10));
  std::printf("# lengths uniform in [%d, %d], %d trials, sequences admitted until the next one does not fit\n\n", lo, hi,
              trials);
  std::printf("| scheme | sequences that fit (mean) | vs max-length reservation | memory wasted |\n");
  std::printf("|---|---:|---:|---:|\n");
  const fill_result contiguous = fill_reserved(budget, 1, true, lo, hi, trials);
  std::printf("| contiguous, max-length (%d) reservation | %.1f | 1.00x | %.1f%% |\n", hi, contiguous.seqs,
              100 * contiguous.waste);
  const fill_result vmm = fill_reserved(budget, vmm_page_tokens, false, lo, hi, trials);
  std::printf("| vmm_kv_cache, 2 MB pages (%lld tokens) | %.1f | %.2fx | %.1f%% |\n",
              static_cast<long long>(vmm_page_tokens), vmm.seqs, vmm.seqs / contiguous.seqs, 100 * vmm.waste);
  for (const std::int32_t page : {256, 64, 32, 16, 8, 1}) {
    const fill_result p = fill_paged(budget, page, lo, hi, trials);
    std::printf("| paged, page %d | %.1f | %.2fx | %.2f%% |\n", page, p.seqs, p.seqs / contiguous.seqs, 100 * p.waste);
  }

  // Parallel sampling: one prompt, n completions sharing it through fork() (copy-on-write of the partial last block).
  std::printf("\n# parallel sampling with fork(): prompt P tokens, n completions of G tokens each, page 16\n\n");
  std::printf("| prompt | completions | generated each | blocks without sharing | blocks with fork | saved |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& [P, n, G] : std::vector<std::tuple<int, int, int>>{{1000, 4, 256}, {1000, 8, 64}, {200, 4, 1000}}) {
    frugal::block_allocator shared(1 << 16, 16), separate(1 << 16, 16);
    const auto root = shared.allocate(P);
    std::vector<frugal::block_allocator::seq_id> kids;
    int copies = 0;
    for (int i = 0; i < n; ++i) kids.push_back(shared.fork(root));
    shared.free(root);
    for (int g = 0; g < G; ++g)
      for (auto k : kids) copies += shared.append(k, 1).has_value();
    for (int i = 0; i < n; ++i) separate.allocate(P + G);
    std::printf("| %d | %d | %d | %d | %d | %.1f%% |\n", P, n, G, separate.num_used_blocks(), shared.num_used_blocks(),
                100.0 * (1.0 - static_cast<double>(shared.num_used_blocks()) / separate.num_used_blocks()));
    (void)copies;
  }
  return 0;
}
