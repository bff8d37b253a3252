#!/usr/bin/env python3
"""Markdown tables for docs/kv.md from the decode-attention benchmark JSON (Google Benchmark --benchmark_out).

    python3 docs/kv/make_tables.py docs/data/bench_kv_decode_attention.json
"""
import json
import re
import sys
from collections import defaultdict

d = json.load(open(sys.argv[1]))
rows = defaultdict(dict)
for b in d["benchmarks"]:
    if b.get("error_occurred"):
        continue
    m = re.match(r"attn/cuda/f16/(b(\d+)_t(\d+)_h(\d+)_kv(\d+)_d(\d+))/([a-z0-9_]+)", b["name"])
    if not m:
        continue
    shape, variant = m.group(1), m.group(7)
    rows[shape][variant] = (b["real_time"], b["GB/s"], b.get("splits", 0))

def fmt_shape(s):
    B, T, H, KV, D = re.match(r"b(\d+)_t(\d+)_h(\d+)_kv(\d+)_d(\d+)", s).groups()
    return int(H), int(KV), int(D), int(B), int(T)

print("| shape (B, T, H, KV, D) | contiguous us | TB/s | paged us | TB/s | paged / contiguous | vmm TB/s | splits | paged, no split-K TB/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in sorted(rows, key=lambda s: (-fmt_shape(s)[2], fmt_shape(s)[0], fmt_shape(s)[3], fmt_shape(s)[4])):
    r = rows[s]
    if "contiguous" not in r or "paged" not in r:
        continue
    H, KV, D, B, T = fmt_shape(s)
    c, p = r["contiguous"], r["paged"]
    vmm = f"{r['vmm'][1] / 1000:.2f}" if "vmm" in r else "-"
    ns = f"{r['paged_nosplit'][1] / 1000:.2f}" if "paged_nosplit" in r else ""
    print(f"| {B}, {T}, {H}, {KV}, {D} | {c[0]:.1f} | {c[1] / 1000:.2f} | {p[0]:.1f} | {p[1] / 1000:.2f} | "
          f"{p[0] / c[0]:.3f} | {vmm} | {int(p[2])} | {ns} |")

print()
print("| shape (B, T, H, KV, D) | page 1 | page 16 | page 64 | page 256 | contiguous |")
print("|---|---:|---:|---:|---:|---:|")
for s in sorted(rows):
    r = rows[s]
    if "paged_p1" not in r:
        continue
    H, KV, D, B, T = fmt_shape(s)
    cells = [f"{r[v][1] / 1000:.2f} TB/s" for v in ("paged_p1", "paged", "paged_p64", "paged_p256", "contiguous")]
    print(f"| {B}, {T}, {H}, {KV}, {D} | " + " | ".join(cells) + " |")

print()
print("Split count at B = 1 (num_splits forced; `auto` = the plan's choice):")
print()
print("| shape (B, T, H, KV, D) | " + " | ".join(f"{n} splits" for n in (4, 8, 16, 32, 64, 128)) + " | auto (splits) |")
print("|---|" + "---:|" * 7)
for s in sorted(rows, key=lambda s: (-fmt_shape(s)[2], fmt_shape(s)[4])):
    r = rows[s]
    if "paged_s4" not in r:
        continue
    H, KV, D, B, T = fmt_shape(s)
    cells = [f"{r[f'paged_s{n}'][0]:.1f} us" if f"paged_s{n}" in r else "" for n in (4, 8, 16, 32, 64, 128)]
    print(f"| {B}, {T}, {H}, {KV}, {D} | " + " | ".join(cells) + f" | {r['paged'][0]:.1f} us ({int(r['paged'][2])}) |")

print()
print("Decode step: kv_append + paged_decode_attention vs paged_append_decode_attention (one launch + merge):")
print()
print("| shape (B, T, H, KV, D) | append + decode us | fused us | fused / separate | decode alone us |")
print("|---|---:|---:|---:|---:|")
for s in sorted(rows, key=lambda s: (-fmt_shape(s)[2], fmt_shape(s)[0], fmt_shape(s)[3], fmt_shape(s)[4])):
    r = rows[s]
    if "paged_fused" not in r:
        continue
    H, KV, D, B, T = fmt_shape(s)
    a, f = r["paged_append"][0], r["paged_fused"][0]
    print(f"| {B}, {T}, {H}, {KV}, {D} | {a:.1f} | {f:.1f} | {f / a:.3f} | {r['paged'][0]:.1f} |")

for b in d["benchmarks"]:
    if b["name"].startswith("attn/cuda/floor/empty_kernel"):
        print(f"\nEmpty kernel, timed the same way: {b['real_time']:.2f} us")
