"""In-silico evidence for the paper's experiment designs (issue 15), with ``xdream evolve``'s
own code path (simulator/evolve.py) on EfficientNet-Lite0 units under Poisson noise:

- selectivity: for pairs of units (A, B) of one layer, B the neighbour of A that
  maximising A drives most, maximising A alone against ``selectivity:drive=A;suppress=B``:
  the mean rates (rectified noiseless activations) of A and B in the last generation;
- target pattern: three units brought to the response pattern of a natural image that
  drives all three (a unit's rate is its rectified activation, so a pattern with a
  negative entry could not be seen, let alone reached): each image's distance between its
  noiseless rates and the pattern, averaged over the first and the last generation;
- sparseness across four units: first and last generation, and the mean rate of the unit
  left carrying the response (a sparse pattern of nothing would score as well);
- start from images: each unit's 10 best of 200 natural crops (by noiseless response, as
  a screening block would rank them; not the noise references) as the first generation,
  against the optimizer's own start: the best noiseless activation after 100, 300 and all
  images, for CMA-ES (started at the best seed) and the GA.

One line per run goes to a JSON-lines file; runs already there are skipped, so the
benchmark can be stopped and resumed (and run in the background):

    python benchmarks/designs.py --out benchmarks/results/designs.jsonl
    python benchmarks/designs.py --report benchmarks/results/designs.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from server.engine.natural_images import reference_crops
from server.storage.catalog import read_closed
from simulator import evolve
from simulator.neuron import build_neurons
from simulator.target import channel_targets

LAYER = "efficientnet-lite0:_blocks.8"
#: Unit A of each pair; B is the one of A's next ``NEIGHBOURS - 1`` units that maximising A
#: drives most (:func:`partner`).
PAIRS = (76, 20, 100)
NEIGHBOURS = 12
#: Images per run at which the starts are compared (and the run's last).
CHECKPOINTS = (100, 300)
#: The optimizer's own start, and the unit's best natural images.
STARTS = ("start:own", "start:images")
COMMON: dict[str, Any] = dict(generator="fourier", optimizer="cmaes", noise="poisson:20",
                              image_size=64, input_size=96, references=40)  # fmt: skip


def runs(budget: int, seeds: int) -> list[dict]:
    """Every run of the benchmark, as the keys that identify it."""
    out = []
    for seed in range(seeds):
        for unit in PAIRS:
            for objective in ("mean:channels=0", "selectivity:partner"):
                out.append(dict(study="selectivity", unit=unit, channels=NEIGHBOURS,
                                objective=objective, seed=seed, budget=budget))  # fmt: skip
        out.append(dict(study="target", unit=PAIRS[0], channels=3, objective="target",
                        seed=seed, budget=budget))  # fmt: skip
        sparse = "sparseness:channels=0,1,2,3"
        out.append(dict(study="sparseness", unit=PAIRS[0], channels=4, objective=sparse,
                        seed=seed, budget=budget))  # fmt: skip
        for unit in PAIRS:
            for optimizer in ("cmaes", "ga"):
                for start in STARTS:
                    out.append(dict(study="init", unit=unit, channels=1, optimizer=optimizer,
                                    objective=start, seed=seed, budget=budget))  # fmt: skip
    return out


def best_crops(unit: int, folder: Path, keep: int = 10) -> Path:
    """Save ``unit``'s ``keep`` best of 200 natural crops (noiseless) in ``folder``."""
    crops = reference_crops(COMMON["image_size"], 200, seed=777)
    neurons, _ = build_neurons([f"{LAYER}:{unit}"], None, None, input_size=COMMON["input_size"])
    responses = neurons.respond(crops)[1][:, 0]
    folder.mkdir()
    for rank, index in enumerate(np.argsort(-responses)[:keep]):
        Image.fromarray(crops[index]).save(folder / f"{rank:02d}.png")
    return folder


@functools.cache
def partner(unit: int, budget: int) -> int:
    """Which of channels 1 .. NEIGHBOURS - 1 (units ``unit + k``) maximising channel 0 drives
    most: the highest mean rate in the last generation of a run of its own (seed 1000, not
    one of those reported), the unit whose response selectivity has to hold down."""
    with tempfile.TemporaryDirectory() as work:
        config = evolve.EvolveConfig(
            target=f"{LAYER}:{unit}", out=str(Path(work) / "run"), budget=budget, seed=1000,
            channels=NEIGHBOURS, **COMMON,
        )  # fmt: skip
        evolve.run(evolve.prepare(config))
        table = generations(Path(work) / "run")
    last = np.clip(table["activation"][table["index"] == table["index"].max()], 0.0, None)
    return 1 + int(last[:, 1:].mean(axis=0).argmax())


def generations(run: Path) -> dict[str, np.ndarray]:
    """The run's image rows: generation, noiseless score and every unit's activation."""
    columns = ["index", "true_score", "activation"]
    return read_closed(run / "session.h5", lambda f: f.table("generations", columns=columns))


def target_pattern(unit: int, channels: int) -> list[float]:
    """The noiseless rates of ``channels`` units from ``unit`` for the natural image (of 200
    that are not among the references) whose weakest of them is strongest: a pattern some
    image is known to reach, and in which every unit responds."""
    crops = reference_crops(64, 200, seed=12345)
    neurons, _ = build_neurons(channel_targets(f"{LAYER}:{unit}", channels), None, None,
                               input_size=COMMON["input_size"])  # fmt: skip
    rates = neurons.respond(crops)[1]
    return [round(float(v), 4) for v in rates[rates.min(axis=1).argmax()]]


def one(run: dict, work: Path) -> dict:
    objective, extra = run["objective"], {}
    if run["study"] == "selectivity":
        extra["partner"] = b = partner(run["unit"], run["budget"])
        if objective == "selectivity:partner":
            objective = f"selectivity:drive=0;suppress={b}"
    if objective == "target":
        pattern = target_pattern(run["unit"], run["channels"])
        objective = f"target:channels=0,1,2;target={','.join(map(str, pattern))}"
    settings = dict(COMMON, optimizer=run.get("optimizer", COMMON["optimizer"]))
    if run["study"] == "init":
        objective = None
        if run["objective"] == STARTS[1]:
            settings["init_images"] = str(best_crops(run["unit"], work / "init"))
    config = evolve.EvolveConfig(
        target=f"{LAYER}:{run['unit']}", out=str(work / "run"), budget=run["budget"],
        seed=run["seed"], channels=run["channels"], objective=objective, **settings,
    )  # fmt: skip
    summary = evolve.run(evolve.prepare(config))
    table = generations(work / "run")
    index, true = table["index"], table["true_score"]
    rates = np.clip(table["activation"], 0.0, None)  # as the rig sees them
    if run["study"] == "target":
        true = -np.linalg.norm(rates - np.array(pattern), axis=1)
    if run["study"] == "selectivity":  # A's and B's mean rate in the last generation
        last = rates[index == index.max()]
        extra["last_rates"] = [float(last[:, 0].mean()), float(last[:, b].mean())]
    if run["study"] == "sparseness":  # every unit's mean rate, first and last generation
        extra["first_channel_rates"] = rates[index == 0].mean(axis=0).tolist()
        extra["last_channel_rates"] = rates[index == index.max()].mean(axis=0).tolist()
    per_generation = [float(true[index == g].mean()) for g in range(int(index.max()) + 1)]
    best_by = {n: float(true[:n].max()) for n in (*CHECKPOINTS, len(true))}
    return {
        "best_by_images": best_by,
        **extra,
        **run,
        "objective_text": objective,
        "first_true_mean": per_generation[0],
        "last_true_mean": per_generation[-1],
        "first_channel_means": summary["first_channel_means"],
        "last_channel_means": summary["last_channel_means"],
        "seconds": summary["seconds"],
    }


def key(run: dict) -> str:
    fields = ("study", "unit", "optimizer", "objective", "seed", "budget")
    return json.dumps({k: run[k] for k in fields if k in run})


def report(path: Path) -> str:
    """The tables of docs/BENCHMARKS.md, from the results file."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| pair (A, B) | maximise A: A, B | selectivity: A, B | B lowered by |",
             "|---|---|---|---|"]  # fmt: skip
    # Mean rates (rectified noiseless activations) of the last generation, over seeds.
    for unit in PAIRS:
        ends = {}
        for kind in ("mean", "selectivity"):
            picked = [r for r in rows if r["study"] == "selectivity" and r["unit"] == unit
                      and r["objective"].startswith(kind)]  # fmt: skip
            ends[kind] = np.mean([r["last_rates"] for r in picked], axis=0)
        (a0, b0), (a1, b1) = ends["mean"], ends["selectivity"]
        b = picked[0]["partner"]
        lines.append(f"| {unit}, {unit + b} | {a0:.2f}, {b0:.2f} | {a1:.2f}, {b1:.2f} | "
                     f"{b0 - b1:.2f} ({len(picked)} seeds) |")  # fmt: skip
    for study, words in (("target", "distance to the pattern"), ("sparseness", "sparseness")):
        picked = [r for r in rows if r["study"] == study]
        sign = -1.0 if study == "target" else 1.0
        first = [sign * r["first_true_mean"] for r in picked]
        last = [sign * r["last_true_mean"] for r in picked]
        seeds = ", ".join(f"{a:.3f} -> {b:.3f}" for a, b in zip(first, last, strict=True))
        lines.append(f"\n{study} ({len(picked)} seeds): {words} {np.mean(first):.3f} in the "
                     f"first generation, {np.mean(last):.3f} in the last (per seed: {seeds})")
        if study == "sparseness":
            carrying = np.mean([max(r["last_channel_rates"]) for r in picked])
            strongest = np.mean([max(r["first_channel_rates"]) for r in picked])
            lines.append(f"the unit left carrying the response: mean rate {carrying:.2f} in the "
                         f"last generation (first generation's strongest unit: {strongest:.2f})")
    lines += ["", "| unit | optimizer | start | best after " +
              " | ".join(f"{n}" for n in CHECKPOINTS) + " | all images |",
              "|---|---|---|" + "---|" * (len(CHECKPOINTS) + 1)]  # fmt: skip
    for unit in PAIRS:
        for optimizer in ("cmaes", "ga"):
            for start in STARTS:
                picked = [r for r in rows if r["study"] == "init" and r["unit"] == unit
                          and r["optimizer"] == optimizer and r["objective"] == start]  # fmt: skip
                if not picked:
                    continue
                cells = [np.mean([list(r["best_by_images"].values())[i] for r in picked])
                         for i in range(len(CHECKPOINTS) + 1)]  # fmt: skip
                lines.append(f"| {unit} | {optimizer} | {start[6:]} ({len(picked)} seeds) | " +
                             " | ".join(f"{c:.2f}" for c in cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="JSON-lines results file (appended)")
    parser.add_argument("--report", type=Path, help="print the tables of a results file")
    parser.add_argument("--budget", type=int, default=1000, help="images per run")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    done = set()
    if args.out.exists():
        done = {key(json.loads(line)) for line in args.out.read_text().splitlines() if line}
    for run in runs(args.budget, args.seeds):
        if key(run) in done:
            continue
        with tempfile.TemporaryDirectory() as work:
            result = one(run, Path(work))
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(key(run), f"{result['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
