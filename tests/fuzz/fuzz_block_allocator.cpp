// Fuzz target: the KV block allocator driven by fuzzed operation sequences against a reference model.
//
// The model keeps, per live sequence, its length and a list of model block ids that reproduces the sharing structure
// (fork shares, append to a shared partial last block copies). After every operation: allocator.validate() passes,
// lengths and used-block counts equal the model's, and the allocator's block ids map one-to-one onto the model's.
// A failing operation must throw frugal::error and change nothing (strong guarantee).
#include <frugal/kv/block_allocator.hpp>

#include <map>
#include <vector>

#include "fuzz_common.hpp"

namespace {
using frugal::block_allocator;
using seq_id = block_allocator::seq_id;

struct model {
  std::map<seq_id, std::pair<std::int64_t, std::vector<int>>> seqs;  // id -> (length, model blocks)
  std::map<int, int> refs;                                           // model block -> ref count
  int next_block = 0;
  std::int32_t page = 1;
  int new_block() {
    refs[next_block] = 1;
    return next_block++;
  }
  void drop(int b) {
    if (--refs[b] == 0) refs.erase(b);
  }
};

void check_same(const block_allocator& a, const model& m) {
  a.validate();
  FRUGAL_FUZZ_ASSERT(a.num_sequences() == static_cast<std::int32_t>(m.seqs.size()));
  FRUGAL_FUZZ_ASSERT(a.num_used_blocks() == static_cast<std::int32_t>(m.refs.size()));
  std::map<std::int32_t, int> a2m;
  std::map<int, std::int32_t> m2a;
  for (const auto& [id, st] : m.seqs) {
    FRUGAL_FUZZ_ASSERT(a.length(id) == st.first);
    const auto blocks = a.blocks(id);
    FRUGAL_FUZZ_ASSERT(blocks.size() == st.second.size());
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const auto [it1, new1] = a2m.emplace(blocks[i], st.second[i]);
      const auto [it2, new2] = m2a.emplace(st.second[i], blocks[i]);
      FRUGAL_FUZZ_ASSERT(it1->second == st.second[i] && it2->second == blocks[i], "sharing structure differs");
    }
  }
}

struct state_copy {  // what must not change when an operation throws
  std::map<seq_id, std::pair<std::int64_t, std::vector<std::int32_t>>> seqs;
  std::int32_t free_blocks;
  bool operator==(const state_copy&) const = default;
};
state_copy copy_state(const block_allocator& a, const model& m) {
  state_copy c{{}, a.num_free_blocks()};
  for (const auto& [id, st] : m.seqs) {
    const auto b = a.blocks(id);
    c.seqs[id] = {a.length(id), {b.begin(), b.end()}};
  }
  return c;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  frugal_fuzz::reader in(data, size);
  const std::int32_t blocks = 1 + in.u8() % 64;
  const std::int32_t page = 1 + in.u8() % 16;
  block_allocator a(blocks, page);
  model m;
  m.page = page;
  for (int step = 0; step < 512 && !in.done(); ++step) {
    const std::uint8_t op = in.u8() % 4;
    const std::uint8_t arg = in.u8();
    const state_copy before = copy_state(a, m);
    auto pick = [&]() -> seq_id {
      auto it = m.seqs.begin();
      std::advance(it, arg % m.seqs.size());
      return it->first;
    };
    try {
      if (op == 0) {  // allocate
        const std::int64_t tokens = arg % 80;
        const bool fits = (tokens + page - 1) / page <= a.num_free_blocks();
        const seq_id s = a.allocate(tokens);
        FRUGAL_FUZZ_ASSERT(fits, "allocate succeeded beyond capacity");
        auto& st = m.seqs[s];
        st.first = tokens;
        for (std::int64_t i = 0; i < (tokens + page - 1) / page; ++i) st.second.push_back(m.new_block());
      } else if (op == 1 && !m.seqs.empty()) {  // append
        const seq_id s = pick();
        const std::int64_t n = 1 + in.u8() % 40;
        auto& st = m.seqs[s];
        (void)a.append(s, n);
        if (st.first % page != 0 && m.refs[st.second.back()] > 1) {  // copy-on-write of the shared last block
          m.drop(st.second.back());
          st.second.back() = m.new_block();
        }
        st.first += n;
        while (static_cast<std::int64_t>(st.second.size()) * page < st.first) st.second.push_back(m.new_block());
      } else if (op == 2 && !m.seqs.empty()) {  // fork
        const seq_id s = pick();
        const seq_id f = a.fork(s);
        m.seqs[f] = m.seqs[s];
        for (int b : m.seqs[f].second) ++m.refs[b];
      } else if (op == 3 && !m.seqs.empty()) {  // free
        const seq_id s = pick();
        const std::int64_t unshared = [&] {
          std::int64_t c = 0;
          for (int b : m.seqs[s].second) c += m.refs[b] == 1;
          return c;
        }();
        const std::int32_t returned = a.free(s);
        FRUGAL_FUZZ_ASSERT(returned == unshared, "free returned a wrong block count");
        for (int b : m.seqs[s].second) m.drop(b);
        m.seqs.erase(s);
      }
    } catch (const frugal::error&) {
      FRUGAL_FUZZ_ASSERT(copy_state(a, m) == before, "a failed operation changed the allocator");
    }
    check_same(a, m);
  }
  return 0;
}
