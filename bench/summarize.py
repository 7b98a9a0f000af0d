"""Summarises bench/run's JSON lines as Markdown: the machine's limit (`netc-bench --peak`), then
per thread count the median of each figure per model and engine, each peer's ratio to netc, and
the load average seen during the measurements."""

import json
import statistics
import sys
from collections import defaultdict

FIGURES = ["train_images_per_sec", "infer_images_per_sec", "peak_mib", "compile_ms", "warmup_s",
           "train_images_per_sec_torch_benchmark"]
ENGINES = ["netc", "pytorch-eager", "torch-compile", "jax-jit"]
# MFLOP per training and per inference image: the forward products, and for training also every
# filter gradient and every data gradient but the first layer's (which no one needs). The limit of
# a figure is the best single-core FMA peak divided by this.
MFLOP_PER_IMAGE = {"lenet": (13.2, 4.6), "mlp": (1.6, 0.8), "lenet5_cifar": (69.2, 24.7)}


def main(path: str) -> None:
    runs = defaultdict(lambda: defaultdict(list))
    loads = defaultdict(list)
    peaks, gemms = {}, []
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        if row.get("figure") == "fma_peak":
            peaks[row["isa"]] = row["gflops"]
            continue
        if row.get("figure") == "gemm":
            gemms.append(row)
            continue
        key = (row["threads"], row["model"], row["engine"])
        for figure in FIGURES:
            if figure in row:
                runs[key][figure].append(row[figure])
        loads[row["threads"]].append(row.get("load_before", float("nan")))
    best = max(peaks.values()) if peaks else None
    if peaks:
        print("| path | single-core FMA peak, GFLOP/s |\n|---|---:|")
        for isa, gflops in peaks.items():
            print(f"| {isa} | {gflops:,.1f} |")
        print("\n| path | model | product | m × n × k | GFLOP/s | of the path's peak |\n|---|---|---|---|---:|---:|")
        for g in gemms:
            print(f"| {g['isa']} | {g['model']} | {g['product']} | {g['m']} × {g['n']} × {g['k']} "
                  f"| {g['gflops']:,.1f} | {g['of_path_peak']:.0%} |")
    for threads in sorted({t for t, _, _ in runs}):
        ls = loads[threads]
        print(f"\n### {threads} thread{'s' if threads > 1 else ''} "
              f"(load average before measurements: median {statistics.median(ls):.2f}, max {max(ls):.2f})\n")
        print("| model | figure | " + " | ".join(ENGINES) + " | limit (1 core) |")
        print("|---|---|" + "---:|" * (len(ENGINES) + 1))
        for model in sorted({m for t, m, _ in runs if t == threads}):
            netc = runs[(threads, model, "netc")]
            for figure in FIGURES:
                cells, base = [], None
                for engine in ENGINES:
                    values = runs[(threads, model, engine)].get(figure)
                    if not values:
                        cells.append("–")
                        continue
                    median = statistics.median(values)
                    if engine == "netc":
                        base = median
                        cells.append(f"{median:,.1f}")
                    else:
                        ratio = f" (netc {base / median:.2f}×)" if base and figure.endswith("per_sec") else ""
                        cells.append(f"{median:,.1f}{ratio}")
                if all(c == "–" for c in cells):
                    continue
                limit = "–"
                if best and model in MFLOP_PER_IMAGE and figure in ("train_images_per_sec", "infer_images_per_sec"):
                    mflop = MFLOP_PER_IMAGE[model][0 if figure.startswith("train") else 1]
                    limit = f"{best * 1e3 / mflop:,.0f}"
                    if netc.get(figure):
                        limit += f" (netc {statistics.median(netc[figure]) * mflop / (best * 1e3):.0%})"
                print(f"| {model} | {figure} | " + " | ".join(cells) + f" | {limit} |")


if __name__ == "__main__":
    main(sys.argv[1])
