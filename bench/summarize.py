"""Summarises bench/run's JSON lines: the median of each figure per engine and model, and the
ratio netc / PyTorch of the medians, as a Markdown table."""

import json
import statistics
import sys
from collections import defaultdict

FIGURES = ["train_images_per_sec", "infer_images_per_sec", "peak_mib", "compile_ms"]


def main(path: str) -> None:
    runs = defaultdict(lambda: defaultdict(list))
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        for figure in FIGURES:
            if figure in row:
                runs[(row["model"], row["engine"])][figure].append(row[figure])
    models = sorted({model for model, _ in runs})
    print("| model | figure | netc (median) | PyTorch eager (median) | netc / PyTorch | runs |")
    print("|---|---|---:|---:|---:|---:|")
    for model in models:
        netc, torch = runs[(model, "netc")], runs[(model, "pytorch-eager")]
        for figure in FIGURES:
            if figure not in netc:
                continue
            a = statistics.median(netc[figure])
            b = statistics.median(torch[figure]) if figure in torch else None
            ratio = f"{a / b:.2f}×" if b else "–"
            shown_b = f"{b:,.1f}" if b is not None else "–"
            print(f"| {model} | {figure} | {a:,.1f} | {shown_b} | {ratio} | {len(netc[figure])} |")
    relu, mixlu = runs[("lenet", "netc")], runs[("mixlu_lenet", "netc")]
    for figure in ["train_images_per_sec", "infer_images_per_sec"]:
        if figure in relu and figure in mixlu:
            ratio = statistics.median(mixlu[figure]) / statistics.median(relu[figure])
            print(f"\nMixLU (negfrac 0.04) vs ReLU LeNet, {figure}: {ratio:.3f} ({(1 - ratio) * 100:+.1f}% cost)")


if __name__ == "__main__":
    main(sys.argv[1])
