"""Draw docs/performance.png from bench/results/ingest_throughput.json (``make bench-plot``).

One group of bars per shape, one bar per strategy: vectors/s on a log scale (the strategies differ
by two orders of magnitude on small messages), each bar labelled with its figure; a dashed line over
each group marks the emulator's own ceiling on that shape, when the results have it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "bench" / "results" / "ingest_throughput.json"
TARGET = ROOT / "docs" / "performance.png"


def main() -> int:
    if not SOURCE.is_file():
        print(f"{SOURCE} missing: run `make bench` (or bench/ingest_throughput.py --json) first", file=sys.stderr)
        return 1
    results = json.loads(SOURCE.read_text())
    runs = results["runs"]
    shapes = list(dict.fromkeys(run["shape"] for run in runs))
    strategies = list(dict.fromkeys(run["strategy"] for run in runs))
    width = 0.8 / len(strategies)
    figure, axes = plt.subplots(figsize=(12, 5), dpi=110)
    for s, strategy in enumerate(strategies):
        rates = [
            next(r["vectors_per_s"] for r in runs if r["shape"] == shape and r["strategy"] == strategy)
            for shape in shapes
        ]
        positions = [i + (s - (len(strategies) - 1) / 2) * width for i in range(len(shapes))]
        bars = axes.bar(positions, rates, width, label=strategy)
        axes.bar_label(bars, labels=[f"{rate:,.0f}" for rate in rates], fontsize=7, padding=2)
    ceilings = {shape["shape"]: shape["emulator_ceiling_vectors_per_s"] for shape in results.get("shapes", [])}
    for i, shape in enumerate(shapes):
        if shape in ceilings:
            axes.hlines(
                ceilings[shape],
                i - 0.45,
                i + 0.45,
                colors="grey",
                linestyles="dashed",
                label="emulator ceiling" if i == 0 else "_nolegend_",
            )
    axes.set_yscale("log")
    axes.set_xticks(range(len(shapes)), [f"{shape}\n(messages x records x dims)" for shape in shapes])
    axes.set_ylabel("vectors/s (log scale)")
    title = f"Ingest throughput by strategy, emulator with {results.get('latency_ms', 30)} ms per upsert"
    if results.get("quick"):
        title += " (--quick: a smoke run, NOT a measurement)"
    axes.set_title(f"{title}\n(bench/ingest_throughput.py)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the bars, not over them
    figure.tight_layout()
    figure.savefig(TARGET)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
