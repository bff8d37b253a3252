#!/usr/bin/env python3
"""Plots of a `gpt2 --bench` JSON (examples/gpt2/bench.sh): tokens per text, KV memory, decode tok/s, speedup vs
dense with KV cache, logits quality, and one dashboard. Titles carry device, dtype, model and date.

usage: python3 examples/gpt2/plot.py RESULT.json [OUT_PREFIX]   (default prefix: docs/plots/gpt2_<device>_<dtype>_<model>)
Also writes RESULT.md beside the JSON: the measured numbers as markdown tables (docs/results.md quotes them).
Needs Debian's python3-matplotlib.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"nocache": "#999999", "kv": "#1f77b4", "paged": "#17becf", "teal": "#ff7f0e", "larosa": "#2ca02c",
          "patch": "#9467bd", "combined": "#d62728", "kv_mega": "#1a3d6b",
          "teal_thr": "#ffbb78", "larosa_thr": "#98df8a"}


def title(d, what):
    m = d["meta"]
    dev = m.get("device_name", m["device"])
    return f"GPT-2 {m['model']} {what}\n{m['device']} ({dev}), {m['dtype']}, {m['date']}"


def label(r):
    return r["mode"] + (f" p={r['p']:.2f}" if r.get("p", 0) > 0 else "")


def plot_tokens(ax, d):
    p = d.get("patch")
    if not p:
        ax.text(0.5, 0.5, "no patch data", ha="center")
        return
    texts = sorted(p["texts"], key=lambda t: t["base"])
    x = range(len(texts))
    ax.bar(x, [t["base"] for t in texts], color=COLORS["kv"], label="GPT-2 BPE")
    ax.bar(x, [t["patch"] for t in texts], color=COLORS["patch"], label=f"patch vocabulary ({p['size']} tokens)")
    ax.set_xlabel("held-out text (sorted by length)")
    ax.set_ylabel("tokens")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"tokens per text: {p['tokens_base']} -> {p['tokens_patch']} "
                 f"({100 * p['token_reduction']:.1f}% fewer)", fontsize=9)


def plot_kv(ax, d):
    k = d.get("kv_memory")
    bars = []
    if k:
        mib = 1 << 20
        bars += [(f"contiguous\n(n_ctx each)", k["contiguous_reserved_bytes"] / mib, COLORS["kv"]),
                 ("paged", k["paged_base"]["bytes"] / mib, COLORS["paged"]),
                 ("paged +\npatch tokens", k["paged_patch"]["bytes"] / mib, COLORS["patch"]),
                 ("exact\n(tokens x row)", k["paged_base"]["exact_bytes"] / mib, "#cccccc")]
        ax.set_title(f"KV memory for {k['texts']} held-out texts", fontsize=9)
    else:
        ax.set_title("KV memory", fontsize=9)
    for b in d.get("batch", []):
        if b["batch"] >= 8:
            bars.append((f"b={b['batch']} {b['mode']}\n(decode run)", b["kv_bytes_in_use"] / (1 << 20),
                         COLORS.get(b["mode"], "#888888")))
    ax.bar(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b[0] for b in bars], fontsize=7)
    ax.set_ylabel("MiB")
    ax.set_yscale("log")
    for i, b in enumerate(bars):
        ax.text(i, b[1], f"{b[1]:.0f}", ha="center", va="bottom", fontsize=7)


def decode_rows(d):
    rows = [r for r in d.get("modes", []) if r["new_tokens"] == min(x["new_tokens"] for x in d["modes"])]
    rows += [r for r in d.get("sparse", [])
             if "tok_s" in r and r["mode"] in ("teal", "larosa", "teal_thr", "larosa_thr") and r["p"] > 0]
    return rows


def plot_toks(ax, d):
    rows = decode_rows(d)
    ax.barh(range(len(rows)), [r["tok_s"] for r in rows], color=[COLORS.get(r["mode"], "#888") for r in rows])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label(r) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("decode tokens/s (batch 1)")
    for i, r in enumerate(rows):
        ax.text(r["tok_s"], i, f" {r['tok_s']:.0f}", va="center", fontsize=7)
    batch = d.get("batch", [])
    if batch:
        txt = "batch: " + ", ".join(f"{b['mode']} b={b['batch']} {b['tok_s']:.0f}" for b in batch if b["batch"] > 1)
        ax.set_title("decode speed\n" + txt, fontsize=7)
    else:
        ax.set_title("decode speed", fontsize=9)


def plot_speedup(ax, d):
    kv = [r for r in d.get("modes", []) if r["mode"] == "kv"]
    base = kv[0]["tok_s"] if kv else None
    sp = d.get("sparse", [])
    base_cpu = next((r.get("tok_s_cpu_time", 0) for r in sp if r["mode"] == "kv"), 0)
    for method in ("teal", "larosa", "teal_thr", "larosa_thr"):  # *_thr: calibrated thresholds instead of top-k
        rows = sorted([r for r in sp if r["mode"] == method and "tok_s" in r and r["p"] > 0], key=lambda r: r["p"])
        if rows and (base or "speedup_vs_kv" in rows[0]):
            ax.plot([r["p"] for r in rows], [r.get("speedup_vs_kv") or r["tok_s"] / base for r in rows],
                    "o-" if not method.endswith("_thr") else "D--", color=COLORS[method], label=f"{method} (wall time)")
        if rows and base_cpu:  # shared CPU: the rate per CPU-second, immune to time slices lost to other processes
            ax.plot([r["p"] for r in rows], [r["tok_s_cpu_time"] / base_cpu for r in rows], "^:",
                    color=COLORS[method], label=f"{method} (CPU time)")
    ceil = sorted([r for r in d.get("sparse", []) if "ceiling" in r and r["mode"] == "teal"], key=lambda r: r["p"])
    if ceil:
        ax.plot([r["p"] for r in ceil], [r["ceiling"] for r in ceil], "k--", label="ceiling (bytes read)")
    if base:
        for r in d.get("modes", []):
            if r["mode"] in ("nocache", "paged", "patch", "combined", "kv_mega") and r["new_tokens"] == kv[0]["new_tokens"]:
                ax.axhline(r["tok_s"] / base, color=COLORS[r["mode"]], lw=0.8, ls=":", label=f"{r['mode']} (b=1)")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("sparsity p (fraction of each block input dropped)")
    ax.set_ylabel("decode speedup vs dense with KV cache")
    ax.legend(fontsize=7)
    ax.set_title("speedup vs dense-with-cache", fontsize=9)


def plot_quality(ax, d):
    for method in ("teal", "larosa"):
        rows = sorted([r for r in d.get("sparse", []) if r["mode"] == method and "quality" in r], key=lambda r: r["p"])
        if rows:
            ax.plot([r["p"] for r in rows], [r["quality"]["rel_err"] for r in rows], "o-", color=COLORS[method],
                    label=f"{method}: logits rel. error")
            ax.plot([r["p"] for r in rows], [1 - r["quality"]["top1"] for r in rows], "s--", color=COLORS[method],
                    label=f"{method}: top-1 disagreement")
    ax.set_xlabel("sparsity p")
    ax.set_ylabel("vs dense, same tokens")
    ax.legend(fontsize=7)
    ax.set_title("quality (random weights: a measurement, not a claim)", fontsize=9)


def plot_kv_vs_nocache(ax, d):
    rows = d.get("modes", [])
    lens = sorted({r["new_tokens"] for r in rows if r["mode"] in ("nocache", "kv", "paged")})
    w = 0.25
    for i, mode in enumerate(("nocache", "kv", "paged")):
        vals = [next((r["tok_s"] for r in rows if r["mode"] == mode and r["new_tokens"] == n), 0) for n in lens]
        ax.bar([j + (i - 1) * w for j in range(len(lens))], vals, w, color=COLORS[mode], label=mode)
        for j, v in enumerate(vals):
            ax.text(j + (i - 1) * w, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(lens)))
    ax.set_xticklabels([f"50 + {n} new" for n in lens])
    ax.set_ylabel("decode tokens/s")
    shown = [r["tok_s"] for r in rows if r["mode"] in ("nocache", "kv", "paged") and r["tok_s"] > 0]
    if shown and max(shown) > 20 * min(shown):  # (bars from zero otherwise: a log axis would exaggerate)
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("KV cache vs recomputing the prefix", fontsize=9)


def fmt_b(b):
    return f"{b / 1e6:.1f} MB"


def markdown(d):
    """Tables of the measured numbers (pasted into docs/results.md)."""
    m = d["meta"]
    out = [f"Measured {m['date']} on {m['device']} ({m.get('device_name', '')}), {m['dtype']}, GPT-2 {m['model']} "
           f"({m.get('weights', '')}); copy bandwidth {m['copy_bandwidth_GBps']:.1f} GB/s (read+write); "
           f"machine load average {m.get('loadavg_start', -1):.1f} -> {m.get('loadavg_end', -1):.1f}.",
           f"Command: `{m['command']}`", ""]
    modes = d.get("modes", [])
    if modes:
        cpu = any(r.get("tok_s_cpu_time", 0) > 0 for r in modes)
        out += ["| mode | new tokens | decode tok/s | " + ("CPU-time tok/s | " if cpu else "") +
                "ms/token | weight bytes/token | of copy BW | KV in use |",
                "|---|---|---|---|---|---|---|" + ("---|" if cpu else "")]
        for r in modes:
            c = f"{r.get('tok_s_cpu_time', 0):.1f} | " if cpu else ""
            bw = f"{100 * r['roofline_fraction']:.0f}%" if "roofline_fraction" in r else ""
            out.append(f"| {label(r)} | {r['new_tokens']} | {r['tok_s']:.1f} | {c}{r['ms_per_step']:.3f} | "
                       f"{fmt_b(r['weight_bytes_per_token'])} | {bw} | {r['kv_bytes_in_use'] / 2**20:.1f} MiB |")
        out.append("")
    batch = d.get("batch", [])
    if batch:
        cpu = any(r.get("tok_s_cpu_time", 0) > 0 for r in batch)
        out += ["| batch | mode | decode tok/s (all sequences) | " + ("CPU-time tok/s | " if cpu else "") +
                "KV in use | KV allocated |", "|---|---|---|---|---|" + ("---|" if cpu else "")]
        for r in batch:
            c = f"{r.get('tok_s_cpu_time', 0):.1f} | " if cpu else ""
            out.append(f"| {r['batch']} | {r['mode']} | {r['tok_s']:.1f} | {c}{r['kv_bytes_in_use'] / 2**20:.1f} MiB | "
                       f"{r['kv_bytes_allocated'] / 2**20:.1f} MiB |")
        out.append("")
    sp = d.get("sparse", [])
    if sp:
        cpu = any(r.get("tok_s_cpu_time", 0) > 0 for r in sp)
        base_cpu = next((r.get("tok_s_cpu_time", 0) for r in sp if r["mode"] == "kv"), 0)
        out += ["| method | p | decode tok/s | speedup vs dense (same run) | " +
                ("CPU-time tok/s | CPU-time speedup | " if cpu else "") +
                "ceiling (bytes) | weight bytes/token | logits rel. error | top-1 agreement |",
                "|---|---|---|---|---|---|---|---|" + ("---|---|" if cpu else "")]
        for r in sp:
            q = r.get("quality", {})
            c = (f"{r.get('tok_s_cpu_time', 0):.1f} | {r.get('tok_s_cpu_time', 0) / base_cpu:.2f}x | "
                 if cpu and base_cpu else "")
            out.append(f"| {r['mode']} | {r['p']:.2f} | {r.get('tok_s', 0):.1f} | {r.get('speedup_vs_kv', 0):.2f}x | " + c +
                       f"{r.get('ceiling', 0):.2f}x | {fmt_b(r.get('weight_bytes_per_token', 0))} | "
                       f"{q.get('rel_err', 0):.3g} | {100 * q.get('top1', 1):.0f}% |")
        out.append("")
    p = d.get("patch")
    if p:
        out.append(f"Patch vocabulary: {p['size']} tokens (built in {p['build_seconds']:.1f} s); {len(p['texts'])} "
                   f"held-out texts: {p['tokens_base']} -> {p['tokens_patch']} tokens "
                   f"({100 * p['token_reduction']:.1f}% fewer).")
    t = d.get("time_per_text")
    if t:
        out.append(f"Time per text ({len(t['texts'])} texts, token by token): base {t['base_s']:.2f} s "
                   f"({t['base_tokens']} tokens), patch {t['patch_s']:.2f} s ({t['patch_tokens']} tokens, "
                   f"{t['patch_speedup']:.2f}x), patch + paged + LaRoSA p={t['combined_p']} {t['combined_s']:.2f} s "
                   f"({t['combined_speedup']:.2f}x).")
    k = d.get("kv_memory")
    if k:
        out.append(f"KV memory for {k['texts']} held-out texts: contiguous at n_ctx "
                   f"{k['contiguous_reserved_bytes'] / 2**20:.0f} MiB, paged {k['paged_base']['bytes'] / 2**20:.0f} MiB "
                   f"(waste {100 * k['paged_base']['waste']:.1f}%), paged with patch tokens "
                   f"{k['paged_patch']['bytes'] / 2**20:.0f} MiB.")
    c = d.get("larosa_calibration")
    if c:
        out.append(f"LaRoSA: {c['rotation']} rotation, {c['rotations']} Q from {c['tokens']} calibration tokens "
                   f"({c['seconds']:.1f} s), folded in {c['fold_seconds']:.1f} s.")
    return "\n".join(out) + "\n"


def profile_main(d, prefix):
    """`gpt2 --profile` JSON: where one decode step goes, op by op (each op timed with an event after it)."""
    m = d["meta"]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.9 * len(d["runs"])))
    ops = []
    for r in d["runs"]:
        for o in r["ops"]:
            if o["op"] not in ops:
                ops.append(o["op"])
    cmap = plt.get_cmap("tab20")
    labelled = set()  # each op once in the legend (runs differ: the unfused step has LayerNorm and GELU ops)
    for i, r in enumerate(d["runs"]):
        left = 0.0
        for j, op in enumerate(ops):
            us = next((o["us"] for o in r["ops"] if o["op"] == op), None)
            if us is None:
                continue
            ax.barh(i, us, left=left, color=cmap(j % 20), label=op if op not in labelled else None)
            labelled.add(op)
            left += us
        ax.text(left, i, f"  op by op {r['sum_us']:.0f} us; whole step (graph) {r['step_us']:.0f} us", va="center",
                fontsize=8)
    ax.set_yticks(range(len(d["runs"])))
    ax.set_yticklabels([f"{r['mode']} p={r['p']:.2f}" for r in d["runs"]])
    ax.set_xlabel("microseconds per decode step (all layers)")
    ax.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.55 if len(d["runs"]) < 3 else -0.3))
    ax.set_xlim(0, 1.6 * max(r["sum_us"] for r in d["runs"]))
    fig.suptitle(f"GPT-2 {m['model']} decode step, op by op (batch {m['batch']})\n{m['device']} ({m['device_name']}), "
                 f"{m['dtype']}, {m['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(f"{prefix}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"plot.py: wrote {prefix}.png")


def main():
    src = sys.argv[1]
    d = json.load(open(src))
    m = d["meta"]
    if "runs" in d:
        profile_main(d, sys.argv[2] if len(sys.argv) > 2 else os.path.join(
            "docs", "plots", f"gpt2_{m['device']}_{m['dtype']}_{m['model']}_profile"))
        return
    prefix = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        "docs", "plots", f"gpt2_{m['device']}_{m['dtype']}_{m['model']}")
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    singles = [("tokens", plot_tokens, "tokens per text"), ("kv_memory", plot_kv, "KV memory"),
               ("decode", plot_toks, "decode tokens/s"), ("speedup", plot_speedup, "speedup"),
               ("quality", plot_quality, "sparse-decode quality"), ("kv_vs_nocache", plot_kv_vs_nocache, "KV cache")]
    # Panels whose data the run has (the XL set measures no patch vocabulary, KV memory or no-cache mode).
    present = {"tokens": bool(d.get("patch")),
               "kv_memory": bool(d.get("kv_memory")) or any(b["batch"] >= 8 for b in d.get("batch", [])),
               "kv_vs_nocache": any(r["mode"] == "nocache" for r in d.get("modes", []))}
    singles = [t for t in singles if present.get(t[0], True)]
    for name, fn, what in singles:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        fn(ax, d)
        fig.suptitle(title(d, what), fontsize=10)
        fig.tight_layout()
        fig.savefig(f"{prefix}_{name}.png", dpi=110)
        plt.close(fig)
    cols = 3 if len(singles) > 4 else 2
    rows = (len(singles) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 5 * rows), squeeze=False)
    for ax, (name, fn, what) in zip(axes.flat, singles):
        fn(ax, d)
    for ax in list(axes.flat)[len(singles):]:
        ax.axis("off")
    fig.suptitle(title(d, "dashboard") + f"\n{m.get('weights', '')}; {m.get('texts', '')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(f"{prefix}_dashboard.png", dpi=100)
    plt.close(fig)
    md = os.path.splitext(src)[0] + ".md"
    with open(md, "w") as f:
        f.write(markdown(d))
    names = ",".join([t[0] for t in singles] + ["dashboard"])
    print(f"plot.py: wrote {prefix}_{{{names}}}.png and {md}")


if __name__ == "__main__":
    main()
