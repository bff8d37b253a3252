"""Markdown tables for docs/sparsify.md from the benchmark JSON files (docs/data/sparsify/*.json).

    python3 benchmarks/sparsify/make_tables.py docs/data/sparsify
"""
import json
import os
import sys


def load(path):
    with open(path) as f:
        d = json.load(f)
    out = {}
    for b in d.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        name = b["name"].replace("/manual_time", "").replace("/real_time", "")
        out[name] = b["real_time"]
    return d.get("context", {}), out


def cuda_table(res, dtype):
    rows = ["| rows×n | frugal topk | frugal_l2hot | mask | select | CUB seg. sort | speedup | empty kernel (floor) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in (1, 16, 256):
        for n in (768, 4096, 11008, 32768):
            base = f"topk/cuda/{dtype}/{r}x{n}/"
            if base + "frugal" not in res:
                continue
            g = lambda v: res.get(base + v)
            f = lambda v: "—" if g(v) is None else f"{g(v):.1f}"
            sp = "—" if g("cub_segsort") is None else f"{g('cub_segsort') / g('frugal'):.1f}×"
            rows.append(f"| {r}×{n} | **{f('frugal')}** | {f('frugal_l2hot')} | {f('mask')} | {f('select')} | "
                        f"{f('cub_segsort')} | {sp} | {f('empty_kernel')} |")
    return "\n".join(rows)


def block_table(res, dtype):
    rows = ["| rows×n | 256 threads | 512 (default) | 1024 |", "|---|---:|---:|---:|"]
    for r in (1, 16, 256):
        for n in (768, 4096, 11008):
            base = f"topk/cuda/{dtype}/{r}x{n}/"
            if base + "frugal_b256" not in res:
                continue
            rows.append(f"| {r}×{n} | {res[base + 'frugal_b256']:.1f} | {res[base + 'frugal']:.1f} | "
                        f"{res[base + 'frugal_b1024']:.1f} |")
    return "\n".join(rows)


def cpu_table(res, dtype):
    rows = ["| rows×n | frugal, 1 thread | frugal, all threads | select, 1 thread | std::nth_element, 1 thread | "
            "speedup (1 thread) |", "|---|---:|---:|---:|---:|---:|"]
    for r in (1, 16, 256):
        for n in (768, 4096, 11008):
            base = f"topk/cpu/{dtype}/{r}x{n}/"
            if base + "frugal_1t" not in res:
                continue
            g = lambda v: res.get(base + v)
            f = lambda v: "—" if g(v) is None else f"{g(v):.1f}"
            rows.append(f"| {r}×{n} | {f('frugal_1t')} | {f('frugal')} | {f('select_1t')} | {f('nth_element')} | "
                        f"{g('nth_element') / g('frugal_1t'):.1f}× |")
    return "\n".join(rows)


def torch_table(path, cuda_res):
    with open(path) as f:
        d = json.load(f)
    t = {r["name"]: r["median_us"] for r in d["results"]}
    rows = [f"torch {d['torch']} on {d['device']}", "",
            "| dtype | rows×n | torch.topk(x.abs()) | torch.topk(x) | frugal topk (this run) |", "|---|---|---:|---:|---:|"]
    for dt in ("f32", "f16"):
        for r in (1, 16, 256):
            for n in (768, 4096, 11008):
                b = f"topk/cuda/{dt}/{r}x{n}/"
                fr = cuda_res.get(b + "frugal")
                rows.append(f"| {dt} | {r}×{n} | {t[b + 'torch_topk_abs']:.1f} | {t[b + 'torch_topk']:.1f} | "
                            f"{'—' if fr is None else f'{fr:.1f}'} |")
    return "\n".join(rows)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "docs/data/sparsify"
    ctx, cuda = load(os.path.join(d, "bench_topk_cuda.json"))
    print(f"<!-- CUDA context: {ctx.get('date')} {ctx.get('host_name')} -->")
    for dt in ("f32", "f16"):
        print(f"\n#### CUDA {dt} (µs per call, k = n/2)\n")
        print(cuda_table(cuda, dt))
    for dt in ("f32", "f16"):
        print(f"\n#### CUDA {dt}: threads per row (µs, topk)\n")
        print(block_table(cuda, dt))
    ctx, cpu = load(os.path.join(d, "bench_topk_cpu.json"))
    print(f"\n<!-- CPU context: {ctx.get('date')} {ctx.get('num_cpus')} CPUs {ctx.get('mhz_per_cpu')} MHz -->")
    for dt in ("f32", "f16"):
        print(f"\n#### CPU {dt} (µs per call, k = n/2)\n")
        print(cpu_table(cpu, dt))
    tp = os.path.join(d, "torch_topk.json")
    if os.path.exists(tp):
        print("\n#### torch.topk reference (separate process, same method)\n")
        print(torch_table(tp, cuda))


if __name__ == "__main__":
    main()
