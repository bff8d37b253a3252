// examples/gpt2/bench.hpp — `gpt2 --bench FILE.json`: every mode measured on one model in one process.
//
// Sets (--bench-set):
//   full   modes at batch 1 (prompt 50, 100 and 500 new tokens: no cache vs contiguous vs paged KV); batch 1/8/32
//          decode with contiguous and paged KV; TEAL and LaRoSA at p = 0.25/0.4/0.5/0.75 (speed, ceiling, logits
//          error and top-1 agreement against dense on the same teacher-forced tokens), each with both selection
//          rules: per-token top-k (modes "teal", "larosa") and calibrated thresholds ("teal_thr", "larosa_thr":
//          thresholds.hpp, the p-quantile per layer and block input on the calibration tokens that follow the
//          LaRoSA ones; these rows also carry "kept", the fraction of each block input the decode GEMVs really kept,
//          measured over the quality positions, and the weight bytes / ceiling that fraction implies. (Calibrated
//          on the rotation's own tokens — fewer than n_embd — larosa_thr kept 0.62 at qkv / fc of random-init 124M at
//          p = 0.5, CPU: the rotated x̂ of that text are concentrated in few channels.) AdaptiVocab tokens per text
//          (100 held-out texts), time per text with and without patch tokens, all combined; KV memory.
//   quick  the same with fewer/shorter runs (no 500-token runs, batch up to 8).
//   xl     for big shapes on small machines: dense, TEAL and LaRoSA (top-k and thresholds) at the four p on a GPU,
//          p = 0.5 only on the CPU, a few tokens.
// Every number is measured in this run; the JSON carries the command, device, dtype, model and date.
#pragma once

#include <frugal/kv/block_allocator.hpp>

#include <cstdlib>

namespace gpt2 {

template <class Tag, class T>
int runner<Tag, T>::bench() {
  using json = nlohmann::json;
  const bool xl = a_.bench_set == "xl", quick = a_.bench_set == "quick", sparse_only = a_.bench_set == "sparse";
  if (!xl && !quick && !sparse_only && a_.bench_set != "full")
    fail("bench", "--bench-set must be full, quick, xl or sparse");
  const auto t_begin = std::chrono::steady_clock::now();
  auto log = [&](const std::string& s) {
    std::fprintf(stderr, "[%6.0f s] %s\n", secs(t_begin), s.c_str());
    std::fflush(stderr);
  };
  json out;
  out["meta"] = {{"command", a_.command}, {"device", be::name}, {"device_name", device_desc()},
                 {"dtype", frugal::dtype_traits<T>::name}, {"model", cfg_.name}, {"weights", model_desc()},
                 {"date", today()}, {"bench_set", a_.bench_set}, {"texts", texts_.source}, {"page_size", a_.page_size},
                 {"rotation", a_.rotation}};
  if constexpr (!be::is_cuda) out["meta"]["threads"] = ctx_.tag.num_threads();
  auto loadavg = [] {
    double l[3] = {0, 0, 0};
    return getloadavg(l, 3) == 3 ? l[0] : -1.0;
  };
  out["meta"]["loadavg_start"] = loadavg();  // other work on the machine (this one is shared)
  const int reps = a_.reps > 0 ? a_.reps : xl && !be::is_cuda ? 1 : 3;
  log("copy bandwidth");
  const double bw = be::copy_bandwidth(ctx_);
  out["meta"]["copy_bandwidth_GBps"] = bw / 1e9;
  const bool gpu = be::is_cuda;

  // Prompts: the first `len` tokens of held-out texts long enough for them.
  std::vector<std::vector<std::int32_t>> test_tokens;
  for (const auto& d : texts_.test) test_tokens.push_back(tok_.encode(d));
  auto prompts = [&](int n, int len) {
    prompts_t p;
    for (std::size_t i = 0; static_cast<int>(p.size()) < n && i < 100 * test_tokens.size(); ++i) {
      const auto& t = test_tokens[i % test_tokens.size()];
      if (static_cast<int>(t.size()) >= len) p.emplace_back(t.begin(), t.begin() + len);
    }
    if (static_cast<int>(p.size()) < n) fail("bench", "not enough held-out texts of ", len, " tokens");
    return p;
  };
  const int P = 50;
  const int n_short = xl ? (gpu ? 64 : 12) : (gpu ? 100 : (quick || sparse_only ? 32 : 100));
  auto save = [&] {
    std::ofstream f(a_.bench_out);
    f << out.dump(1) << "\n";
  };

  std::optional<model_t> dense(upload_model<Tag, T>(ctx_, host_weights()));
  out["meta"]["model_bytes"] = dense->bytes();
  out["meta"]["dense_weight_bytes_per_token"] = dense->weight_bytes_per_token(0.f);
  const double dense_bytes = dense->weight_bytes_per_token(0.f);
  auto roof = [&](json& j) {  // achieved fraction of the copy bandwidth on weight bytes (batch 1)
    j["achieved_GBps"] = double(j["weight_bytes_per_token"]) * double(j["tok_s"]) / double(j["batch"]) / 1e9;
    j["roofline_fraction"] = double(j["achieved_GBps"]) * 1e9 / bw;
  };
  log("warm-up");
  measure(*dense, "warmup", attn_kind::contiguous, 0.f, prompts(1, P), 8);

  // ---- modes at batch 1: no cache / contiguous / paged, 100 and 500 new tokens -------------------------------------
  json modes = json::array();
  const std::vector<int> lengths = xl || quick ? std::vector<int>{n_short} : std::vector<int>{100, 500};
  for (int n : lengths) {
    if (sparse_only) break;
    std::vector<run_spec> specs;
    for (attn_kind a : {attn_kind::contiguous, attn_kind::paged}) specs.push_back({attn_name(a), &*dense, a, 0.f, prompts(1, P), n});
    if (gpu && a_.mega)  // the one-kernel decode step (mega_cuda.cuh), same prompts, in the same alternation
      specs.push_back({"kv_mega", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n, {}, {.mega = true}});
    if (gpu)  // the dense GEMVs on the other kernel (gemv_options::weights_ahead = 0): what the weights-ahead one gives
      specs.push_back({"kv_noahead", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n, {}, {.weights_ahead = 0}});
    if (gpu)  // the attention waiting for the qkv GEMV before its cache copies (attention_params::kv_ahead = false)
      specs.push_back({"kv_nokvahead", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n, {}, {.kv_ahead = false}});
    if (gpu)  // the layer GEMVs with the library's K splits (session_options::decode_splits = 0)
      specs.push_back({"kv_libsplits", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n, {}, {.decode_splits = 0}});
    if (gpu)  // the attention's split-K planned for max_seq (session_options::attn_plan_follows = false)
      specs.push_back({"kv_fixedplan", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n, {}, {.attn_plan_follows = false}});
    if (gpu)  // the attention's splits merged through global memory (session_options::attn_cluster_merge = false)
      specs.push_back({"kv_gmerge", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n, {}, {.attn_cluster_merge = false}});
    log("modes kv / paged" + std::string(gpu && a_.mega ? " / kv_mega" : "") +
        std::string(gpu ? " / kv_noahead / kv_nokvahead / kv_libsplits / kv_fixedplan / kv_gmerge" : "") +
        ", new=" + std::to_string(n));
    for (auto& r : measure_alternating(specs, reps)) {
      auto j = r.json();
      roof(j);
      modes.push_back(j);
    }
    if (!xl) {  // the no-cache mode is slow: once (its steps are long, so drift matters less)
      log("mode nocache, new=" + std::to_string(n));
      auto r = measure(*dense, "nocache", attn_kind::nocache, 0.f, prompts(1, P), n, {}, gpu ? reps : 1);
      modes.push_back(r.json());
    }
    out["modes"] = modes;
    save();
  }

  // ---- batch > 1 -----------------------------------------------------------------------------------------------------
  if (!xl && !sparse_only) {
    json batch = json::array();
    const std::vector<int> bs = quick ? std::vector<int>{1, 8} : std::vector<int>{1, 8, 32};
    for (int b : bs) {
      log("batch " + std::to_string(b) + ": kv / paged");
      std::vector<run_spec> specs;
      for (attn_kind a : {attn_kind::contiguous, attn_kind::paged}) specs.push_back({attn_name(a), &*dense, a, 0.f, prompts(b, P), n_short});
      for (auto& r : measure_alternating(specs, reps)) batch.push_back(r.json());
      out["batch"] = batch;
      save();
    }
  }

  // ---- TEAL and LaRoSA: speed (alternating with dense in one set) and quality ------------------------------------------
  const std::vector<float> ps = xl && !gpu ? std::vector<float>{0.5f} : std::vector<float>{0.25f, 0.4f, 0.5f, 0.75f};
  const int q_texts = xl ? 1 : (gpu ? 8 : 4), q_steps = xl ? 8 : (gpu ? 64 : 24), q_prompt = 32;
  std::vector<std::vector<std::int32_t>> qtexts;
  for (const auto& t : test_tokens)
    if (static_cast<int>(qtexts.size()) < q_texts && static_cast<int>(t.size()) > q_prompt + q_steps + 1) qtexts.push_back(t);
  log("dense reference logits");
  const auto ref = forced_logits(*dense, 0.f, qtexts, q_prompt, q_steps);
  log("LaRoSA calibration");
  const auto t_cal = std::chrono::steady_clock::now();
  const auto ctoks = calibration_tokens(nullptr);
  const auto rot = larosa_calibrate<Tag, T>(ctx_, *dense, ctoks, lopt());
  auto seq_lengths = [](const token_sequences& q) {
    std::vector<std::size_t> l;
    for (const auto& x : q) l.push_back(x.size());
    return l;
  };
  out["larosa_calibration"] = {{"tokens", total_tokens(ctoks)}, {"sequences", seq_lengths(ctoks)},
                               {"seconds", secs(t_cal)}, {"rotations", rot.q.size()},
                               {"rotation", a_.rotation}, {"damping", 0.01}};
  const auto t_fold = std::chrono::steady_clock::now();
  auto folded = upload_model<Tag, T>(ctx_, larosa_apply<Tag>(ctx_, host_weights(), rot));
  out["larosa_calibration"]["fold_seconds"] = secs(t_fold);
  out["larosa_calibration"]["folded_weight_bytes_per_token"] = folded.weight_bytes_per_token(0.f);
  // TEAL thresholds for every p, on each model's own activations (the folded model's x̂ are rotated), from the
  // calibration tokens after the rotations' ones (runner::threshold_tokens)
  log("threshold calibration");
  const auto t_thr = std::chrono::steady_clock::now();
  const auto ttoks = threshold_tokens(nullptr);
  const auto thr_teal = calibrate_thresholds<Tag, T>(ctx_, *dense, ttoks, ps);
  const double thr_teal_s = secs(t_thr);
  const auto thr_larosa = calibrate_thresholds<Tag, T>(ctx_, folded, ttoks, ps);
  out["threshold_calibration"] = {{"tokens", total_tokens(ttoks)}, {"sequences", seq_lengths(ttoks)},
                                  {"skip", total_tokens(ctoks)}, {"seconds_teal", thr_teal_s},
                                  {"seconds_larosa", secs(t_thr) - thr_teal_s}, {"p", ps},
                                  {"layout", "thresholds[4 * layer + site], sites qkv, o_proj, fc, down"},
                                  {"teal", thr_teal}, {"larosa", thr_larosa}};
  // realised kept fraction of a threshold row, per site (mean over layers and quality positions), and the weight
  // bytes per token it implies (every layer has the same shapes: sum over layers = n_layer x the mean)
  auto kept_json = [&](const std::vector<double>& k, const model_t& m) {
    const int L = m.cfg.n_layer;
    const double C = m.cfg.n_embd, e = sizeof(T);
    const double KN[n_sites] = {C * 3 * C, C * C, C * 4 * C, 4 * C * C};
    json j;
    double mean = 0, bytes = m.weight_bytes_per_token(0.f);
    for (int s = 0; s < n_sites; ++s) {
      double f = 0;
      for (int l = 0; l < L; ++l) f += k[std::size_t(l) * n_sites + s] / L;
      j[site_name(s)] = f;
      mean += f / n_sites;
      bytes -= (1 - f) * KN[s] * L * e;
    }
    j["mean"] = mean;
    j["weight_bytes_per_token"] = bytes;
    j["ceiling"] = dense_bytes / bytes;
    j["per_layer"] = k;
    return j;
  };
  json sparse = json::array();
  {
    std::vector<run_spec> specs = {{"kv", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n_short}};
    if (!xl) specs.push_back({"larosa", &folded, attn_kind::contiguous, 0.f, prompts(1, P), n_short});
    for (std::size_t i = 0; i < ps.size(); ++i) {
      const float p = ps[i];
      specs.push_back({"teal", &*dense, attn_kind::contiguous, p, prompts(1, P), n_short});
      specs.push_back({"larosa", &folded, attn_kind::contiguous, p, prompts(1, P), n_short});
      specs.push_back({"teal_thr", &*dense, attn_kind::contiguous, p, prompts(1, P), n_short, thr_teal[i]});
      specs.push_back({"larosa_thr", &folded, attn_kind::contiguous, p, prompts(1, P), n_short, thr_larosa[i]});
    }
    log("sparse decode speed: " + std::to_string(specs.size()) + " configurations x " + std::to_string(reps));
    const auto res = measure_alternating(specs, reps);
    const double base = res[0].tok_s;
    for (std::size_t i = 0; i < res.size(); ++i) {
      auto j = res[i].json();
      j["speedup_vs_kv"] = res[i].tok_s / base;
      j["ceiling"] = dense_bytes / res[i].weight_bytes;
      roof(j);
      const bool thr = !specs[i].thr.empty();
      j["select"] = thr ? "threshold" : specs[i].p > 0 ? "topk" : "dense";
      if (i > 0) {
        log("quality " + res[i].mode + " p=" + fmt(res[i].p, 2));
        std::vector<double> kept;
        j["quality"] = quality(ref, forced_logits(*specs[i].m, specs[i].p, qtexts, q_prompt, q_steps, specs[i].thr,
                                                  thr ? &kept : nullptr));
        if (thr) j["kept"] = kept_json(kept, *specs[i].m);
      }
      sparse.push_back(j);
    }
    out["sparse"] = sparse;
    save();
  }
  if (xl || sparse_only) {
    out["seconds"] = secs(t_begin);
    out["meta"]["loadavg_end"] = loadavg();
    save();
    log("done");
    return 0;
  }

  // ---- AdaptiVocab patch tokens ----------------------------------------------------------------------------------------
  log("patch vocabulary");
  const auto t_patch = std::chrono::steady_clock::now();
  auto pb = build_patch(tok_, texts_.train, host_weights(), a_.patch_size ? a_.patch_size : default_patch_size(),
                        a_.patch_vocab);
  json patch = {{"size", pb.size()}, {"build_seconds", secs(t_patch)}};
  json per_text = json::array();
  std::int64_t tb = 0, tp = 0;
  const int n_texts = std::min<int>(100, static_cast<int>(texts_.test.size()));
  std::vector<int> base_len, patch_len;
  for (int i = 0; i < n_texts; ++i) {
    const int b = static_cast<int>(test_tokens[i].size()), p = static_cast<int>(pb.encode(texts_.test[i]).size());
    per_text.push_back({{"bytes", texts_.test[i].size()}, {"base", b}, {"patch", p}});
    tb += b, tp += p;
    base_len.push_back(b), patch_len.push_back(p);
  }
  patch["texts"] = per_text;
  patch["tokens_base"] = tb, patch["tokens_patch"] = tp;
  patch["token_reduction"] = 1.0 - double(tp) / double(tb);
  out["patch"] = patch;
  save();

  // KV memory of those texts (each capped at n_ctx): contiguous reservation at n_ctx vs paged blocks, base vs patch,
  // from a real block allocator's accounting.
  {
    const std::size_t row = std::size_t(2) * cfg_.n_layer * cfg_.n_embd * sizeof(T);
    auto paged_bytes = [&](const std::vector<int>& lens) {
      std::int64_t total_blocks = 0;
      for (int l : lens) total_blocks += (std::min(l, cfg_.n_ctx) + a_.page_size - 1) / a_.page_size;
      frugal::block_allocator alloc(static_cast<std::int32_t>(total_blocks), a_.page_size);
      std::int64_t tokens = 0;
      for (int l : lens) alloc.allocate(std::min(l, cfg_.n_ctx)), tokens += std::min(l, cfg_.n_ctx);
      return json{{"bytes", std::size_t(alloc.num_used_blocks()) * a_.page_size * row},
                  {"tokens", tokens}, {"exact_bytes", std::size_t(tokens) * row}, {"waste", alloc.waste_fraction()}};
    };
    out["kv_memory"] = {{"texts", n_texts}, {"bytes_per_token", row},
                        {"contiguous_reserved_bytes", std::size_t(n_texts) * cfg_.n_ctx * row},
                        {"paged_base", paged_bytes(base_len)}, {"paged_patch", paged_bytes(patch_len)}};
    save();
  }

  // Time per text: the same held-out texts decoded token by token (teacher forcing), base vs patch vs combined.
  {
    const int n_timed = gpu ? 16 : (quick ? 2 : 4), max_base = gpu ? 512 : 128;
    auto pm = upload_model<Tag, T>(ctx_, pb.weights_copy());
    log("LaRoSA calibration on the patch model");
    const auto prot = larosa_calibrate<Tag, T>(ctx_, pm, calibration_tokens(&pb), lopt());
    auto pf = upload_model<Tag, T>(ctx_, larosa_apply<Tag>(ctx_, pb.weights_copy(), prot));
    json rows = json::array();
    double tb_s = 0, tp_s = 0, tc_s = 0;
    int nb = 0, np = 0;
    for (int i = 0, done = 0; i < n_texts && done < n_timed; ++i) {
      if (static_cast<int>(test_tokens[i].size()) < max_base) continue;
      // the text prefix that the base tokenizer encodes in max_base tokens
      const std::string text = tok_.decode(std::vector<std::int32_t>(test_tokens[i].begin(), test_tokens[i].begin() + max_base));
      const auto bt = tok_.encode(text), pt = pb.encode(text);
      auto timed = [&](const model_t& m, const std::vector<std::int32_t>& ids, attn_kind a, float p) {
        const prompts_t pr = {{ids[0]}};
        const prompts_t forced = {std::vector<std::int32_t>(ids.begin() + 1, ids.end())};
        session_options o;
        o.attn = a, o.p = p, o.max_seq = static_cast<int>(ids.size()) + 2, o.page_size = a_.page_size;
        session<Tag, T> s(ctx_, m, o);
        s.start(pr, &forced);
        s.decode(1);
        const double t0 = be::now(ctx_);
        s.decode(static_cast<int>(ids.size()) - 2);
        return (be::now(ctx_) - t0) * double(ids.size() - 1) / double(ids.size() - 2);  // all steps of the text
      };
      log("text " + std::to_string(done) + ": " + std::to_string(bt.size()) + " vs " + std::to_string(pt.size()) + " tokens");
      const double sb = timed(*dense, bt, attn_kind::contiguous, 0.f);
      const double sp = timed(pm, pt, attn_kind::contiguous, 0.f);
      const double sc = timed(pf, pt, attn_kind::paged, a_.p);
      rows.push_back({{"bytes", text.size()}, {"base_tokens", bt.size()}, {"patch_tokens", pt.size()},
                      {"base_s", sb}, {"patch_s", sp}, {"combined_s", sc}});
      tb_s += sb, tp_s += sp, tc_s += sc, nb += static_cast<int>(bt.size()), np += static_cast<int>(pt.size());
      ++done;
    }
    out["time_per_text"] = {{"texts", rows}, {"base_s", tb_s}, {"patch_s", tp_s}, {"combined_s", tc_s},
                            {"base_tokens", nb}, {"patch_tokens", np}, {"combined_p", a_.p},
                            {"patch_speedup", tp_s > 0 ? tb_s / tp_s : 0.0},
                            {"combined_speedup", tc_s > 0 ? tb_s / tc_s : 0.0}};
    save();
    // decode speed of the patch and combined models at batch 1 (same prompt length as the other modes)
    auto pprompt = [&] {
      prompts_t p;
      for (const auto& d : texts_.test) {
        auto ids = pb.encode(d);
        if (static_cast<int>(ids.size()) >= P) return prompts_t{std::vector<std::int32_t>(ids.begin(), ids.begin() + P)};
      }
      fail("bench", "no held-out text of ", P, " patch tokens");
    }();
    log("decode speed: kv / patch / combined");
    const std::vector<run_spec> specs = {{"kv", &*dense, attn_kind::contiguous, 0.f, prompts(1, P), n_short},
                                         {"patch", &pm, attn_kind::contiguous, 0.f, pprompt, n_short},
                                         {"combined", &pf, attn_kind::paged, a_.p, pprompt, n_short}};
    const auto res = measure_alternating(specs, reps);
    for (std::size_t i = 1; i < res.size(); ++i) {
      auto j = res[i].json();
      j["speedup_vs_kv"] = res[i].tok_s / res[0].tok_s;  // against the kv run of the same alternating set
      j["kv_tok_s_same_set"] = res[0].tok_s;
      modes.push_back(j);
    }
    out["modes"] = modes;
  }
  out["seconds"] = secs(t_begin);
  out["meta"]["loadavg_end"] = loadavg();
  save();
  log("done");
  return 0;
}

}  // namespace gpt2
