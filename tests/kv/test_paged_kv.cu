// kv on CUDA vs the CPU reference: append / copy_blocks / gather (bitwise), fused append + decode == decode over the
// appended cache (bitwise, caches written), decode attention paged == contiguous
// (bitwise: one kernel template) and within one rounding of the naive double reference for f32/f16/bf16, head dims
// 64/80/96/128, group sizes 1..8 and 12, split-K auto/1/3/7 (and a max_seq_len below the real lengths), lengths 0, 1,
// page boundaries, long; prefill (causal and not); CUDA Graph capture with lengths changed between replays; errors;
// attention_params::kv_ahead behind a slow PDL predecessor that writes q and the new rows (bitwise the plain call).
#include <frugal/kv/block_allocator.hpp>
#include <frugal/kv/decode_attention.hpp>
#include <frugal/kv/paged_kv.hpp>

#include <cstdlib>

#include "common/cuda_test_util.cuh"
#include "kv_test_util.hpp"

using frugal::matrix_view;
using frugal_test::device_buffer;
using kv_test::same_bits;

namespace {

template <class T>
struct device_case {
  device_buffer<T> paged, k, v, q;
  device_buffer<std::int32_t> table, lens;
  explicit device_case(const kv_test::kv_case<T>& c)
      : paged(c.paged), k(c.k_src), v(c.v_src), q(c.q), table(c.table), lens(c.lens) {}
  frugal::paged_kv_table tab(const kv_test::kv_case<T>& c) const {
    return {table.data(), lens.data(), c.batch, c.max_blocks};
  }
};

void device_sync() {
  FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
}

}  // namespace

TEST_CASE_TEMPLATE("cuda kv_append / kv_gather / kv_copy_blocks equal the CPU bit for bit", T, float, frugal::half,
                   frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  for (const std::int32_t page : {1, 16, 7}) {
    INFO("page=", page);
    auto c = kv_test::make_case<T>(50 + static_cast<std::uint64_t>(page), 2, 1, 64, page, {1, 0, 16, 17, 100, 33});
    device_case<T> d(c);
    // gather: GPU vs CPU
    std::vector<T> ok(c.k_src.size(), frugal::from_float<T>(-5.f)), ov = ok;
    device_buffer<T> gk(ok), gv(ov);
    frugal::kv_gather(frugal::cuda, c.paged_view(d.paged.data()), d.tab(c), c.contig_view(gk.data(), gv.data()));
    frugal::kv_gather(frugal::cpu, c.paged_view(c.paged.data()), {c.table.data(), c.lens.data(), c.batch, c.max_blocks},
                      c.contig_view(ok.data(), ov.data()));
    device_sync();
    CHECK(same_bits(gk.download(), ok));
    CHECK(same_bits(gv.download(), ov));
  }
  // append: vector path (aligned) and element path (odd row stride), negative and out-of-range slots skipped
  const std::int32_t NB = 9, P = 16, H = 2, D = 64, n = 40;
  for (const std::int64_t ld : {std::int64_t{H * D}, std::int64_t{H * D + 3}}) {
    INFO("ld=", ld);
    auto cache =
        frugal_test::random_vector<T>(static_cast<std::size_t>(frugal::paged_kv_view<T>::elements(NB, P, H, D)), 3);
    const auto kin = frugal_test::random_vector<T>(static_cast<std::size_t>(n * ld), 4);
    const auto vin = frugal_test::random_vector<T>(static_cast<std::size_t>(n * ld), 5);
    std::vector<std::int32_t> slots(n);
    for (int i = 0; i < n; ++i) slots[static_cast<std::size_t>(i)] = (i * 37) % (NB * P);
    slots[3] = -1;
    device_buffer<T> dc(cache), dk(kin), dv(vin);
    device_buffer<std::int32_t> ds(slots);
    frugal::kv_append(frugal::cuda, frugal::paged_kv_view<T>(dc.data(), NB, P, H, D),
                      matrix_view<const T>(dk.data(), n, H * D, ld), matrix_view<const T>(dv.data(), n, H * D, ld),
                      ds.data());
    frugal::kv_append(frugal::cpu, frugal::paged_kv_view<T>(cache.data(), NB, P, H, D),
                      matrix_view<const T>(kin.data(), n, H * D, ld), matrix_view<const T>(vin.data(), n, H * D, ld),
                      slots.data());
    device_sync();
    CHECK(same_bits(dc.download(), cache));
    // copy blocks over 3 layers
    const std::int32_t L = 3;
    auto multi =
        frugal_test::random_vector<T>(static_cast<std::size_t>(frugal::paged_kv_view<T>::elements(NB, P, H, D, L)), 6);
    device_buffer<T> dm(multi);
    const std::vector<frugal::block_copy> copies{{1, 4}, {2, 0}, {8, 7}};
    device_buffer<frugal::block_copy> dcp(copies);
    frugal::kv_copy_blocks(frugal::cuda, frugal::paged_kv_view<T>(dm.data(), NB, P, H, D, L), dcp.data(), 3);
    frugal::kv_copy_blocks(frugal::cpu, frugal::paged_kv_view<T>(multi.data(), NB, P, H, D, L), copies.data(), 3);
    device_sync();
    CHECK(same_bits(dm.download(), multi));
  }
}

namespace {

template <class T>
void check_decode_cuda(std::uint64_t seed, std::int32_t kv_heads, std::int32_t group, std::int32_t D, std::int32_t page,
                       const std::vector<std::int32_t>& lens, std::int32_t splits, std::int32_t max_seq_len = 0) {
  auto c = kv_test::make_case<T>(seed, kv_heads, group, D, page, lens);
  INFO("T=", frugal::dtype_traits<T>::name, " kv_heads=", kv_heads, " group=", group, " D=", D, " page=", page,
       " splits=", splits, " max_seq_len=", max_seq_len);
  device_case<T> d(c);
  const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * D;
  frugal::attention_params p;
  p.q_heads = c.q_heads;
  p.num_splits = splits;
  p.max_seq_len = max_seq_len ? max_seq_len : c.max_len;  // the same plan for both layouts: bitwise comparable
  const std::size_t wsb = frugal::decode_attention_workspace_bytes<T>(frugal::cuda, c.batch, c.q_heads, c.kv_heads, D,
                                                                      p.max_seq_len, splits);
  const std::size_t wsb_cap = frugal::decode_attention_workspace_bytes<T>(frugal::cuda, c.batch, c.q_heads, c.kv_heads,
                                                                          D, c.max_blocks * page, splits);
  device_buffer<unsigned char> ws(std::max<std::size_t>(wsb, wsb_cap) + 1);
  ws.zero();  // split-K workspace: zero-filled once (merge counters)
  const frugal::workspace w{ws.data(), ws.size()};
  std::vector<T> nanfill(c.q.size(), frugal::from_float<T>(std::nanf("")));
  device_buffer<T> out_p(nanfill), out_c(nanfill), out_d(nanfill), out_g(nanfill);
  const auto qv = matrix_view<const T>(d.q.data(), c.batch, cols);
  frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(d.paged.data()), d.tab(c),
                                 matrix_view<T>(out_p.data(), c.batch, cols), p, w);
  frugal::decode_attention(frugal::cuda, qv, c.contig_view(d.k.data(), d.v.data()), d.lens.data(),
                           matrix_view<T>(out_c.data(), c.batch, cols), p, w);
  frugal::attention_params pd = p;
  pd.max_seq_len = 0;  // plan from the table's capacity
  frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(d.paged.data()), d.tab(c),
                                 matrix_view<T>(out_d.data(), c.batch, cols), pd, w);
  frugal::attention_params pg = p;
  pg.cluster_merge = false;  // 2..8 splits on sm_90 merge through clusters by default: the global-memory merge too
  frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(d.paged.data()), d.tab(c),
                                 matrix_view<T>(out_g.data(), c.batch, cols), pg, w);
  device_sync();
  const auto gp = out_p.download(), gc = out_c.download();
  CHECK(same_bits(gp, gc));  // one kernel template, same plan: paging changes addresses only
  const auto ref = kv_test::naive_attention(c, c.q, kv_test::iota_rows(c.batch), c.lens, 1.0 / std::sqrt(double(D)));
  CHECK(kv_test::tol_ratio(gp, ref) <= 1.0);
  CHECK(kv_test::tol_ratio(out_d.download(), ref) <= 1.0);
  CHECK(kv_test::tol_ratio(out_g.download(), ref) <= 1.0);
}

}  // namespace

TEST_CASE_TEMPLATE("cuda decode attention: paged == contiguous, vs naive; head dims, groups 1..8 and 12, split-K", T,
                   float, frugal::half, frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  std::uint64_t seed = 1000;
  const std::vector<std::int32_t> lens{1, 16, 17, 0, 47, 130, 64, 300};
  // FRUGAL_KV_QUICK (for compute-sanitizer runs): groups 1, 4, 7, 12 and splits auto / 3 only
  const bool quick = std::getenv("FRUGAL_KV_QUICK") != nullptr;
  const std::vector<std::int32_t> groups =
      quick ? std::vector<std::int32_t>{1, 4, 7, 12} : std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 12};
  const std::vector<std::int32_t> split_list =
      quick ? std::vector<std::int32_t>{0, 3} : std::vector<std::int32_t>{0, 1, 3};
  for (const std::int32_t D : {64, 80, 96, 128})
    for (const std::int32_t g : groups)
      for (const std::int32_t splits : split_list) check_decode_cuda<T>(++seed, g % 2 ? 2 : 1, g, D, 16, lens, splits);
  // long sequences: auto split-K with many tiles per split, pages 1 and 256, splits 7, max_seq_len below the truth
  check_decode_cuda<T>(++seed, 2, 4, 128, 16, {3000, 1, 2049}, 0);
  check_decode_cuda<T>(++seed, 1, 6, 64, 1, {700, 333}, 7);
  check_decode_cuda<T>(++seed, 3, 1, 64, 256, {257, 1000, 256}, 0);
  check_decode_cuda<T>(++seed, 2, 2, 128, 16, {900, 901, 17}, 0, 100);
  // forced split counts 2, 5, 8, 12 and 64 (-> 63 splits of 32 keys: the in-kernel merge of many partials), with a
  // short and an empty sequence in the batch (splits past their length are empty); D64 MHA with 12 splits
  for (const std::int32_t splits :
       quick ? std::vector<std::int32_t>{5, 64} : std::vector<std::int32_t>{2, 5, 8, 12, 64})
    check_decode_cuda<T>(++seed, 2, 4, 128, 16, {2000, 5, 0}, splits);
  if (!quick) check_decode_cuda<T>(++seed, 3, 1, 64, 16, {1500, 700}, 12);
}

// Cache rows past the lengths may hold NaN (uninitialized memory can hold NaN patterns); a kernel that reads them
// (e.g. copies issued before seq_lens is known, tried in the sixth session: docs/kv.md) must keep them out of the
// output (0 * NaN = NaN). The other tests fill the storage with finite garbage, which cannot show such a leak.
TEST_CASE_TEMPLATE("cuda decode attention: NaN in the cache past the lengths never reaches the output", T, float,
                   frugal::half, frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  std::uint64_t seed = 9000;
  for (const std::int32_t D : {64, 128})
    for (const std::int32_t group : {1, 4})
      for (const std::int32_t splits : {0, 1, 3}) {
        auto c = kv_test::make_case<T>(++seed, 2, group, D, 16, {1, 17, 100, 1000, 0, 33});
        INFO("T=", frugal::dtype_traits<T>::name, " D=", D, " group=", group, " splits=", splits);
        const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * D;
        frugal::attention_params p;
        p.q_heads = c.q_heads;
        p.num_splits = splits;
        p.max_seq_len = c.max_len;
        device_buffer<unsigned char> ws(frugal::decode_attention_workspace_bytes<T>(frugal::cuda, c.batch, c.q_heads,
                                                                                    c.kv_heads, D, c.max_len, splits) +
                                        1);
        ws.zero();
        const frugal::workspace w{ws.data(), ws.size()};
        auto run = [&](const std::vector<T>& paged, const std::vector<T>& k, const std::vector<T>& v) {
          device_case<T> d(c);
          device_buffer<T> dp(paged), dk(k), dv(v), op(c.q), oc(c.q);
          const auto qv = matrix_view<const T>(d.q.data(), c.batch, cols);
          frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(dp.data()), d.tab(c),
                                         matrix_view<T>(op.data(), c.batch, cols), p, w);
          frugal::decode_attention(frugal::cuda, qv, c.contig_view(dk.data(), dv.data()), d.lens.data(),
                                   matrix_view<T>(oc.data(), c.batch, cols), p, w);
          device_sync();
          return std::make_pair(op.download(), oc.download());
        };
        const auto clean = run(c.paged, c.k_src, c.v_src);
        // poison every cache row that holds no token below its sequence's length
        const T nan = frugal::from_float<T>(std::nanf(""));
        std::vector<T> paged(c.paged.size(), nan), k(c.k_src.size(), nan), v(c.v_src.size(), nan);
        const auto src = c.paged_view(c.paged.data());
        const auto dst = c.paged_view(paged.data());
        for (std::int32_t b = 0; b < c.batch; ++b)
          for (std::int32_t t = 0; t < c.lens[static_cast<std::size_t>(b)]; ++t) {
            const std::int32_t blk = c.table[static_cast<std::size_t>(b) * c.max_blocks + t / c.page];
            std::copy(src.k(blk, t % c.page), src.k(blk, t % c.page) + c.row(), dst.k(blk, t % c.page));
            std::copy(src.v(blk, t % c.page), src.v(blk, t % c.page) + c.row(), dst.v(blk, t % c.page));
            const std::size_t o = (static_cast<std::size_t>(b) * c.max_len + t) * c.row();
            std::copy(c.k_src.begin() + static_cast<std::ptrdiff_t>(o),
                      c.k_src.begin() + static_cast<std::ptrdiff_t>(o + c.row()),
                      k.begin() + static_cast<std::ptrdiff_t>(o));
            std::copy(c.v_src.begin() + static_cast<std::ptrdiff_t>(o),
                      c.v_src.begin() + static_cast<std::ptrdiff_t>(o + c.row()),
                      v.begin() + static_cast<std::ptrdiff_t>(o));
          }
        const auto poisoned = run(paged, k, v);
        CHECK(same_bits(poisoned.first, clean.first));
        CHECK(same_bits(poisoned.second, clean.second));
        CHECK(same_bits(clean.first, clean.second));
      }
}

TEST_CASE_TEMPLATE("cuda prefill attention over the paged cache equals the naive reference", T, float, frugal::half,
                   frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  const std::vector<std::int32_t> lens{5, 20, 333, 1};
  const std::vector<std::int32_t> n_new{5, 3, 100, 1};
  std::vector<std::int32_t> indptr{0};
  for (auto n : n_new) indptr.push_back(indptr.back() + n);
  const std::int32_t rows = indptr.back();
  device_buffer<std::int32_t> d_indptr(indptr);
  for (const std::int32_t D : {64, 128})
    for (const std::int32_t group : {1, 4, 7}) {
      auto c = kv_test::make_case<T>(70 + static_cast<std::uint64_t>(group + D), 2, group, D, 16, lens, rows);
      device_case<T> d(c);
      const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * D;
      for (const bool causal : {true, false}) {
        INFO("D=", D, " group=", group, " causal=", causal);
        frugal::attention_params p;
        p.q_heads = c.q_heads;
        p.causal = causal;
        device_buffer<T> out_p(c.q.size()), out_c(c.q.size());
        frugal::paged_prefill_attention(frugal::cuda, matrix_view<const T>(d.q.data(), rows, cols),
                                        c.paged_view(d.paged.data()), d.tab(c), d_indptr.data(),
                                        matrix_view<T>(out_p.data(), rows, cols), p);
        frugal::prefill_attention(frugal::cuda, matrix_view<const T>(d.q.data(), rows, cols),
                                  c.contig_view(d.k.data(), d.v.data()), d.lens.data(), d_indptr.data(),
                                  matrix_view<T>(out_c.data(), rows, cols), p);
        device_sync();
        std::vector<std::int32_t> rseq, rlen;
        for (std::int32_t b = 0; b < c.batch; ++b)
          for (std::int32_t i = 0; i < n_new[static_cast<std::size_t>(b)]; ++i) {
            rseq.push_back(b);
            rlen.push_back(causal ? lens[static_cast<std::size_t>(b)] - n_new[static_cast<std::size_t>(b)] + i + 1
                                  : lens[static_cast<std::size_t>(b)]);
          }
        const auto ref = kv_test::naive_attention(c, c.q, rseq, rlen, 1.0 / std::sqrt(double(D)));
        const auto gp = out_p.download();
        CHECK(kv_test::tol_ratio(gp, ref) <= 1.0);
        CHECK(kv_test::tol_ratio(out_c.download(), ref) <= 1.0);
      }
    }
}

TEST_CASE(
    "cuda split-K decode: one workspace (zero-filled once) shared by calls of different shapes and split counts") {
  FRUGAL_REQUIRE_GPU();
  using T = frugal::half;
  // the in-kernel merge leaves its counters at zero after every call: results equal those of a fresh workspace
  auto c = kv_test::make_case<T>(4242, 2, 4, 128, 16, {3000, 77, 1500});
  device_case<T> d(c);
  const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * 128;
  std::size_t wsb = 0;
  for (std::int32_t rows : {1, 3})
    for (std::int32_t splits : {0, 5, 64})
      wsb = std::max(wsb, frugal::decode_attention_workspace_bytes<T>(frugal::cuda, rows, c.q_heads, c.kv_heads, 128,
                                                                      c.max_len, splits));
  device_buffer<unsigned char> shared(wsb);
  shared.zero();
  std::vector<std::vector<T>> first;
  for (int pass = 0; pass < 2; ++pass) {
    std::size_t idx = 0;
    for (std::int32_t rows : {1, 3, 1})
      for (std::int32_t splits : {0, 64, 5}) {
        INFO("pass=", pass, " rows=", rows, " splits=", splits);
        frugal::attention_params p;
        p.q_heads = c.q_heads;
        p.num_splits = splits;
        p.max_seq_len = c.max_len;
        const std::size_t need = frugal::decode_attention_workspace_bytes<T>(frugal::cuda, rows, c.q_heads, c.kv_heads,
                                                                             128, c.max_len, splits);
        device_buffer<unsigned char> fresh(need + 16);
        fresh.zero();
        device_buffer<T> o1(static_cast<std::size_t>(rows * cols)), o2(static_cast<std::size_t>(rows * cols));
        const auto qv = matrix_view<const T>(d.q.data(), rows, cols);
        const frugal::paged_kv_table tab{d.tab(c).block_table, d.tab(c).seq_lens, rows, d.tab(c).max_blocks};
        frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(d.paged.data()), tab,
                                       matrix_view<T>(o1.data(), rows, cols), p, frugal::workspace{shared.data(), wsb});
        frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(d.paged.data()), tab,
                                       matrix_view<T>(o2.data(), rows, cols), p,
                                       frugal::workspace{fresh.data(), fresh.size()});
        device_sync();
        const auto g1 = o1.download();
        CHECK(same_bits(g1, o2.download()));
        if (pass == 0)
          first.push_back(g1);
        else
          CHECK(same_bits(g1, first[idx]));  // the same call on the reused workspace, a pass later
        ++idx;
      }
  }
}

TEST_CASE("cuda decode step inside a CUDA Graph: lengths and tables change in device memory between replays") {
  FRUGAL_REQUIRE_GPU();
  using T = frugal::half;
  const std::int32_t H = 4, G = 3, D = 128, P = 16, B = 3, NB = 400, MAXB = 100;
  frugal::block_allocator alloc(NB, P);
  std::vector<frugal::block_allocator::seq_id> seqs;
  for (std::int32_t len : {100, 1, 700}) seqs.push_back(alloc.allocate(len));
  auto cache =
      frugal_test::random_vector<T>(static_cast<std::size_t>(frugal::paged_kv_view<T>::elements(NB, P, H, D)), 21);
  device_buffer<T> dcache(cache);
  const frugal::paged_kv_view<T> view(dcache.data(), NB, P, H, D);
  device_buffer<std::int32_t> dtable(static_cast<std::size_t>(B * MAXB)), dlens(B), dslots(B);
  device_buffer<T> q(frugal_test::random_vector<T>(static_cast<std::size_t>(B * H * G * D), 22));
  device_buffer<T> knew(static_cast<std::size_t>(B * H * D)), vnew(static_cast<std::size_t>(B * H * D));
  device_buffer<T> out(static_cast<std::size_t>(B * H * G * D));
  frugal::attention_params p;
  p.q_heads = H * G;
  p.max_seq_len = MAXB * P;
  p.num_splits = 0;  // auto: the plan (occupancy query) is made during capture too
  const std::size_t wsb = frugal::decode_attention_workspace_bytes<T>(frugal::cuda, B, H * G, H, D, MAXB * P);
  REQUIRE(wsb > 0);
  CHECK(frugal::decode_attention_num_splits<T>(frugal::cuda, B, H * G, H, D, MAXB * P) > 1);
  device_buffer<unsigned char> ws(wsb);
  ws.zero();  // split-K workspace: zero-filled once (merge counters)
  cudaStream_t s;
  FRUGAL_CUDA_CHECK(cudaStreamCreate(&s), "test");
  const auto tag = frugal::cuda.on(s);
  const frugal::paged_kv_table tab{dtable.data(), dlens.data(), B, MAXB};
  cudaGraph_t graph;
  FRUGAL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "test");
  frugal::kv_append(tag, view, matrix_view<const T>(knew.data(), B, H * D), matrix_view<const T>(vnew.data(), B, H * D),
                    dslots.data());
  frugal::paged_decode_attention(tag, matrix_view<const T>(q.data(), B, H * G * D), view, tab,
                                 matrix_view<T>(out.data(), B, H * G * D), p, frugal::workspace{ws.data(), ws.size()});
  FRUGAL_CUDA_CHECK(cudaStreamEndCapture(s, &graph), "test");
  cudaGraphExec_t exec;
  FRUGAL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0), "test");
  for (int step = 0; step < 3; ++step) {
    INFO("step=", step);
    // host: one new token per sequence (copy-on-write never happens here: no forks)
    std::vector<std::int32_t> slots;
    for (auto sq : seqs) {
      REQUIRE_FALSE(alloc.append(sq, 1 + step * 37).has_value());  // grow by a varying amount
      slots.push_back(alloc.slot(sq, alloc.length(sq) - 1));
    }
    std::vector<std::int32_t> table(static_cast<std::size_t>(B * MAXB)), lens(B);
    alloc.export_dense(seqs, table.data(), MAXB, lens.data());
    dtable.upload(table);
    dlens.upload(lens);
    dslots.upload(slots);
    const auto kn =
        frugal_test::random_vector<T>(static_cast<std::size_t>(B * H * D), 30 + static_cast<std::uint64_t>(step));
    const auto vn =
        frugal_test::random_vector<T>(static_cast<std::size_t>(B * H * D), 40 + static_cast<std::uint64_t>(step));
    knew.upload(kn);
    vnew.upload(vn);
    FRUGAL_CUDA_CHECK(cudaGraphLaunch(exec, s), "test");
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(s), "test");
    // CPU: the same step
    frugal::kv_append(frugal::cpu, frugal::paged_kv_view<T>(cache.data(), NB, P, H, D),
                      matrix_view<const T>(kn.data(), B, H * D), matrix_view<const T>(vn.data(), B, H * D),
                      slots.data());
    const auto qh = q.download();
    std::vector<T> ref(static_cast<std::size_t>(B * H * G * D));
    frugal::paged_decode_attention(frugal::cpu, matrix_view<const T>(qh.data(), B, H * G * D),
                                   frugal::paged_kv_view<const T>(cache.data(), NB, P, H, D),
                                   {table.data(), lens.data(), B, MAXB}, matrix_view<T>(ref.data(), B, H * G * D), p);
    const auto got = out.download();
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::abs(double(frugal::to_float(got[i])) - double(frugal::to_float(ref[i]))));
    CHECK(worst <= 2e-3);  // two independent f16 roundings of values |x| < 2
    CHECK(same_bits(dcache.download(), cache));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

namespace {

//! The previous kernel of a PDL chain that is slow to write its output: it lets its dependents launch at once
//! (griddepcontrol.launch_dependents), sleeps ~`ns` nanoseconds, then copies n[i] bytes src[i] -> dst[i] (i < 3).
struct slow_copies {
  const unsigned char* src[3];
  unsigned char* dst[3];
  std::size_t n[3];
};
__global__ void slow_copy_kernel(slow_copies c, unsigned long long ns) {
  frugal::detail::trigger_dependents();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
  for (int i = 0; i < 3; ++i)
    for (std::size_t j = blockIdx.x * blockDim.x + threadIdx.x; j < c.n[i]; j += gridDim.x * blockDim.x)
      c.dst[i][j] = c.src[i][j];
}

//! attention_params::kv_ahead: the fused append + decode (paged and contiguous) as the dependent of a kernel that
//! writes q and the new k/v rows only after sleeping 20 us, into buffers that held garbage (0x7b bytes): the outputs
//! must be bitwise those of the plain call (`ref`), and the caches written as without kv_ahead. Reading q or the new
//! rows before griddepcontrol.wait would take the garbage.
template <class T>
void check_kv_ahead_chain(kv_test::kv_case<T>& c, const frugal::attention_params& p0, const frugal::workspace& w,
                          const device_case<T>& d, const std::vector<T>& kn_h, const std::vector<T>& vn_h,
                          std::int64_t ld, const std::vector<T>& ref) {
  frugal::attention_params p = p0;
  p.kv_ahead = true;
  const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * c.head_dim;
  device_buffer<T> q_src(c.q), kn_src(kn_h), vn_src(vn_h);
  for (const bool paged : {true, false}) {
    INFO("kv_ahead chain, paged=", paged);
    auto pc = c.paged, k = c.k_src, v = c.v_src;
    kv_test::clobber_last(c, pc, k, v, 37.f);
    device_buffer<T> dp(pc), dk(k), dv(v), q(c.q.size()), kn(kn_h.size()), vn(vn_h.size()), out(c.q.size());
    for (auto* b : {&q, &kn, &vn}) FRUGAL_CUDA_CHECK(cudaMemset(b->data(), 0x7b, b->size() * sizeof(T)), "test");
    device_sync();
    slow_copies sc{};
    const device_buffer<T>* from[3] = {&q_src, &kn_src, &vn_src};
    device_buffer<T>* to[3] = {&q, &kn, &vn};
    for (int i = 0; i < 3; ++i) {
      sc.src[i] = reinterpret_cast<const unsigned char*>(from[i]->data());
      sc.dst[i] = reinterpret_cast<unsigned char*>(to[i]->data());
      sc.n[i] = from[i]->size() * sizeof(T);
    }
    slow_copy_kernel<<<4, 128>>>(sc, 20000);
    const auto qv = matrix_view<const T>(q.data(), c.batch, cols);
    const auto knv = matrix_view<const T>(kn.data(), c.batch, c.row(), ld);
    const auto vnv = matrix_view<const T>(vn.data(), c.batch, c.row(), ld);
    if (paged)
      frugal::paged_append_decode_attention(frugal::cuda, qv, knv, vnv, c.paged_view(dp.data()), d.tab(c),
                                            matrix_view<T>(out.data(), c.batch, cols), p, w);
    else
      frugal::append_decode_attention(frugal::cuda, qv, knv, vnv, c.contig_view(dk.data(), dv.data()), d.lens.data(),
                                      matrix_view<T>(out.data(), c.batch, cols), p, w);
    device_sync();
    CHECK(same_bits(out.download(), ref));
    if (paged) CHECK(same_bits(dp.download(), c.paged));
    else {
      CHECK(same_bits(dk.download(), c.k_src));
      CHECK(same_bits(dv.download(), c.v_src));
    }
  }
}

//! Fused append + decode on CUDA: the new tokens' cache rows are clobbered; the fused op must restore them (caches
//! bit-equal to the original) and equal decode over the original cache bit for bit (same plan). `graph`: the paged
//! call is captured in a CUDA Graph and replayed.
template <class T>
void check_append_decode_cuda(std::uint64_t seed, std::int32_t kv_heads, std::int32_t group, std::int32_t D,
                              std::int32_t page, const std::vector<std::int32_t>& lens, std::int32_t splits,
                              bool graph = false, bool ahead = false) {
  auto c = kv_test::make_case<T>(seed, kv_heads, group, D, page, lens);
  INFO("T=", frugal::dtype_traits<T>::name, " kv_heads=", kv_heads, " group=", group, " D=", D, " page=", page,
       " splits=", splits, " graph=", graph);
  const std::int64_t cols = static_cast<std::int64_t>(c.q_heads) * D, ld = 3 * c.row() + 8;
  device_case<T> d(c);
  const auto kn_h = kv_test::new_rows(c, c.k_src, ld), vn_h = kv_test::new_rows(c, c.v_src, ld);
  device_buffer<T> kn(kn_h), vn(vn_h);
  frugal::attention_params p;
  p.q_heads = c.q_heads;
  p.num_splits = splits;
  p.max_seq_len = c.max_len;
  const std::size_t wsb =
      frugal::decode_attention_workspace_bytes<T>(frugal::cuda, c.batch, c.q_heads, c.kv_heads, D, c.max_len, splits);
  device_buffer<unsigned char> ws(wsb + 16);
  ws.zero();  // split-K workspace: zero-filled once (merge counters)
  const frugal::workspace w{ws.data(), ws.size()};
  const auto qv = matrix_view<const T>(d.q.data(), c.batch, cols);
  device_buffer<T> ref(c.q.size()), out_p(c.q.size()), out_c(c.q.size());
  frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(d.paged.data()), d.tab(c),
                                 matrix_view<T>(ref.data(), c.batch, cols), p, w);
  device_sync();
  auto paged = c.paged, k = c.k_src, v = c.v_src;
  kv_test::clobber_last(c, paged, k, v, 37.f);
  device_buffer<T> dp(paged), dk(k), dv(v);
  const auto knv = matrix_view<const T>(kn.data(), c.batch, c.row(), ld);
  const auto vnv = matrix_view<const T>(vn.data(), c.batch, c.row(), ld);
  auto fused_paged = [&](cudaStream_t s) {
    frugal::paged_append_decode_attention(frugal::cuda.on(s), qv, knv, vnv, c.paged_view(dp.data()), d.tab(c),
                                          matrix_view<T>(out_p.data(), c.batch, cols), p, w);
  };
  if (graph) {
    cudaStream_t s;
    FRUGAL_CUDA_CHECK(cudaStreamCreate(&s), "test");
    cudaGraph_t g;
    FRUGAL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "test");
    fused_paged(s);
    FRUGAL_CUDA_CHECK(cudaStreamEndCapture(s, &g), "test");
    cudaGraphExec_t exec;
    FRUGAL_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0), "test");
    for (int r = 0; r < 2; ++r) FRUGAL_CUDA_CHECK(cudaGraphLaunch(exec, s), "test");
    FRUGAL_CUDA_CHECK(cudaStreamSynchronize(s), "test");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    cudaStreamDestroy(s);
  } else {
    fused_paged(nullptr);
  }
  frugal::append_decode_attention(frugal::cuda, qv, knv, vnv, c.contig_view(dk.data(), dv.data()), d.lens.data(),
                                  matrix_view<T>(out_c.data(), c.batch, cols), p, w);
  device_sync();
  device_buffer<T> out_cd(c.q.size());  // plain decode over the contiguous cache the fused call wrote
  frugal::decode_attention(frugal::cuda, qv, frugal::contiguous_kv_view<const T>(c.contig_view(dk.data(), dv.data())),
                           d.lens.data(), matrix_view<T>(out_cd.data(), c.batch, cols), p, w);
  device_sync();
  const auto r = ref.download();
  CHECK(same_bits(out_p.download(), r));
  CHECK(same_bits(out_c.download(), r));
  CHECK(same_bits(out_cd.download(), r));
  CHECK(same_bits(dp.download(), c.paged));
  CHECK(same_bits(dk.download(), c.k_src));
  CHECK(same_bits(dv.download(), c.v_src));
  if (ahead) check_kv_ahead_chain(c, p, w, d, kn_h, vn_h, ld, r);
}

}  // namespace

TEST_CASE_TEMPLATE("cuda fused append + decode == decode over the appended cache; caches written; kv_ahead", T, float,
                   frugal::half, frugal::bfloat16) {
  FRUGAL_REQUIRE_GPU();
  std::uint64_t seed = 5000;
  const bool quick = std::getenv("FRUGAL_KV_QUICK") != nullptr;
  for (const std::int32_t D : {64, 80, 96, 128})
    for (const std::int32_t g : {1, 4, 7, 12})
      for (const std::int32_t splits : quick ? std::vector<std::int32_t>{0} : std::vector<std::int32_t>{0, 1, 3})
        check_append_decode_cuda<T>(++seed, g % 2 ? 2 : 1, g, D, 16, {1, 16, 17, 0, 47, 130, 64, 300}, splits,
                                    false, /*ahead=*/D != 80);
  check_append_decode_cuda<T>(++seed, 2, 4, 128, 16, {3000, 1, 2049}, 0);
  check_append_decode_cuda<T>(++seed, 1, 6, 64, 1, {700, 333}, 7, false, true);
  check_append_decode_cuda<T>(++seed, 3, 1, 64, 256, {257, 1000, 256}, 0, true);
  check_append_decode_cuda<T>(++seed, 2, 3, 128, 16, {900, 5, 17}, 0, true);
}

TEST_CASE("cuda attention errors") {
  FRUGAL_REQUIRE_GPU();
  auto c = kv_test::make_case<frugal::half>(5, 2, 2, 64, 16, {500, 20});
  device_case<frugal::half> d(c);
  device_buffer<frugal::half> out(c.q.size());
  frugal::attention_params p;
  p.q_heads = 4;
  const auto qv = matrix_view<const frugal::half>(d.q.data(), 2, 4 * 64);
  const auto ov = matrix_view<frugal::half>(out.data(), 2, 4 * 64);
  p.num_splits = 4;
  FRUGAL_CHECK_THROWS_WITH(frugal::paged_decode_attention(frugal::cuda, qv, c.paged_view(d.paged.data()), d.tab(c), ov,
                                                          p, frugal::workspace{d.table.data(), 16}),
                           "frugal::paged_decode_attention: workspace too small: 16 bytes given");
  auto c32 = kv_test::make_case<frugal::half>(6, 2, 1, 32, 16, {5});
  device_case<frugal::half> d32(c32);
  p.q_heads = 2;
  p.num_splits = 1;
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_decode_attention(frugal::cuda, matrix_view<const frugal::half>(d32.q.data(), 1, 64),
                                     c32.paged_view(d32.paged.data()), d32.tab(c32),
                                     matrix_view<frugal::half>(out.data(), 1, 64), p),
      "head_dim (=32) is not supported on CUDA; supported: 64, 80, 96, 128");
  // fused append: k_new / v_new must allow 16-byte vector copies
  p.q_heads = 4;
  p.num_splits = 0;
  device_buffer<frugal::half> kn(static_cast<std::size_t>(2 * 136)), vn(static_cast<std::size_t>(2 * 136));
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_append_decode_attention(frugal::cuda, qv, matrix_view<const frugal::half>(kn.data(), 2, 128, 130),
                                            matrix_view<const frugal::half>(vn.data(), 2, 128, 136),
                                            c.paged_view(d.paged.data()), d.tab(c), ov, p),
      "frugal::paged_append_decode_attention: k_new and v_new must be 16-byte aligned with row strides of a multiple "
      "of 16 bytes (k_new.ld=130, v_new.ld=136 elements)");
  FRUGAL_CHECK_THROWS_WITH(
      frugal::paged_append_decode_attention(
          frugal::cuda, qv, matrix_view<const frugal::half>(kn.data() + 1, 2, 128, 136),
          matrix_view<const frugal::half>(vn.data(), 2, 128, 136), c.paged_view(d.paged.data()), d.tab(c), ov, p),
      "k_new and v_new must be 16-byte aligned");
}
