#!/usr/bin/python3
"""Plots and tables for docs/gemv.md from the committed Google Benchmark JSON (Debian: python3-matplotlib).

    /usr/bin/python3 docs/plot_gemv.py        # writes docs/plots/gemv_speedup_*.png
    /usr/bin/python3 docs/plot_gemv.py --tables  # also prints the markdown tables used in docs/gemv.md

Inputs: docs/data/gemv_cuda_h100.json (bench_gemv), docs/data/gemv_cpu.json (bench_gemv_cpu).
Speedup = baseline time / variant time, both medians of the same run; the baseline is the faster of the two cuBLAS
calls (cublas, cublas_t) on CUDA and of the two OpenBLAS calls (openblas, openblas_t) on the CPU.
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
PLOTS = os.path.join(HERE, "plots")

GPT2 = ["2304x768", "768x768", "3072x768", "768x3072", "50257x768", "1600x1600"]
SEQ = ["gpt2-124m-12L", "gpt2-xl-48L"]
SHAPES = ["4096x4096", "11008x4096", "4096x11008", "12288x4096", "14336x4096", "4800x1600", "6400x1600", "1600x6400"]
LLAMA = SHAPES[:5]
SPARSITY = [0, 25, 40, 50, 75, 90]


def load(path):
    """{(device, dtype, shape, variant): (median us, GB/s)}"""
    with open(path) as f:
        d = json.load(f)
    out = {}
    for b in d["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = re.sub(r"/(iterations|repeats|min_time|manual_time|real_time).*$", "", b["run_name"])
        _, dev, dt, shape, var = name.split("/")
        t = b["real_time"] * {"us": 1.0, "ms": 1e3, "ns": 1e-3, "s": 1e6}[b["time_unit"]]
        out[(dev, dt, shape, var)] = (t, b.get("GB/s", b.get("us_per_gemv", 0.0)))  # GB/s, or µs per GEMV
    return out, d["context"]


def baseline(r, dev, dt, shape, suffix=""):
    names = ["cublas", "cublas_t"] if dev == "cuda" else ["openblas", "openblas_t"]
    ts = [r[(dev, dt, shape, n + suffix)][0] for n in names if (dev, dt, shape, n + suffix) in r]
    return min(ts) if ts else None


def var_name(kind, s):
    if kind == "dense" or (s == 0 and kind == "list"):
        return "dense"
    return f"{kind}_s{s}"


def speedup(r, dev, dt, shape, var, suffix=""):
    base = baseline(r, dev, dt, shape, suffix)
    key = (dev, dt, shape, var + suffix)
    if base is None or key not in r:
        return None
    return base / r[key][0]


def plot_cuda(r, ctx):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9), sharex=True, sharey=True)
    s_ideal = [x / 100 for x in range(0, 91)]
    for col, dt in enumerate(["bf16", "f16"]):
        for row, kind in enumerate(["thresh", "topk"]):
            ax = axes[row][col]
            ax.plot([s * 100 for s in s_ideal], [1 / (1 - s) for s in s_ideal], "k--", lw=1.5, label="ideal 1/(1-s)")
            ax.axhline(1.0, color="grey", lw=0.8)
            for shape in SHAPES:
                xs, ys = [], []
                for s in SPARSITY:
                    v = speedup(r, "cuda", dt, shape, f"{kind}_s{s}")
                    if v is not None:
                        xs.append(s)
                        ys.append(v)
                ax.plot(xs, ys, "o-", ms=3, lw=1, label=shape)
            ax.set_title(f"{dt}, b=1: {'sparse_gemv_threshold' if kind == 'thresh' else 'sparse_gemv_topk (fused)'}")
            ax.set_yscale("log", base=2)
            ax.set_yticks([0.5, 1, 2, 4, 8, 10])
            ax.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("activation sparsity s (%)")
            if col == 0:
                ax.set_ylabel("speedup vs cuBLAS dense GEMV (same run)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    gpu = ctx.get("gpu", "H100")
    fig.suptitle(f"frugal sparse GEMV vs cuBLAS dense, {gpu} (bench_gemv, {ctx.get('date', '')[:10]})")
    fig.tight_layout()
    os.makedirs(PLOTS, exist_ok=True)
    out = os.path.join(PLOTS, "gemv_speedup_h100.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


def plot_cpu(r, ctx):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    s_ideal = [x / 100 for x in range(0, 91)]
    ax.plot([s * 100 for s in s_ideal], [1 / (1 - s) for s in s_ideal], "k--", lw=1.5, label="ideal 1/(1-s)")
    ax.axhline(1.0, color="grey", lw=0.8)
    for shape in LLAMA:
        xs, ys = [], []
        for s in [0, 25, 50, 75, 90]:
            v = speedup(r, "cpu", "f32", shape, "dense" if s == 0 else f"thresh_s{s}")
            if v is not None:
                xs.append(s)
                ys.append(v)
        ax.plot(xs, ys, "o-", ms=3, lw=1, label=shape)
    ax.set_yscale("log", base=2)
    ax.set_yticks([0.5, 1, 2, 4, 8, 10])
    ax.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("activation sparsity s (%)")
    ax.set_ylabel("speedup vs OpenBLAS sgemv (same run)")
    ax.set_title(f"CPU f32, 2 threads, b=1 ({ctx.get('date', '')[:10]})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(PLOTS, exist_ok=True)
    out = os.path.join(PLOTS, "gemv_speedup_cpu.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


def tables_cuda(r):
    for dt in ["bf16", "f16"]:
        print(f"\n#### {dt}, b = 1 (median µs; speedup vs the faster cuBLAS call; GB/s on bytes touched)\n")
        print("| N×K | cuBLAS µs | dense | thresh s=.25 | s=.4 | s=.5 | s=.75 | s=.9 | topk s=.5 | topk s=.75 | list s=.5 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for shape in SHAPES:
            base = baseline(r, "cuda", dt, shape)
            if base is None:
                continue
            cells = [f"{base:.1f}"]
            for var in ["dense", "thresh_s25", "thresh_s40", "thresh_s50", "thresh_s75", "thresh_s90", "topk_s50",
                        "topk_s75", "list_s50"]:
                k = ("cuda", dt, shape, var)
                if k in r:
                    t, g = r[k]
                    cells.append(f"{t:.1f} µs **{base / t:.2f}x** {g:.0f}")
                else:
                    cells.append("–")
            print(f"| {shape} | " + " | ".join(cells) + " |")
    print("\n#### Batches, bf16 and f16 (median µs; speedup vs the faster cuBLAS call at the same b)\n")
    print("| dtype | N×K | b | cuBLAS µs | dense | thresh s=.5 (independent rows) | shared mask s=.5 | list s=.5 |")
    print("|---|---|---|---|---|---|---|---|")
    for dt in ["bf16", "f16"]:
        for shape in ["4096x4096", "14336x4096"]:
            for b in [1, 2, 4, 8, 16]:
                suf = "" if b == 1 else f"_b{b}"
                base = baseline(r, "cuda", dt, shape, suf)
                if base is None:
                    continue
                cells = [f"{base:.1f}"]
                for var in ["dense", "thresh_s50", "shared_s50", "list_s50"]:
                    k = ("cuda", dt, shape, var + suf)
                    cells.append(f"{r[k][0]:.1f} (**{base / r[k][0]:.2f}x**)" if k in r else "–")
                print(f"| {dt} | {shape} | {b} | " + " | ".join(cells) + " |")
    f32 = [("cuda", "f32", "4096x4096", v) for v in ["cublas", "cublas_t", "dense", "thresh_s50"]]
    if all(k in r for k in f32):
        base = baseline(r, "cuda", "f32", "4096x4096")
        print("\n#### f32, 4096×4096, b = 1\n")
        print("| cuBLAS µs | dense | thresh s=.5 |")
        print("|---|---|---|")
        print(f"| {base:.1f} | {r[f32[2]][0]:.1f} (**{base / r[f32[2]][0]:.2f}x**) | "
              f"{r[f32[3]][0]:.1f} (**{base / r[f32[3]][0]:.2f}x**) |")


def tables_gpt2(r):
    for dt in ["bf16", "f16"]:
        if baseline(r, "cuda", dt, GPT2[0]) is None:
            continue
        print(f"\n#### GPT-2 shapes, {dt}, b = 1 (median µs; speedup vs the faster cuBLAS call; GB/s on bytes touched)\n")
        cols = ["dense", "dense_ln", "dense_ln_gelu", "thresh_s50", "thresh_s75", "topk_s50", "topk_s75",
                "thresh_s50_ln_gelu", "topk_s50_rms_gelu"]
        print("| N×K | cuBLAS µs | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols))
        for shape in GPT2:
            base = baseline(r, "cuda", dt, shape)
            if base is None:
                continue
            cells = [f"{base:.1f}"]
            for var in cols:
                k = ("cuda", dt, shape, var)
                cells.append(f"{r[k][0]:.1f} µs **{base / r[k][0]:.2f}x** {r[k][1]:.0f}" if k in r else "–")
            print(f"| {shape} | " + " | ".join(cells) + " |")


def tables_seq(r):
    cols = ["cublas", "cublas_t", "dense", "dense_pdl", "fused_pdl", "thresh_s50", "thresh_s50_pdl", "topk_s50_pdl"]
    rows = [(dt, m) for dt in ["bf16", "f16"] for m in SEQ if ("cuda", dt, m, "cublas") in r]
    if not rows:
        return
    print("\n#### Decode-step GEMV chains in one CUDA Graph (median µs per graph; µs per GEMV; speedup vs the faster "
          "cuBLAS chain)\n")
    print("| dtype | chain | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for dt, m in rows:
        base = min(r[("cuda", dt, m, c)][0] for c in ["cublas", "cublas_t"] if ("cuda", dt, m, c) in r)
        cells = []
        for c in cols:
            k = ("cuda", dt, m, c)
            cells.append(f"{r[k][0]:.0f} ({r[k][1]:.2f}/GEMV) **{base / r[k][0]:.2f}x**" if k in r else "–")
        print(f"| {dt} | {m} | " + " | ".join(cells) + " |")


def tables_b1(r, dt, shapes):
    cols = ["dense", "thresh_s50", "thresh_s75", "topk_s50"]
    print(f"\n#### {dt}, b = 1 (median µs; speedup vs the faster cuBLAS call; GB/s on bytes touched)\n")
    print("| N×K | cuBLAS µs | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for shape in shapes:
        base = baseline(r, "cuda", dt, shape)
        if base is None:
            continue
        cells = [f"{base:.1f}"]
        for var in cols:
            k = ("cuda", dt, shape, var)
            cells.append(f"{r[k][0]:.1f} µs **{base / r[k][0]:.2f}x** {r[k][1]:.0f}" if k in r else "–")
        print(f"| {shape} | " + " | ".join(cells) + " |")


def tables_tuning(r, shapes=("4096x4096", "14336x4096", "4096x11008", "1600x6400", "4800x1600"), segs=(128, 256, 512),
                  sps=(2, 4, 8)):
    print("\n#### Launch-shape tuning, bf16, b = 1 (median µs; gemv_options::segment_bytes / splits pinned)\n")
    heads = [f"{seg} B sp{sp}" for seg in segs for sp in sps]
    print("| N×K | variant | cuBLAS | auto (run) | " + " | ".join(heads) + " |")
    print("|---|---|---|---|" + "---|" * len(heads))
    for shape in shapes:
        for var, auto in [("dense", "dense"), ("thresh_s50", "thresh_s50")]:
            cells = []
            for seg in segs:
                for sp in sps:
                    k = ("cuda", "bf16", shape, f"{var}_sp{sp}_seg{seg}")
                    cells.append(f"{r[k][0]:.1f}" if k in r else "–")
            if all(c == "–" for c in cells):
                continue
            best = min(float(c) for c in cells if c != "–")
            cells = [f"**{c}**" if c != "–" and float(c) == best else c for c in cells]
            a = r.get(("cuda", "bf16", shape, auto), r.get(("cuda", "bf16", shape, "thresh_s0"), (float("nan"),)))[0]
            print(f"| {shape} | {var} | {baseline(r, 'cuda', 'bf16', shape):.1f} | {a:.1f} | " + " | ".join(cells) + " |")


def tables_cpu(r):
    print("\n#### CPU f32, b = 1 (median ms; speedup vs the faster OpenBLAS call; GB/s on bytes touched)\n")
    print("| N×K | OpenBLAS ms | dense | thresh s=.25 | s=.5 | s=.75 | s=.9 | list s=.5 | topk s=.5 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in LLAMA:
        base = baseline(r, "cpu", "f32", shape)
        if base is None:
            continue
        cells = [f"{base / 1e3:.2f}"]
        for var in ["dense", "thresh_s25", "thresh_s50", "thresh_s75", "thresh_s90", "list_s50", "topk_s50"]:
            k = ("cpu", "f32", shape, var)
            if k in r:
                t, g = r[k]
                cells.append(f"{t / 1e3:.2f} **{base / t:.2f}x** {g:.0f}")
            else:
                cells.append("–")
        print(f"| {shape} | " + " | ".join(cells) + " |")


def main():
    tables = "--tables" in sys.argv
    cuda_json = os.path.join(DATA, "gemv_cuda_h100.json")
    cpu_json = os.path.join(DATA, "gemv_cpu.json")
    if os.path.exists(cuda_json):
        r, ctx = load(cuda_json)
        plot_cuda(r, ctx)
        if tables:
            tables_cuda(r)
            tables_gpt2(r)
            tables_seq(r)
            tables_tuning(r)
    # This session's H100 runs (bf16, commit 7f6743c kernel): single calls incl. GPT-2 shapes and launch tuning, and
    # the decode-step GEMV chains captured in CUDA Graphs.
    gpt2_json = os.path.join(DATA, "gemv_cuda_h100_gpt2.json")
    chain_json = os.path.join(DATA, "gemv_cuda_h100_chain.json")
    if tables and os.path.exists(gpt2_json):
        r, ctx = load(gpt2_json)
        print(f"\n### {gpt2_json} ({ctx.get('date', '')})")
        tables_b1(r, "bf16", SHAPES + GPT2)
        tables_gpt2(r)
        tables_tuning(r, ["768x768", "768x3072", "4800x1600", "1600x6400"], [128, 512], [1, 2, 4, 8])
    if tables and os.path.exists(chain_json):
        r, ctx = load(chain_json)
        print(f"\n### {chain_json} ({ctx.get('date', '')})")
        tables_seq(r)
    if os.path.exists(cpu_json):
        r, ctx = load(cpu_json)
        plot_cpu(r, ctx)
        if tables:
            tables_cpu(r)


if __name__ == "__main__":
    main()
