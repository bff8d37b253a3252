#!/usr/bin/env python3
"""A/B table of two builds of bench_gemv_cpu run alternately (docs/gemv.md, CPU sections).

usage: docs/gemv_ab.py DIR BASE NEW
DIR holds <build>.r<round>.json (Google Benchmark JSON, 3 repetitions: the median aggregate is used) for the builds
BASE and NEW over the same rounds. Prints, per shape and variant, the median over rounds of NEW's time / BASE's time
in the same round, then each build's speedup of every sparse variant over its own dense call (median over rounds).
"""
import collections
import glob
import json
import os
import re
import statistics
import sys


def load(path):
    times = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        parts = b["run_name"].split("/iterations")[0].split("/")  # gemv/cpu/f32/<N>x<K>/<variant>
        times[(parts[3], parts[4])] = b["real_time"]
    return times


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    folder, base, new = sys.argv[1:]
    rounds = sorted(
        int(m.group(1))
        for f in glob.glob(os.path.join(folder, base + ".r*.json"))
        if (m := re.search(r"\.r(\d+)\.json$", f)) and os.path.exists(os.path.join(folder, f"{new}.r{m.group(1)}.json"))
    )
    if not rounds:
        sys.exit(f"gemv_ab.py: no rounds with both {base}.rN.json and {new}.rN.json in {folder}")
    runs = {b: [load(os.path.join(folder, f"{b}.r{r}.json")) for r in rounds] for b in (base, new)}
    keys = [k for k in runs[base][0] if all(k in x for x in runs[base] + runs[new])]
    shapes = list(dict.fromkeys(s for s, _ in keys))
    variants = list(dict.fromkeys(v for _, v in keys))
    print(f"{len(rounds)} rounds; {new} time / {base} time in the same round (median over rounds)")
    print("| N×K | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    pooled = collections.defaultdict(list)
    for s in shapes:
        cells = []
        for v in variants:
            if (s, v) not in keys:
                cells.append("")
                continue
            r = [n[(s, v)] / b[(s, v)] for b, n in zip(runs[base], runs[new])]
            pooled[v] += r
            cells.append(f"{statistics.median(r):.3f}")
        print(f"| {s} | " + " | ".join(cells) + " |")
    print("| all | " + " | ".join(f"{statistics.median(pooled[v]):.3f}" for v in variants) + " |")
    sparse = [v for v in variants if v not in ("dense", "openblas", "openblas_t")]
    for b in (base, new):
        print(f"\n{b}: speedup over its own dense call (median over rounds)")
        print("| N×K | " + " | ".join(sparse) + " |")
        print("|---" * (len(sparse) + 1) + "|")
        for s in shapes:
            if (s, "dense") not in keys:
                continue
            cells = [
                f"{statistics.median(x[(s, 'dense')] / x[(s, v)] for x in runs[b]):.2f}" if (s, v) in keys else ""
                for v in sparse
            ]
            print(f"| {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
