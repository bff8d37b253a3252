// examples/gpt2/app.hpp — the gpt2 program for one device: builds the model variants (dense, LaRoSA-folded, patch
// vocabulary), runs the decoding modes, and prints / writes what it measured (--demo table, --bench JSON).
//
// Modes (speed always measured on greedy decode after an untimed warm-up step, which also captures the CUDA Graph):
//   nocache   recompute the whole prefix every step (batched prefill of all tokens, no cache kept)
//   kv        contiguous KV cache                      paged     paged KV cache (block allocator, page 16)
//   teal      TEAL-style top-k at p on the unrotated model (all four block inputs)
//   larosa    LaRoSA: rotations calibrated on the corpus, folded into the weights, top-k at p
//   patch     AdaptiVocab patch vocabulary (same texts, fewer tokens), contiguous KV
//   combined  patch vocabulary + paged KV + LaRoSA at p
// Sparse selection (--select): topk keeps each token's k = round((1 - p)·K) largest |v| per block input; threshold
// keeps |v| >= t per layer and block input, t calibrated as the p-quantile of |v| on the calibration tokens of the
// same model (thresholds.hpp; TEAL's rule, the norm stays fused in the GEMV); such rows are named teal_thr,
// larosa_thr, combined_thr.
#pragma once

#include <frugal/vocab/bpe.hpp>

#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "calibration.hpp"
#include "cli.hpp"
#include "engine.hpp"
#include "larosa.hpp"
#include "patch.hpp"
#include "texts.hpp"
#include "thresholds.hpp"

namespace gpt2 {

inline std::string today() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d", std::gmtime(&t));
  return b;
}

//! User + system CPU seconds of this process (all threads).
inline double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

inline std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "cpu";
}

//! One timed run of a mode.
struct measurement {
  std::string mode;
  float p = 0.f;
  int batch = 1;
  int prompt_tokens = 0;  // per sequence (mean)
  int new_tokens = 0;
  double prefill_s = 0, decode_s = 0;
  int timed_steps = 0;
  double tok_s = 0;  // decode tokens per second over all sequences
  double weight_bytes = 0;  // weights read per decode token at batch 1
  std::size_t kv_allocated = 0, kv_in_use = 0, kv_needed = 0;
  int repeats = 1;  // best of
  double cpu_s = 0;   // CPU: process CPU time (all threads) over the timed steps
  int threads = 0;    // CPU: threads the decode ran on
  std::vector<std::vector<std::int32_t>> tokens;
  nlohmann::json json() const {
    return {{"mode", mode}, {"p", p}, {"batch", batch}, {"prompt_tokens", prompt_tokens}, {"new_tokens", new_tokens},
            {"prefill_s", prefill_s}, {"decode_s", decode_s}, {"timed_steps", timed_steps}, {"tok_s", tok_s},
            {"ms_per_step", timed_steps ? 1e3 * decode_s / timed_steps : 0.0}, {"weight_bytes_per_token", weight_bytes},
            {"kv_bytes_allocated", kv_allocated}, {"kv_bytes_in_use", kv_in_use}, {"kv_bytes_needed", kv_needed},
            {"best_of", repeats}, {"cpu_s", cpu_s}, {"threads", threads},
            // On a shared CPU, time slices lost to other processes inflate wall time but not CPU time: the decode
            // rate per thread-second of CPU time (x threads) is what an otherwise idle machine would give.
            {"tok_s_cpu_time", cpu_s > 0 ? double(timed_steps) * batch / (cpu_s / std::max(threads, 1)) : 0.0}};
  }
};

template <class Tag, class T>
class runner {
  using be = backend<Tag>;
  using model_t = device_model<Tag, T>;
  using prompts_t = std::vector<std::vector<std::int32_t>>;

 public:
  explicit runner(const cli& a) : a_(a) {
    if constexpr (!be::is_cuda) ctx_.tag = frugal::cpu_t{a.threads};
    cfg_ = config::from_name(a.model);
    const std::string dir = a.tokenizer_dir.empty() ? frugal::gpt2_tokenizer::default_dir() : a.tokenizer_dir;
    tok_ = frugal::gpt2_tokenizer::from_dir(dir);
    // The demo runs on the built-in corpus unless --corpus is given (a fresh machine has no man-page corpus).
    texts_ = load_texts(!a.corpus_dir.empty() ? a.corpus_dir : a.demo ? std::string() : default_corpus_dir());
  }

  int run() {
    // an explicit --calib-tokens larger than the training split fails here, before any model is built
    if (a_.calib_tokens > 0) (void)calibration(nullptr);
    if (!a_.bench_out.empty()) return bench();
    if (!a_.profile_out.empty()) return profile();
    return generate(a_.demo);
  }

 private:
  static std::string default_corpus_dir() {
#if defined(FRUGAL_GPT2_REPO)
    return std::string(FRUGAL_GPT2_REPO) + "/.cache/corpus";
#else
    return ".cache/corpus";
#endif
  }

  std::string device_desc() {
    if constexpr (be::is_cuda) return be::device_name(ctx_);
    else return cpu_name() + ", " + std::to_string(ctx_.tag.num_threads()) + " threads";
  }

  // ---- models ------------------------------------------------------------------------------------------------------
  weights host_weights() {
    if (!a_.weights.empty()) {
      auto w = load_weights(a_.weights);
      cfg_ = w.cfg;
      return w;
    }
    return random_weights(cfg_, a_.seed);
  }
  std::string model_desc() const {
    return a_.weights.empty() ? "random-init " + cfg_.name + " (seed " + std::to_string(a_.seed) + ")" : a_.weights;
  }

  //! The calibration text of this run (calibration.hpp): --calib-tokens n tokens per use from the training split
  //! (patch-tokenized when pb is given), cut into sequences of at most n_ctx - 1 tokens; the rotations take the first
  //! n tokens, the thresholds the next n. A run calibrates thresholds with --select threshold and in --bench.
  //! The GPT-2-token text is cut once per run (the early check, the rotation and the thresholds all ask for it).
  calibration_text calibration(const patch_bundle* pb) {
    if (!pb && base_calibration_) return *base_calibration_;
    const int uses = a_.select == "threshold" || !a_.bench_out.empty() ? 2 : 1;
    const std::size_t want = calibration_tokens_needed(a_.calib_tokens, cfg_, uses);
    std::vector<std::int32_t> t;
    for (const auto& d : texts_.train) {
      auto ids = pb ? pb->encode(d) : tok_.encode(d);
      t.insert(t.end(), ids.begin(), ids.end());
      if (t.size() >= want) break;
    }
    auto r = make_calibration_text(t, a_.calib_tokens, cfg_, uses,
                                   pb ? "the training split (in patch tokens)" : "the training split");
    if (!pb) base_calibration_ = r;
    return r;
  }
  token_sequences calibration_tokens(const patch_bundle* pb) { return calibration(pb).rotation; }
  token_sequences threshold_tokens(const patch_bundle* pb) {
    auto t = calibration(pb).thresholds;
    if (t.empty()) fail("calibration", "threshold tokens asked for by a run that calibrates no thresholds");
    return t;
  }
  static std::string describe(const token_sequences& s) {
    return std::to_string(total_tokens(s)) + " corpus tokens (" + std::to_string(s.size()) +
           (s.size() == 1 ? " sequence)" : " sequences)");
  }

  larosa_options lopt() const {
    larosa_options o;
    o.layerwise = a_.rotation == "layer";
    return o;
  }

  // ---- measurement -------------------------------------------------------------------------------------------------
  //! The CUDA decode step's A/B switches (session_options of the same names); the defaults are the step as it runs.
  struct knobs {
    bool mega = false;
    int weights_ahead = -1;
    bool kv_ahead = true;
    int decode_splits = -1;
    bool attn_plan_follows = true;
    bool attn_cluster_merge = true;
  };
  //! Decode speed of a mode: greedy generation of n_new tokens after the prompts; the first decode step is untimed
  //! (warm-up; it captures the CUDA Graph). The best of `repeats` runs (fresh session each) is kept.
  //! thr: the threshold rule's table (session_options::thresholds; empty: top-k at p).
  measurement measure(const model_t& m, const std::string& name, attn_kind attn, float p, const prompts_t& prompts,
                      int n_new, const sampling& s = {}, int repeats = 1, const std::vector<float>& thr = {},
                      const knobs& k = {}) {
    session_options o;
    o.mega = k.mega;
    o.weights_ahead = k.weights_ahead;
    o.kv_ahead = k.kv_ahead;
    o.decode_splits = k.decode_splits;
    o.attn_plan_follows = k.attn_plan_follows;
    o.attn_cluster_merge = k.attn_cluster_merge;
    o.attn_splits = a_.attn_splits;
    o.attn = attn;
    o.max_batch = static_cast<int>(prompts.size());
    int longest = 0;
    for (const auto& q : prompts) longest = std::max<int>(longest, static_cast<int>(q.size()));
    o.max_seq = std::min(m.cfg.n_ctx, longest + n_new + 1);
    o.reserve = m.cfg.n_ctx;  // contiguous KV reserves the full context per sequence, as without paging
    o.page_size = a_.page_size;
    o.p = p;
    o.thresholds = thr;
    o.sample = s;
    measurement r;
    r.mode = name, r.p = p, r.batch = o.max_batch, r.new_tokens = n_new;
    for (const auto& q : prompts) r.prompt_tokens += static_cast<int>(q.size());
    r.prompt_tokens /= o.max_batch;
    for (int rep = 0; rep < std::max(1, repeats); ++rep) {
      session<Tag, T> sess(ctx_, m, o);
      const double t0 = be::now(ctx_);
      sess.start(prompts);
      const double t1 = be::now(ctx_);
      // CPU: OpenBLAS's prefill threads spin for a while after their last call; let them park before timing.
      if constexpr (!be::is_cuda) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      sess.decode(1);  // warm-up step (captures the CUDA Graph)
      const double t2 = be::now(ctx_);
      const double c2 = process_cpu_seconds();
      sess.decode(n_new - 2);
      const double t3 = be::now(ctx_);
      const double c3 = process_cpu_seconds();
      const double tok_s = n_new > 2 ? double(n_new - 2) * o.max_batch / (t3 - t2) : 0.0;
      if (rep > 0 && tok_s <= r.tok_s) continue;
      r.prefill_s = t1 - t0, r.decode_s = t3 - t2, r.timed_steps = n_new - 2, r.tok_s = tok_s;
      if constexpr (!be::is_cuda) r.cpu_s = c3 - c2, r.threads = ctx_.tag.num_threads();
      r.kv_allocated = attn == attn_kind::nocache ? 0 : sess.kv().bytes_allocated();
      r.kv_in_use = attn == attn_kind::nocache ? 0 : sess.kv().bytes_in_use(o.max_batch);
      std::vector<int> lens;
      for (const auto& q : prompts) lens.push_back(static_cast<int>(q.size()) + n_new - 1);
      r.kv_needed = sess.kv().bytes_needed(lens);
      r.tokens = sess.generated();
    }
    r.weight_bytes = m.weight_bytes_per_token(p);
    r.repeats = std::max(1, repeats);
    return r;
  }

  //! Several configurations measured in alternation (A B C A B C ...), best of `reps` each: on a shared machine the
  //! background load drifts over minutes, and alternating puts every configuration in the same time window, so
  //! their ratios are fair.
  struct run_spec {
    std::string name;
    const model_t* m;
    attn_kind attn;
    float p;
    prompts_t prompts;
    int n_new;
    std::vector<float> thr = {};  // threshold rule (empty: top-k at p)
    knobs k = {};                 // the decode step's A/B switches
  };
  std::vector<measurement> measure_alternating(const std::vector<run_spec>& specs, int reps) {
    std::vector<measurement> best(specs.size());
    for (int rep = 0; rep < std::max(1, reps); ++rep)
      for (std::size_t i = 0; i < specs.size(); ++i) {
        const auto& s = specs[i];
        auto r = measure(*s.m, s.name, s.attn, s.p, s.prompts, s.n_new, {}, 1, s.thr, s.k);
        if (rep == 0 || r.tok_s > best[i].tok_s) best[i] = std::move(r);
        best[i].repeats = rep + 1;
      }
    return best;
  }

  //! Teacher-forced logits of model m at sparsity p: for each text, prefill prompt_len tokens, then feed the next
  //! `steps` tokens one decode step at a time; the logits after each step. [texts][steps][V]
  //! thr: threshold rule (empty: top-k at p). kept (optional): the fraction of channels each (layer, site) kept,
  //! averaged over all texts and steps (index 4 * layer + site; session_options::count_kept: op by op, no graph).
  std::vector<std::vector<std::vector<float>>> forced_logits(const model_t& m, float p,
                                                             const std::vector<std::vector<std::int32_t>>& texts,
                                                             int prompt_len, int steps,
                                                             const std::vector<float>& thr = {},
                                                             std::vector<double>* kept = nullptr) {
    std::vector<std::vector<std::vector<float>>> out;
    if (kept) kept->assign(static_cast<std::size_t>(m.cfg.n_layer) * n_sites, 0.0);
    for (const auto& t : texts) {
      if (static_cast<int>(t.size()) < prompt_len + steps + 1) fail("forced_logits", "text too short");
      const prompts_t pr = {std::vector<std::int32_t>(t.begin(), t.begin() + prompt_len)};
      const prompts_t forced = {std::vector<std::int32_t>(t.begin() + prompt_len, t.begin() + prompt_len + steps + 1)};
      session_options o;
      o.max_seq = prompt_len + steps + 2;
      o.p = p;
      o.thresholds = thr;
      o.count_kept = kept != nullptr;
      session<Tag, T> s(ctx_, m, o);
      s.start(pr, &forced);
      out.emplace_back();
      for (int i = 0; i < steps; ++i) {
        s.decode(1);
        out.back().push_back(s.logits());
      }
      if (kept) {  // every text has `steps` steps: the mean over texts is the mean over positions
        const auto f = s.kept_fraction();
        for (std::size_t i = 0; i < f.size(); ++i) (*kept)[i] += f[i] / double(texts.size());
      }
    }
    return out;
  }
  //! Relative L2 error of the logits and top-1 agreement of a variant against the reference, over all positions.
  static nlohmann::json quality(const std::vector<std::vector<std::vector<float>>>& ref,
                                const std::vector<std::vector<std::vector<float>>>& var) {
    double err = 0;
    int agree = 0, n = 0;
    for (std::size_t t = 0; t < ref.size(); ++t)
      for (std::size_t i = 0; i < ref[t].size(); ++i) {
        const auto &lr = ref[t][i], &lv = var[t][i];
        double num = 0, den = 0;
        for (std::size_t j = 0; j < lr.size(); ++j) num += double(lv[j] - lr[j]) * (lv[j] - lr[j]), den += double(lr[j]) * lr[j];
        err += std::sqrt(num / std::max(den, 1e-30));
        agree += std::max_element(lr.begin(), lr.end()) - lr.begin() == std::max_element(lv.begin(), lv.end()) - lv.begin();
        ++n;
      }
    return {{"positions", n}, {"rel_err", n ? err / n : 0.0}, {"top1", n ? double(agree) / n : 0.0}};
  }

  // ---- text helpers --------------------------------------------------------------------------------------------------
  std::string demo_prompt() const {
    if (!a_.prompt.empty()) return a_.prompt;
    return "In a transformer decoder, the keys and values of the past tokens are kept in a cache, so that";
  }
  static std::string shorten(std::string s, std::size_t n) {
    for (auto& ch : s)
      if (ch == '\n' || ch == '\t' || ch == '\r') ch = ' ';
    if (s.size() > n) s = s.substr(0, n) + "...";
    return s;
  }

  // ---- the demo / a generation run -----------------------------------------------------------------------------------
  int generate(bool demo) {
    const int n_new = a_.new_tokens;
    const std::string prompt = demo_prompt();
    const auto ptoks = tok_.encode(prompt);
    sampling s;
    s.temperature = a_.temperature, s.top_k = a_.top_k, s.top_p = a_.top_p, s.seed = a_.sample_seed;
    auto want = [&](const char* m) { return a_.mode == "all" || a_.mode == m; };
    const auto t_begin = std::chrono::steady_clock::now();
    std::printf("frugal GPT-2 %s — %s, %s %s, %s\n", demo ? "demo" : "run", model_desc().c_str(), be::name,
                frugal::dtype_traits<T>::name, today().c_str());
    std::printf("device: %s\n", device_desc().c_str());
    std::printf("prompt (%zu tokens): \"%s\"\n", ptoks.size(), prompt.c_str());
    if (a_.weights.empty()) std::printf("(random weights: the continuations are noise; the tokens and times are real)\n");
    std::fflush(stdout);

    auto dense = upload_model<Tag, T>(ctx_, host_weights());
    const prompts_t prompts(a_.batch, ptoks);
    std::vector<measurement> rows;
    auto show = [&](const measurement& r, const std::string& text) {
      rows.push_back(r);
      std::printf("  %-18s %6.1f tok/s   %s\n", (r.mode + (r.p > 0 ? " p=" + fmt(r.p, 2) : "")).c_str(), r.tok_s,
                  shorten(text, 60).c_str());
      std::fflush(stdout);
    };
    std::printf("\ngenerating %d tokens per mode (batch %d)...\n", n_new, a_.batch);
    if (want("nocache") && a_.batch == 1) {
      auto r = measure(dense, "nocache", attn_kind::nocache, 0.f, prompts, n_new, s);
      show(r, tok_.decode(r.tokens[0]));
    }
    if (want("kv")) {
      auto r = measure(dense, "kv", attn_kind::contiguous, 0.f, prompts, n_new, s);
      show(r, tok_.decode(r.tokens[0]));
      if (a_.mega && be::is_cuda && a_.batch == 1) {
        auto rm = measure(dense, "kv_mega", attn_kind::contiguous, 0.f, prompts, n_new, s, 1, {}, {.mega = true});
        show(rm, tok_.decode(rm.tokens[0]));
      }
    }
    if (want("paged")) {
      auto r = measure(dense, "paged", attn_kind::paged, 0.f, prompts, n_new, s);
      show(r, tok_.decode(r.tokens[0]));
    }
    const bool thr = a_.select == "threshold";
    // --select threshold: the table of model m calibrated at p on its calibration tokens (none for top-k)
    auto thresholds = [&](const model_t& m, const patch_bundle* pbp) {
      if (!thr) return std::vector<float>{};
      const auto t0 = std::chrono::steady_clock::now();
      const auto ctoks = threshold_tokens(pbp);
      auto t = calibrate_thresholds<Tag, T>(ctx_, m, ctoks, a_.p);
      std::printf("  (thresholds: p=%.2f quantile of each layer's 4 block inputs on %s, %.1f s)\n", a_.p,
                  describe(ctoks).c_str(), secs(t0));
      return t;
    };
    const std::string sfx = thr ? "_thr" : "";
    if (want("teal")) {
      auto r = measure(dense, "teal" + sfx, attn_kind::contiguous, a_.p, prompts, n_new, s, 1, thresholds(dense, nullptr));
      show(r, tok_.decode(r.tokens[0]));
    }
    std::optional<model_t> folded;
    if (want("larosa")) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto ctoks = calibration_tokens(nullptr);
      const auto rot = larosa_calibrate<Tag, T>(ctx_, dense, ctoks, lopt());
      const double tc = secs(t0);
      folded.emplace(upload_model<Tag, T>(ctx_, larosa_apply<Tag>(ctx_, host_weights(), rot)));
      std::printf("  (LaRoSA: %s rotation calibrated on %s in %.1f s, folded in %.1f s)\n", a_.rotation.c_str(),
                  describe(ctoks).c_str(), tc, secs(t0) - tc);
      auto r = measure(*folded, "larosa" + sfx, attn_kind::contiguous, a_.p, prompts, n_new, s, 1,
                       thresholds(*folded, nullptr));
      show(r, tok_.decode(r.tokens[0]));
    }
    std::optional<patch_bundle> pb;
    if (want("patch") || want("combined")) {
      const auto t0 = std::chrono::steady_clock::now();
      pb.emplace(build_patch(tok_, texts_.train, host_weights(), a_.patch_size ? a_.patch_size : default_patch_size(),
                             a_.patch_vocab));
      const auto pt = pb->encode(prompt);
      std::printf("  (patch vocabulary: %d tokens from %s, %.1f s; the prompt takes %zu tokens instead of %zu)\n",
                  pb->size(), texts_.source.c_str(), secs(t0), pt.size(), ptoks.size());
      const prompts_t pp(a_.batch, pt);
      auto pm = upload_model<Tag, T>(ctx_, pb->weights_copy());
      if (want("patch")) {
        auto r = measure(pm, "patch", attn_kind::contiguous, 0.f, pp, n_new, s);
        show(r, pb->decode(r.tokens[0]));
      }
      if (want("combined")) {
        const auto rot = larosa_calibrate<Tag, T>(ctx_, pm, calibration_tokens(&*pb), lopt());
        auto fm = upload_model<Tag, T>(ctx_, larosa_apply<Tag>(ctx_, pb->weights_copy(), rot));
        auto r = measure(fm, "combined" + sfx, attn_kind::paged, a_.p, pp, n_new, s, 1, thresholds(fm, &*pb));
        show(r, pb->decode(r.tokens[0]));
      }
    }

    // The table.
    double base = 0;
    for (const auto& r : rows)
      if (r.mode == "kv") base = r.tok_s;
    std::printf("\n%-18s %10s %10s %12s %14s %12s\n", "mode", "tok/s", "vs kv", "MB read/tok", "KV MiB in use", "prompt tok");
    for (const auto& r : rows)  // "vs kv" only when the kv mode ran
      std::printf("%-18s %10.1f %10s %12.1f %14.2f %12d\n", (r.mode + (r.p > 0 ? " p=" + fmt(r.p, 2) : "")).c_str(),
                  r.tok_s, base > 0 ? (fmt(r.tok_s / base, 2) + "x").c_str() : "-", r.weight_bytes / 1e6,
                  r.kv_in_use / 1048576.0, r.prompt_tokens);
    std::printf("\n(tok/s: greedy decode of %d tokens after the prompt, batch %d, first step untimed; MB read/tok: "
                "weight bytes one decode token reads)\n",
                n_new, a_.batch);
    std::printf("total time %.1f s\n", secs(t_begin));
    return 0;
  }

  int default_patch_size() const { return texts_.source.rfind("built-in", 0) == 0 ? 300 : 10000; }

  static double secs(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  static std::string fmt(double v, int prec) {
    char b[32];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
  }

  // ---- the benchmark suite (bench.sh) -------------------------------------------------------------------------------
  int bench();

  // ---- --profile: where the time of one decode step goes ------------------------------------------------------------
  int profile() {
    const int n = a_.new_tokens < 16 ? 64 : a_.new_tokens, P = 50;
    std::vector<std::int32_t> pt;
    for (const auto& d : texts_.test) {
      auto ids = tok_.encode(d);
      pt.insert(pt.end(), ids.begin(), ids.end());
      if (static_cast<int>(pt.size()) >= P) break;
    }
    while (static_cast<int>(pt.size()) < P) pt.push_back(pt.empty() ? 0 : pt[pt.size() % std::max<std::size_t>(1, pt.size())]);
    pt.resize(P);
    const prompts_t prompts(a_.batch, pt);
    auto dense = upload_model<Tag, T>(ctx_, host_weights());
    nlohmann::json out;
    out["meta"] = {{"command", a_.command}, {"device", be::name}, {"device_name", device_desc()},
                   {"dtype", frugal::dtype_traits<T>::name}, {"model", cfg_.name}, {"date", today()}, {"batch", a_.batch},
                   {"steps", n}, {"prompt_tokens", P}};
    out["runs"] = nlohmann::json::array();
    // the decode step as it runs (fused norm / GELU in the GEMVs) and with separate LayerNorm and GELU ops
    struct pcfg {
      std::string name;
      float p;
      bool fused;
      std::vector<float> thr = {};
      int ahead = -1;
      bool kv_ahead = true;
      int splits = -1;
      bool plan_follows = true;
      bool cluster_merge = true;
    };
    std::vector<pcfg> cfgs = {{"kv", 0.f, true}, {"kv unfused", 0.f, false}};
    if (be::is_cuda) cfgs.push_back({"kv noahead", 0.f, true, {}, 0});  // the other dense GEMV kernel
    if (be::is_cuda) cfgs.push_back({"kv nokvahead", 0.f, true, {}, -1, false});  // attention waits before its copies
    if (be::is_cuda) cfgs.push_back({"kv libsplits", 0.f, true, {}, -1, true, 0});  // the library's K splits
    if (be::is_cuda) cfgs.push_back({"kv fixedplan", 0.f, true, {}, -1, true, -1, false});  // attention plan: max_seq
    if (be::is_cuda) cfgs.push_back({"kv gmerge", 0.f, true, {}, -1, true, -1, true, false});  // no cluster merge
    if (a_.p > 0) cfgs.push_back({"teal", a_.p, true});
    if (a_.p > 0 && a_.select == "threshold")  // TEAL's rule: no LayerNorm op, no top-k selection
      cfgs.push_back({"teal_thr", a_.p, true, calibrate_thresholds<Tag, T>(ctx_, dense, threshold_tokens(nullptr), a_.p)});
    for (const auto& [name, p, fused, thr, ahead, kv_ahead, splits, plan_follows, cluster_merge] : cfgs) {
      session_options o;
      o.attn = attn_kind::contiguous, o.max_batch = a_.batch, o.max_seq = P + 2 * n + 8, o.p = p, o.fused = fused;
      o.thresholds = thr;
      o.weights_ahead = ahead;
      o.kv_ahead = kv_ahead;
      o.decode_splits = splits;
      o.attn_plan_follows = plan_follows;
      o.attn_cluster_merge = cluster_merge;
      o.attn_splits = a_.attn_splits;
      double graph_s = 0;
      {
        session<Tag, T> s(ctx_, dense, o);
        s.start(prompts);
        s.decode(2);
        const double t0 = be::now(ctx_);
        s.decode(n);
        graph_s = (be::now(ctx_) - t0) / n;
      }
      session<Tag, T> s(ctx_, dense, o);
      s.start(prompts);
      s.decode(2);
      const auto ops = s.profile(n);
      double sum = 0;
      for (const auto& e : ops) sum += e.second;
      std::printf("\n%s p=%.2f, %s %s, GPT-2 %s, batch %d: one decode step\n", name.c_str(), p, be::name,
                  frugal::dtype_traits<T>::name, cfg_.name.c_str(), a_.batch);
      std::printf("  %-26s %10s %7s\n", "op (all layers)", "us/step", "share");
      nlohmann::json jo = nlohmann::json::array();
      for (const auto& [op, sec] : ops) {
        std::printf("  %-26s %10.1f %6.1f%%\n", op.c_str(), sec * 1e6, 100 * sec / sum);
        jo.push_back({{"op", op}, {"us", sec * 1e6}});
      }
      std::printf("  %-26s %10.1f   (op by op, an event after each op)\n", "sum", sum * 1e6);
      std::printf("  %-26s %10.1f   (the same step replayed as one CUDA Graph / plain loop)\n", "whole step", graph_s * 1e6);
      std::printf("  weight bytes / step: %.1f MB -> %.0f GB/s achieved in the whole step\n",
                  dense.weight_bytes_per_token(p) / 1e6, dense.weight_bytes_per_token(p) / graph_s / 1e9);
      out["runs"].push_back({{"mode", name}, {"p", p}, {"fused", fused}, {"ops", jo}, {"sum_us", sum * 1e6},
                             {"step_us", graph_s * 1e6},
                             {"weight_bytes", dense.weight_bytes_per_token(p)}});
    }
    std::ofstream(a_.profile_out) << out.dump(1) << "\n";
    return 0;
  }

  const cli& a_;
  typename be::context ctx_;
  config cfg_;
  frugal::gpt2_tokenizer tok_;
  text_set texts_;
  std::optional<calibration_text> base_calibration_;  // calibration(nullptr), made once
};

}  // namespace gpt2

#include "bench.hpp"
