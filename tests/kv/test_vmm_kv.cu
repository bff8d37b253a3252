// kv: the virtual-memory (vAttention) backend. Without a GPU (CI) supported() is false and construction throws a
// clean frugal::error; the binary starts because the driver is reached through the runtime, not linked. With a GPU:
// on-demand mapping, accounting, pool reuse, rollback-free errors, and the contiguous attention kernels reading it
// (bitwise equal to the same kernel on ordinary device memory, and within one rounding of the CPU reference).
#include <frugal/kv/decode_attention.hpp>
#include <frugal/kv/paged_kv.hpp>
#include <frugal/kv/vmm_kv.hpp>

#include "common/cuda_test_util.cuh"
#include "kv_test_util.hpp"

using frugal::matrix_view;
using frugal_test::device_buffer;
using T = frugal::half;

TEST_CASE("vmm_kv_cache: supported() never throws; without a device the constructor throws a clean error") {
  bool s = true;
  CHECK_NOTHROW(s = frugal::vmm_kv_cache<T>::supported());
  if (!frugal_test::gpu_available()) {
    CHECK_FALSE(s);
    FRUGAL_CHECK_THROWS_WITH(frugal::vmm_kv_cache<T>({2, 100, 2, 64, 1, -1}),
                             "frugal::vmm_kv_cache: CUDA virtual memory is unavailable");
  }
}

TEST_CASE("vmm_kv_cache: map on demand, attention reads it, release/reuse/trim, errors") {
  FRUGAL_REQUIRE_GPU();
  if (!frugal::vmm_kv_cache<T>::supported()) {
    MESSAGE("skipped: the device does not support CUDA virtual memory management");
    return;
  }
  FRUGAL_CHECK_THROWS_WITH(frugal::vmm_kv_cache<T>({0, 100, 2, 64, 1, -1}), "max_seqs (=0)");
  const std::int32_t S = 4, MAXLEN = 5000, H = 4, G = 2, D = 64, L = 2;
  frugal::vmm_kv_cache<T> cache0({S, MAXLEN, H, D, L, -1});
  CHECK(cache0.mapped_bytes() == 0);
  const std::size_t page = cache0.page_bytes();
  REQUIRE(page >= 65536);
  const std::size_t row = static_cast<std::size_t>(H) * D * sizeof(T);
  const std::size_t pages_per_slot = (MAXLEN * row + page - 1) / page;
  CHECK(cache0.reserved_bytes() == static_cast<std::size_t>(L) * 2 * S * pages_per_slot * page);
  frugal::vmm_kv_cache<T> cache(std::move(cache0));  // moves keep working

  const std::vector<std::int32_t> lens{100, 0, 4500, 1};
  for (std::int32_t s = 0; s < S; ++s) cache.reserve(s, lens[static_cast<std::size_t>(s)]);
  std::size_t expect_pages = 0;
  for (auto len : lens) expect_pages += (static_cast<std::size_t>(len) * row + page - 1) / page;
  CHECK(cache.mapped_bytes() == expect_pages * 2 * L * page);
  CHECK(cache.mapped_tokens(1) == 0);
  CHECK(cache.mapped_tokens(0) == static_cast<std::int32_t>(std::min<std::size_t>(page / row, MAXLEN)));
  const std::size_t before = cache.mapped_bytes();
  cache.reserve(0, 50);  // already backed: no-op
  CHECK(cache.mapped_bytes() == before);

  // K/V of every layer written through kv_append with contiguous slots s * max_len + t
  std::vector<std::int32_t> slots;
  for (std::int32_t s = 0; s < S; ++s)
    for (std::int32_t t = 0; t < lens[static_cast<std::size_t>(s)]; ++t) slots.push_back(s * MAXLEN + t);
  const std::int64_t n = static_cast<std::int64_t>(slots.size());
  device_buffer<std::int32_t> dslots(slots), dlens(lens);
  const auto q = frugal_test::random_vector<T>(static_cast<std::size_t>(S * H * G * D), 77);
  device_buffer<T> dq(q), out(q.size()), out_ref(q.size());
  for (std::int32_t l = 0; l < L; ++l) {
    INFO("layer=", l);
    const auto k = frugal_test::random_vector<T>(static_cast<std::size_t>(n * H * D), 10 + static_cast<std::uint64_t>(l));
    const auto v = frugal_test::random_vector<T>(static_cast<std::size_t>(n * H * D), 20 + static_cast<std::uint64_t>(l));
    device_buffer<T> dk(k), dv(v);
    frugal::kv_append(frugal::cuda, cache.layer(l), matrix_view<const T>(dk.data(), n, H * D),
                      matrix_view<const T>(dv.data(), n, H * D), dslots.data());
    // the same data in ordinary device memory (dense [S, MAXLEN, H, D]) and on the host
    const std::size_t dense = static_cast<std::size_t>(S) * MAXLEN * H * D;
    device_buffer<T> ck(dense), cv(dense);
    const frugal::contiguous_kv_view<T> plain(ck.data(), cv.data(), S, MAXLEN, H, D);
    frugal::kv_append(frugal::cuda, plain, matrix_view<const T>(dk.data(), n, H * D),
                      matrix_view<const T>(dv.data(), n, H * D), dslots.data());
    frugal::attention_params p;
    p.q_heads = H * G;
    p.max_seq_len = MAXLEN;
    const std::size_t wsb = frugal::decode_attention_workspace_bytes<T>(frugal::cuda, S, H * G, H, D, MAXLEN);
    device_buffer<unsigned char> ws(wsb + 1);
    ws.zero();  // split-K workspace: zero-filled once (merge counters)
    frugal::decode_attention(frugal::cuda, matrix_view<const T>(dq.data(), S, H * G * D), cache.layer(l), dlens.data(),
                             matrix_view<T>(out.data(), S, H * G * D), p, frugal::workspace{ws.data(), ws.size()});
    frugal::decode_attention(frugal::cuda, matrix_view<const T>(dq.data(), S, H * G * D), plain, dlens.data(),
                             matrix_view<T>(out_ref.data(), S, H * G * D), p, frugal::workspace{ws.data(), ws.size()});
    FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
    const auto got = out.download();
    CHECK(kv_test::same_bits(got, out_ref.download()));
    // CPU reference from host copies
    std::vector<T> hk(dense), hv(dense);
    frugal::kv_append(frugal::cpu, frugal::contiguous_kv_view<T>(hk.data(), hv.data(), S, MAXLEN, H, D),
                      matrix_view<const T>(k.data(), n, H * D), matrix_view<const T>(v.data(), n, H * D), slots.data());
    std::vector<T> ref(q.size());
    frugal::decode_attention(frugal::cpu, matrix_view<const T>(q.data(), S, H * G * D),
                             frugal::contiguous_kv_view<const T>(hk.data(), hv.data(), S, MAXLEN, H, D), lens.data(),
                             matrix_view<T>(ref.data(), S, H * G * D), p);
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::abs(double(frugal::to_float(got[i])) - double(frugal::to_float(ref[i]))));
    CHECK(worst <= 2e-3);
    // prefill (causal) over the VMM cache: the last 3 tokens of slot 2
    const std::vector<std::int32_t> indptr{0, 0, 0, 3, 3};
    device_buffer<std::int32_t> dind(indptr);
    device_buffer<T> pout(static_cast<std::size_t>(3 * H * G * D)), pref(static_cast<std::size_t>(3 * H * G * D));
    frugal::prefill_attention(frugal::cuda, matrix_view<const T>(dq.data(), 3, H * G * D), cache.layer(l),
                              dlens.data(), dind.data(), matrix_view<T>(pout.data(), 3, H * G * D), p);
    frugal::prefill_attention(frugal::cuda, matrix_view<const T>(dq.data(), 3, H * G * D), plain, dlens.data(),
                              dind.data(), matrix_view<T>(pref.data(), 3, H * G * D), p);
    FRUGAL_CUDA_CHECK(cudaDeviceSynchronize(), "test");
    CHECK(kv_test::same_bits(pout.download(), pref.download()));
  }

  // release -> pool, reuse, trim
  const std::size_t mapped = cache.mapped_bytes();
  cache.release(2);
  const std::size_t freed = mapped - cache.mapped_bytes();
  CHECK(freed == (static_cast<std::size_t>(lens[2]) * row + page - 1) / page * 2 * L * page);
  CHECK(cache.pooled_bytes() == freed);
  CHECK(cache.mapped_tokens(2) == 0);
  cache.reserve(1, 10);  // reuses pooled pages
  CHECK(cache.pooled_bytes() == freed - 2 * L * page);
  cache.trim();
  CHECK(cache.pooled_bytes() == 0);
  FRUGAL_CHECK_THROWS_WITH(cache.reserve(4, 1), "frugal::vmm_kv_cache::reserve: slot (=4) must be in [0, max_seqs=4)");
  FRUGAL_CHECK_THROWS_WITH(cache.reserve(0, MAXLEN + 1), "tokens (=5001) must be in [0, max_len=5000]");
  FRUGAL_CHECK_THROWS_WITH(cache.layer(2), "layer (=2) must be in [0, 2)");
  for (std::int32_t s = 0; s < S; ++s) cache.release(s);
  CHECK(cache.mapped_bytes() == 0);
}
