#!/usr/bin/env python3
"""Markdown tables for docs/rotation.md from the eigh benchmark JSON (Google Benchmark --benchmark_out).

    python3 docs/rotation_tables.py docs/data/rotation_eigh_cuda_h100.json docs/data/rotation_eigh_cpu_2core.json
"""
import json
import sys
from collections import OrderedDict


def fmt_ms(ns_or_ms, unit):
    ms = ns_or_ms if unit == "ms" else ns_or_ms / 1e6
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def table(path):
    data = json.load(open(path))
    ctx = data["context"]
    rows = OrderedDict()
    for b in data["benchmarks"]:
        name = b["name"].split("/iterations")[0]
        _, dev, dt, n, variant = name.split("/")
        rows.setdefault((dev, dt, int(n)), {})[variant] = b
    print(f"<!-- {path}: {ctx.get('date')}, host {ctx.get('host_name')}, {ctx.get('num_cpus')} CPUs, "
          f"load {ctx.get('load_avg')} -->")
    variants = []
    for v in rows.values():
        for k in v:
            if k not in variants:
                variants.append(k)
    head = "| dtype | n | " + " | ".join(f"{v} ms" for v in variants) + " | frugal / " + variants[0] + \
           " | sweeps | orth (frugal) | residual (frugal) | orth (" + " / ".join(v for v in variants if v != "frugal") + \
           ") | 10·n·eps |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (dev, dt, n), v in rows.items():
        f = v.get("frugal")
        cells = [dt, str(n)]
        for var in variants:
            cells.append(fmt_ms(v[var]["real_time"], v[var]["time_unit"]) if var in v else "–")
        base = v.get(variants[0])
        cells.append(f"{f['real_time'] / base['real_time']:.2f}x" if f and base else "–")
        cells.append(str(int(f["sweeps"])) if f and "sweeps" in f else "–")
        cells.append(f"{f['orth']:.1e}" if f and "orth" in f else "–")
        cells.append(f"{f['residual']:.1e}" if f and "residual" in f else "–")
        cells.append(" / ".join(f"{v[var]['orth']:.1e}" if var in v and "orth" in v[var] else "–"
                                for var in variants if var != "frugal"))
        any_b = next(iter(v.values()))
        cells.append(f"{any_b['bound']:.1e}" if "bound" in any_b else "–")
        print("| " + " | ".join(cells) + " |")
    print()


for p in sys.argv[1:]:
    table(p)
