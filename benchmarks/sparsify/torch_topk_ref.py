"""Reference timings of torch.topk by magnitude on the same shapes as bench_topk.cu (not a same-run baseline).

    python3 benchmarks/sparsify/torch_topk_ref.py > torch_topk.json

Times `torch.topk(x.abs(), k, dim=-1, sorted=False)` (what a PyTorch user writes for magnitude top-k; two kernels)
and `torch.topk(x, k, dim=-1, sorted=False)` (one kernel, no abs), k = n/2, with CUDA events around one call and the
L2 cache flushed before each call, like bench_topk.cu. Prints JSON: one record per (dtype, rows, n, variant) with the
median over 200 calls in microseconds.
"""
import json

import torch


def time_us(fn, flush, reps=200):
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        flush.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    flush = torch.empty(100 * 2**20, dtype=torch.uint8, device="cuda")
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": []}
    for dtype, name in ((torch.float32, "f32"), (torch.float16, "f16")):
        for rows in (1, 16, 256):
            for n in (768, 4096, 11008):
                x = torch.randn(rows, n, device="cuda").to(dtype)
                k = n // 2
                variants = {
                    "torch_topk_abs": lambda: torch.topk(x.abs(), k, dim=-1, sorted=False),
                    "torch_topk": lambda: torch.topk(x, k, dim=-1, sorted=False),
                }
                for v, fn in variants.items():
                    out["results"].append({"name": f"topk/cuda/{name}/{rows}x{n}/{v}", "median_us": time_us(fn, flush)})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
