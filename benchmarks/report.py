"""Summarise a results file of benchmarks/optimizers.py: a Markdown table and a plot.

    python benchmarks/report.py benchmarks/results/grid.jsonl --plot docs/benchmark_optimizers.png

For every configuration and noise level, per unit, the best noiseless activation reached is
divided by (a) the GA's on the same generator (fourier+ga), unit, noise and seed, (b) the
best of the natural reference images, (c) the white-box ceiling; the table gives the median
over units (and the number of units), per layer and over all layers.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

BASELINE = "fourier+ga"
LAYER_ORDER = ("early", "middle", "late", "output")


def load(path: Path) -> tuple[list[dict], dict]:
    runs, ceilings = [], {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == "white_box":
            ceilings[(r["layer"], r["channel"], r["seed"])] = r["best_true"]
        else:
            runs.append(r)
    return runs, ceilings


def ratios(runs: list[dict], ceilings: dict) -> dict:
    """{(label, noise): {"ga": [...], "natural": [...], "ceiling": [...], "layer": [...]}}."""
    ga = {
        (r["layer"], r["channel"], r["noise"], r["seed"]): r for r in runs if r["label"] == BASELINE
    }
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in runs:
        key = (r["layer"], r["channel"], r["noise"], r["seed"])
        cell = out[(r["label"], r["noise"])]
        cell["layer"].append(r["layer"])
        base = ga.get(key)
        cell["ga"].append(r["best_true"] / base["best_true"] if base else np.nan)
        cell["ga_last"].append(
            r["last_mean"] / base["last_mean"] if base and base["last_mean"] > 0 else np.nan
        )
        cell["natural"].append(r["best_true"] / r["reference_best"])
        ceiling = ceilings.get((r["layer"], r["channel"], r["seed"]))
        cell["ceiling"].append(r["best_true"] / ceiling if ceiling else np.nan)
        cell["seconds"].append(r["seconds"])
    return out


def _median(values, layers, layer=None) -> tuple[float, int]:
    picked = [
        v
        for v, lay in zip(values, layers, strict=True)
        if (layer is None or lay == layer) and np.isfinite(v)
    ]
    return (float(np.median(picked)) if picked else float("nan")), len(picked)


def table(cells: dict) -> str:
    layers = [lay for lay in LAYER_ORDER if any(lay in c["layer"] for c in cells.values())]
    head = (
        "| configuration | noise | vs GA: all | "
        + " | ".join(layers)
        + " | last generation mean vs GA | vs best natural | vs white-box | s/run |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for (label, noise), c in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        all_ga, n = _median(c["ga"], c["layer"])
        per_layer = [f"{_median(c['ga'], c['layer'], lay)[0]:.2f}" for lay in layers]
        last, _ = _median(c["ga_last"], c["layer"])
        nat, _ = _median(c["natural"], c["layer"])
        ceil, _ = _median(c["ceiling"], c["layer"])
        rows.append(
            f"| {label} | {noise} | **{all_ga:.2f}** (n={n}) | "
            + " | ".join(per_layer)
            + f" | {last:.2f} | {nat:.2f} | {ceil:.2f} | {np.median(c['seconds']):.1f} |"
        )
    return "\n".join(rows)


def plot(cells: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noises = sorted({noise for _, noise in cells})
    labels = sorted({label for label, _ in cells})
    fig, axes = plt.subplots(1, len(noises), figsize=(5.5 * len(noises), 4.2), squeeze=False)
    for ax, noise in zip(axes[0], noises, strict=True):
        data = [[v for v in cells[(lab, noise)]["ga"] if np.isfinite(v)] for lab in labels]
        ax.boxplot(data, orientation="horizontal")
        ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.axvline(1.0, color="grey", linestyle="--")
        ax.set_xlabel("best activation / GA's (same unit, noise, seed)")
        ax.set_title(f"noise: {noise}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args()
    cells = ratios(*load(args.results))
    print(table(cells))
    if args.plot:
        plot(cells, args.plot)


if __name__ == "__main__":
    main()
