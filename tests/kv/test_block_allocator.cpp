// kv: block allocator — semantics, exports, the strong exception guarantee, and a randomized model test of
// >= 100k operations (allocate, append, fork, free, exhaustion) with invariants checked after every step.
#include <frugal/kv/block_allocator.hpp>
#include <frugal/kv/detail/kv_common.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "common/test_util.hpp"

using frugal::block_allocator;
using frugal::block_copy;
using seq_id = block_allocator::seq_id;

namespace {

std::vector<std::int32_t> blocks_of(const block_allocator& a, seq_id s) {
  const auto b = a.blocks(s);
  return {b.begin(), b.end()};
}

//! Everything observable about an allocator, to check "exactly as before" after a failed operation.
struct snapshot {
  std::map<seq_id, std::pair<std::int64_t, std::vector<std::int32_t>>> seqs;
  std::vector<std::int32_t> refs;
  std::int32_t free_blocks = 0;
  std::int64_t stored = 0, logical = 0;
  bool operator==(const snapshot&) const = default;
};

snapshot take(const block_allocator& a, const std::vector<seq_id>& live) {
  snapshot s;
  for (seq_id id : live) s.seqs[id] = {a.length(id), blocks_of(a, id)};
  for (std::int32_t b = 0; b < a.num_blocks(); ++b) s.refs.push_back(a.ref_count(b));
  s.free_blocks = a.num_free_blocks();
  s.stored = a.tokens_stored();
  s.logical = a.logical_tokens();
  return s;
}

}  // namespace

TEST_CASE("kv_fastdiv: exact quotient for every divisor 1..300 and numerators up to 2^31") {
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> big(0, 0x7fffffffu);
  for (std::uint32_t d = 1; d <= 300; ++d) {
    const frugal::detail::kv_fastdiv f(d);
    for (std::uint32_t n = 0; n < 5000; ++n) REQUIRE(f.div(n) == n / d);
    for (int i = 0; i < 2000; ++i) {
      const std::uint32_t n = big(rng);
      REQUIRE(f.div(n) == n / d);
    }
    REQUIRE(f.div(0x7fffffffu) == 0x7fffffffu / d);
  }
}

TEST_CASE("block_allocator: allocate, append, slots, accounting") {
  block_allocator a(8, 4);
  CHECK(a.page_size() == 4);
  CHECK(a.num_free_blocks() == 8);
  const seq_id s = a.allocate(6);  // 2 blocks, last holds 2
  CHECK(a.length(s) == 6);
  CHECK(a.blocks(s).size() == 2);
  CHECK(a.num_used_blocks() == 2);
  CHECK(a.tokens_stored() == 6);
  CHECK(a.wasted_slots() == 2);
  CHECK(a.waste_fraction() == doctest::Approx(0.25));
  CHECK_FALSE(a.append(s, 2).has_value());  // fills the last block, no new block
  CHECK(a.num_used_blocks() == 2);
  CHECK_FALSE(a.append(s, 1).has_value());  // new block
  CHECK(a.num_used_blocks() == 3);
  CHECK(a.length(s) == 9);
  const auto b = blocks_of(a, s);
  CHECK(a.slot(s, 0) == b[0] * 4);
  CHECK(a.slot(s, 5) == b[1] * 4 + 1);
  CHECK(a.slot(s, 8) == b[2] * 4);
  std::vector<std::int32_t> sl(3);
  a.slots(s, 6, 3, sl.data());
  CHECK(sl == std::vector<std::int32_t>{b[1] * 4 + 2, b[1] * 4 + 3, b[2] * 4});
  CHECK(a.can_allocate(20));
  CHECK_FALSE(a.can_allocate(21));
  CHECK(a.blocks_needed(s, 3) == 0);
  CHECK(a.blocks_needed(s, 4) == 1);
  CHECK(a.free(s) == 3);
  CHECK(a.num_free_blocks() == 8);
  CHECK(a.tokens_stored() == 0);
  CHECK_FALSE(a.contains(s));
  a.validate();
}

TEST_CASE("block_allocator: fork shares blocks; copy-on-write on a shared partial last block") {
  block_allocator a(16, 4);
  const seq_id p = a.allocate(6);  // blocks X (full), Y (2 of 4)
  const auto pb = blocks_of(a, p);
  const seq_id c = a.fork(p);
  CHECK(blocks_of(a, c) == pb);
  CHECK(a.ref_count(pb[0]) == 2);
  CHECK(a.ref_count(pb[1]) == 2);
  CHECK(a.num_used_blocks() == 2);
  CHECK(a.logical_tokens() == 12);
  CHECK(a.tokens_stored() == 6);
  CHECK(a.blocks_needed(c, 1) == 1);  // the copy
  const auto cow = a.append(c, 1);
  REQUIRE(cow.has_value());
  CHECK(cow->src == pb[1]);
  CHECK(cow->dst != pb[0]);
  CHECK(cow->dst != pb[1]);
  CHECK(blocks_of(a, c)[0] == pb[0]);
  CHECK(blocks_of(a, c)[1] == cow->dst);
  CHECK(a.ref_count(pb[1]) == 1);
  CHECK(a.tokens_stored() == 6 + 3);  // the copy holds 2 old + 1 new
  // the parent now owns its last block alone: no copy
  CHECK_FALSE(a.append(p, 1).has_value());
  CHECK(blocks_of(a, p) == pb);
  // appending past a full shared block needs no copy either
  const seq_id f = a.allocate(8);
  const seq_id g = a.fork(f);
  CHECK_FALSE(a.append(g, 3).has_value());
  CHECK(blocks_of(a, g)[0] == blocks_of(a, f)[0]);
  CHECK(blocks_of(a, g)[1] == blocks_of(a, f)[1]);
  // free returns exactly the unshared blocks
  CHECK(a.free(f) == 0);  // both its blocks are still held by g
  CHECK(a.free(g) == 3);
  CHECK(a.free(c) == 1);  // its copy; X still held by p
  CHECK(a.free(p) == 2);
  CHECK(a.num_free_blocks() == 16);
  a.validate();
}

TEST_CASE("block_allocator: exports (vLLM dense, FlashInfer CSR)") {
  block_allocator a(16, 4);
  const seq_id s0 = a.allocate(5), s1 = a.allocate(0), s2 = a.allocate(8);
  const std::vector<seq_id> seqs{s2, s0, s1};
  const std::int32_t mb = a.max_blocks(seqs);
  CHECK(mb == 2);
  std::vector<std::int32_t> table(seqs.size() * 3, -7), lens(3);
  a.export_dense(seqs, table.data(), 3, lens.data());
  CHECK(lens == std::vector<std::int32_t>{8, 5, 0});
  CHECK(table[0] == a.blocks(s2)[0]);
  CHECK(table[1] == a.blocks(s2)[1]);
  CHECK(table[2] == 0);
  CHECK(table[3] == a.blocks(s0)[0]);
  CHECK(table[6] == 0);
  FRUGAL_CHECK_THROWS_WITH(a.export_dense(seqs, table.data(), 1, lens.data()), "max_blocks is 1");
  std::vector<std::int32_t> indptr(4), idx(a.csr_nnz(seqs)), last(3);
  CHECK(idx.size() == 4);
  a.export_csr(seqs, indptr.data(), idx.data(), last.data());
  CHECK(indptr == std::vector<std::int32_t>{0, 2, 4, 4});
  CHECK(last == std::vector<std::int32_t>{4, 1, 0});
  CHECK(idx[2] == a.blocks(s0)[0]);
  // FlashInfer's length formula
  for (std::size_t i = 0; i < 3; ++i) {
    const std::int32_t pages = indptr[i + 1] - indptr[i];
    const std::int64_t len = pages ? (pages - 1) * 4 + last[i] : 0;
    CHECK(len == a.length(seqs[i]));
  }
}

TEST_CASE("block_allocator: errors name the operation and values") {
  FRUGAL_CHECK_THROWS_WITH(block_allocator(4, 0), "frugal::block_allocator: page_size (=0) must be in [1, 256]");
  FRUGAL_CHECK_THROWS_WITH(block_allocator(4, 257), "page_size (=257)");
  FRUGAL_CHECK_THROWS_WITH(block_allocator(-1, 16), "num_blocks (=-1)");
  FRUGAL_CHECK_THROWS_WITH(block_allocator(1 << 24, 256), "must be < 2^31");
  block_allocator a(4, 16);
  FRUGAL_CHECK_THROWS_WITH(a.allocate(65), "frugal::block_allocator::allocate: out of KV blocks: 65 tokens need 5");
  FRUGAL_CHECK_THROWS_WITH(a.allocate(-1), "tokens (=-1) must be >= 0");
  FRUGAL_CHECK_THROWS_WITH((void)a.append(3, 1), "frugal::block_allocator::append: sequence 3 does not exist");
  const seq_id s = a.allocate(10);
  FRUGAL_CHECK_THROWS_WITH((void)a.append(s, -2), "n (=-2) must be >= 0");
  FRUGAL_CHECK_THROWS_WITH((void)a.append(s, 60), "needs 4 new blocks of 16 tokens, 3 of 4 are free");
  FRUGAL_CHECK_THROWS_WITH(a.slot(s, 10), "position (=10) must be in [0, length=10)");
  FRUGAL_CHECK_THROWS_WITH(a.ref_count(4), "block (=4) must be in [0, 4)");
  a.free(s);
  FRUGAL_CHECK_THROWS_WITH(a.free(s), "frugal::block_allocator::free: sequence 0 does not exist");
  FRUGAL_CHECK_THROWS_WITH(a.fork(s), "frugal::block_allocator::fork: sequence 0 does not exist");
}

TEST_CASE("block_allocator: exhaustion leaves everything exactly as before (strong guarantee)") {
  block_allocator a(6, 4);
  const seq_id x = a.allocate(7);
  const seq_id y = a.fork(x);  // shares 2 blocks; last block shared and partial
  const seq_id z = a.allocate(9);
  std::vector<seq_id> live{x, y, z};
  CHECK(a.num_free_blocks() == 1);
  const snapshot before = take(a, live);
  FRUGAL_CHECK_THROWS_WITH((void)a.append(y, 6), "out of KV blocks");  // CoW 1 + 1 new > 1 free
  CHECK(take(a, live) == before);
  FRUGAL_CHECK_THROWS_WITH(a.allocate(5), "out of KV blocks");
  CHECK(take(a, live) == before);
  a.validate();
  CHECK(a.can_append(y, 1));  // exactly the copy
  CHECK_FALSE(a.can_append(y, 2));
  const auto cow = a.append(y, 1);
  CHECK(cow.has_value());
  CHECK(a.num_free_blocks() == 0);
  CHECK_FALSE(a.can_allocate(1));
  CHECK(a.can_allocate(0));
  a.validate();
}

// ------------------------------------------------------------------------------------------------------------------
// Randomized model test helpers: a REQUIRE only when the condition fails (doctest's per-assertion cost would
// dominate the run time otherwise).
#define ENSURE(...)                         \
  do {                                      \
    if (!(__VA_ARGS__)) REQUIRE(__VA_ARGS__); \
  } while (0)

// Randomized model test: the allocator against a model of token contents written through the slots it hands out.
// The storage is simulated (one int per slot); copy-on-write copies are applied to it as a caller would. After every
// operation: internal validate(), every live sequence reads back its tokens through its block table, ref counts
// equal occurrence counts, no block is both free and used, free + used = total, token counters match.

namespace {

struct model_run {
  std::int32_t blocks, page;
  int ops;
  std::uint64_t seed;
};

void run_model(const model_run& cfg, int& total_ops, int& exhausted, int& cows) {
  block_allocator a(cfg.blocks, cfg.page);
  const std::int32_t P = cfg.page;
  std::mt19937_64 rng(cfg.seed);
  std::vector<std::int32_t> store(static_cast<std::size_t>(cfg.blocks) * P, -1);
  std::map<seq_id, std::vector<std::int32_t>> content;  // the model: token values per sequence
  std::int32_t next_token = 0;

  auto live_ids = [&] {
    std::vector<seq_id> v;
    for (auto& kv : content) v.push_back(kv.first);
    return v;
  };
  auto write_tokens = [&](seq_id s, std::int64_t from) {
    auto& c = content[s];
    for (std::int64_t p = from; p < static_cast<std::int64_t>(c.size()); ++p)
      store[static_cast<std::size_t>(a.slot(s, p))] = c[static_cast<std::size_t>(p)];
  };
  auto pick = [&]() -> seq_id {
    auto it = content.begin();
    std::advance(it, static_cast<long>(rng() % content.size()));
    return it->first;
  };
  auto check_invariants = [&] {
    a.validate();
    std::vector<std::int32_t> occ(static_cast<std::size_t>(cfg.blocks), 0);
    std::vector<std::int32_t> fill(static_cast<std::size_t>(cfg.blocks), -1);
    std::int64_t logical = 0;
    ENSURE(a.num_sequences() == static_cast<std::int32_t>(content.size()));
    for (auto& [s, c] : content) {
      ENSURE(a.contains(s));
      ENSURE(a.length(s) == static_cast<std::int64_t>(c.size()));
      const auto bl = a.blocks(s);
      ENSURE(static_cast<std::int64_t>(bl.size()) == (static_cast<std::int64_t>(c.size()) + P - 1) / P);
      logical += static_cast<std::int64_t>(c.size());
      for (std::size_t i = 0; i < bl.size(); ++i) {
        const std::int32_t b = bl[i];
        ++occ[static_cast<std::size_t>(b)];
        const std::int32_t f =
            static_cast<std::int32_t>(std::min<std::int64_t>(P, static_cast<std::int64_t>(c.size()) - static_cast<std::int64_t>(i) * P));
        if (fill[static_cast<std::size_t>(b)] >= 0) ENSURE(fill[static_cast<std::size_t>(b)] == f);  // shared => same fill
        fill[static_cast<std::size_t>(b)] = f;
      }
      for (std::size_t p = 0; p < c.size(); ++p)
        ENSURE(store[static_cast<std::size_t>(a.slot(s, static_cast<std::int64_t>(p)))] == c[p]);
    }
    std::int32_t used = 0;
    std::int64_t stored = 0;
    for (std::int32_t b = 0; b < cfg.blocks; ++b) {
      ENSURE(a.ref_count(b) == occ[static_cast<std::size_t>(b)]);
      if (occ[static_cast<std::size_t>(b)] > 0) {
        ++used;
        stored += fill[static_cast<std::size_t>(b)];
      }
    }
    ENSURE(a.num_used_blocks() == used);
    ENSURE(a.num_free_blocks() + a.num_used_blocks() == a.num_blocks());
    ENSURE(a.tokens_stored() == stored);
    ENSURE(a.logical_tokens() == logical);
  };

  for (int op = 0; op < cfg.ops; ++op) {
    const int kind = static_cast<int>(rng() % 100);
    if (content.empty() || kind < 15) {  // allocate
      const std::int64_t n = static_cast<std::int64_t>(rng() % (3 * P + 2));
      const std::int64_t need = (n + P - 1) / P;
      if (need > a.num_free_blocks()) {
        const snapshot before = take(a, live_ids());
        CHECK_THROWS_AS(a.allocate(n), frugal::error);
        ENSURE(take(a, live_ids()) == before);
        REQUIRE_FALSE(a.can_allocate(n));
        ++exhausted;
      } else {
        ENSURE(a.can_allocate(n));
        const seq_id s = a.allocate(n);
        ENSURE(content.count(s) == 0);
        auto& c = content[s];
        for (std::int64_t i = 0; i < n; ++i) c.push_back(next_token++);
        write_tokens(s, 0);
      }
    } else if (kind < 60) {  // append (sometimes far too much)
      const seq_id s = pick();
      const std::int64_t n = kind < 57 ? static_cast<std::int64_t>(rng() % (P + 2))
                                       : static_cast<std::int64_t>(cfg.blocks) * P / 2 + static_cast<std::int64_t>(rng() % P);
      const auto& c = content[s];
      const std::int64_t len = static_cast<std::int64_t>(c.size());
      const auto bl = blocks_of(a, s);
      const bool shared_partial = n > 0 && len % P != 0 && a.ref_count(bl.back()) > 1;
      const std::int64_t need = n == 0 ? 0 : (len + n + P - 1) / P - static_cast<std::int64_t>(bl.size()) + (shared_partial ? 1 : 0);
      ENSURE(a.blocks_needed(s, n) == need);
      if (need > a.num_free_blocks()) {
        const snapshot before = take(a, live_ids());
        CHECK_THROWS_AS((void)a.append(s, n), frugal::error);
        ENSURE(take(a, live_ids()) == before);
        ++exhausted;
      } else {
        const auto cow = a.append(s, n);
        ENSURE(cow.has_value() == shared_partial);
        if (cow) {
          ++cows;
          ENSURE(cow->src == bl.back());
          ENSURE(a.ref_count(cow->dst) == 1);
          std::copy_n(store.begin() + static_cast<std::ptrdiff_t>(cow->src) * P, P,
                      store.begin() + static_cast<std::ptrdiff_t>(cow->dst) * P);  // the caller's block copy
        }
        auto& cc = content[s];
        for (std::int64_t i = 0; i < n; ++i) cc.push_back(next_token++);
        write_tokens(s, len);
      }
    } else if (kind < 78) {  // fork
      const seq_id s = pick();
      const std::int32_t free_before = a.num_free_blocks();
      const seq_id f = a.fork(s);
      ENSURE(a.num_free_blocks() == free_before);
      ENSURE(blocks_of(a, f) == blocks_of(a, s));
      content[f] = content[s];
    } else {  // free
      const seq_id s = pick();
      std::int32_t unshared = 0;
      for (std::int32_t b : a.blocks(s)) unshared += a.ref_count(b) == 1;
      const std::int32_t free_before = a.num_free_blocks();
      ENSURE(a.free(s) == unshared);
      ENSURE(a.num_free_blocks() == free_before + unshared);
      content.erase(s);
    }
    check_invariants();
    if (op % 997 == 0 && !content.empty()) {  // exports agree with the tables
      const auto ids = live_ids();
      const std::int32_t mb = a.max_blocks(ids);
      std::vector<std::int32_t> table(ids.size() * static_cast<std::size_t>(std::max(mb, 1))), lens(ids.size());
      a.export_dense(ids, table.data(), mb, lens.data());
      std::vector<std::int32_t> indptr(ids.size() + 1), idx(static_cast<std::size_t>(a.csr_nnz(ids))), last(ids.size());
      a.export_csr(ids, indptr.data(), idx.data(), last.data());
      for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto bl = a.blocks(ids[i]);
        ENSURE(lens[i] == a.length(ids[i]));
        ENSURE(indptr[i + 1] - indptr[i] == static_cast<std::int32_t>(bl.size()));
        for (std::size_t j = 0; j < bl.size(); ++j) {
          ENSURE(table[i * static_cast<std::size_t>(mb) + j] == bl[j]);
          ENSURE(idx[static_cast<std::size_t>(indptr[i]) + j] == bl[j]);
        }
        if (!bl.empty()) ENSURE(last[i] == a.length(ids[i]) - static_cast<std::int64_t>(bl.size() - 1) * P);
      }
    }
    ++total_ops;
  }
  for (auto& kv : content) a.free(kv.first);
  ENSURE(a.num_free_blocks() == cfg.blocks);
  ENSURE(a.tokens_stored() == 0);
  a.validate();
}

}  // namespace

TEST_CASE("block_allocator: randomized model test, >= 100k operations") {
  int total = 0, exhausted = 0, cows = 0;
  const model_run runs[] = {{96, 16, 40000, 1}, {300, 1, 25000, 2}, {48, 7, 25000, 3}, {10, 256, 15000, 4}};
  for (const auto& r : runs) {
    INFO("blocks=", r.blocks, " page=", r.page, " seed=", r.seed);
    run_model(r, total, exhausted, cows);
  }
  MESSAGE("operations: ", total, ", exhaustion throws: ", exhausted, ", copy-on-write copies: ", cows);
  CHECK(total >= 100000);
  CHECK(exhausted > 1000);
  CHECK(cows > 1000);
}
