"""Benchmark optimizers and weight-free generators on EfficientNet-Lite0 units.

Every run is one (configuration, unit, noise, seed) evolution with a fixed image budget;
results go to a JSON-lines file, one line per run, and runs already in the file are skipped,
so the benchmark can be stopped and resumed at will (and run in the background):

    python benchmarks/optimizers.py --out benchmarks/results/grid.jsonl          # full grid
    python benchmarks/optimizers.py --quick --out /tmp/quick.jsonl               # smoke test
    python benchmarks/report.py benchmarks/results/grid.jsonl                    # table + plot

Per unit it also records the best of the natural reference images and a white-box ceiling:
gradient ascent (Adam) through the same generator and network from N(0, 1) starts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from server.engine.generators import OFFLINE_DEFAULT, make_generator
from server.engine.loop import Engine, run_in_process
from server.engine.natural_images import reference_crops
from server.engine.optimizers import DEFAULT_OPTIMIZER, make_optimizer
from simulator.ceiling import white_box
from simulator.networks import load_network
from simulator.noise import PoissonNoise, parse_noise
from simulator.target import Recording, Unit

LAYERS = {"early": "_blocks.3", "middle": "_blocks.8", "late": "_blocks.14", "output": "_fc"}


def configurations(extra: list[str]) -> list[dict]:
    """Every optimizer on the offline default generator, plus GA and the default optimizer
    on each other weight-free generator; ``extra`` adds ``label:generator:optimizer[:k=v,..]``."""
    configs = [
        dict(
            label=f"{OFFLINE_DEFAULT}+{opt}", generator=OFFLINE_DEFAULT, optimizer=opt, settings={}
        )
        for opt in ("ga", "cmaes", "cmaes-chol", "nes", "fdgd")
    ]
    for opt in dict.fromkeys(("ga", DEFAULT_OPTIMIZER)):
        configs.append(dict(label=f"pixel+{opt}", generator="pixel", optimizer=opt, settings={}))
    for text in extra:
        label, gen, opt, *rest = text.split(":")
        settings = {}
        for pair in rest[0].split(",") if rest else []:
            k, v = pair.split("=")
            try:
                settings[k] = json.loads(v)
            except json.JSONDecodeError:
                settings[k] = v
        configs.append(dict(label=label, generator=gen, optimizer=opt, settings=settings))
    return configs


def pick_channels(n_channels: int, count: int, layer: str) -> list[int]:
    """A fixed random sample of channels per layer, the same on every machine; a larger
    ``count`` extends a smaller one, so a finished grid can be grown with more units."""
    rng = np.random.default_rng(sum(map(ord, layer)))
    return rng.permutation(n_channels)[:count].tolist()


def run_one(
    config: dict,
    generator,
    recording: Recording,
    column: int,
    noise,
    budget: int,
    seed: int,
) -> dict:
    optimizer = make_optimizer(
        config["optimizer"],
        generator.code_dim,
        seed=seed,
        generator=config["generator"],
        budget=budget,
        frequencies=generator.code_frequencies(),
        **config["settings"],
    )
    engine = Engine(generator, optimizer)
    track = {"best_true": -np.inf, "best_observed": -np.inf, "means": [], "curve": []}

    def score(images):
        true = recording.activations(images)[:, column]
        observed = true if noise is None else noise(true[:, None])[:, 0]
        return observed, {"activation": true}

    def on_generation(result):
        true = result.extra["activation"]
        track["best_true"] = max(track["best_true"], float(true.max()))
        track["best_observed"] = max(track["best_observed"], float(np.nanmax(result.scores)))
        track["means"].append(float(true.mean()))
        track["curve"].append(round(track["best_true"], 4))

    t0 = time.perf_counter()
    run_in_process(engine, score, budget // optimizer.population, on_generation)
    return {
        "best_true": track["best_true"],
        "best_observed": track["best_observed"],
        "first_mean": track["means"][0],
        "last_mean": track["means"][-1],
        "curve": track["curve"],
        "population": optimizer.population,
        "images": optimizer.population * len(track["means"]),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON-lines results file (appended, resumable)")
    p.add_argument("--quick", action="store_true", help="2 units, 400 images: a smoke test")
    p.add_argument("--units", type=int, default=5, help="units per layer (default 5)")
    p.add_argument(
        "--unit-offset",
        type=int,
        default=2,
        help="skip the first units of each layer's fixed sample (default 2: those were used "
        "to design the default optimizer, so the grid measures on other units)",
    )
    p.add_argument("--layers", default=",".join(LAYERS), help="comma-separated layer labels")
    p.add_argument("--budget", type=int, default=3000)
    p.add_argument(
        "--image-size",
        type=int,
        default=96,
        help="generated and network input size in px (default 96, to fit 2 CPUs)",
    )
    p.add_argument("--noise", default="none,poisson:20")
    p.add_argument("--seeds", default="0")
    p.add_argument("--only", default="", help="comma-separated config labels to run")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        help="extra config label:generator:optimizer[:k=v,...]",
    )
    p.add_argument("--references", type=int, default=500)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.quick:
        args.units, args.layers, args.budget, args.references = 1, "middle,output", 400, 100
        args.unit_offset = 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["kind"], r["label"], r["layer"], r["channel"], r["noise"], r["seed"]))
    configs = [
        c for c in configurations(args.extra) if not args.only or c["label"] in args.only.split(",")
    ]
    seeds = [int(s) for s in args.seeds.split(",")]
    network = load_network("efficientnet-lite0")
    generators = {
        name: make_generator(name, image_size=args.image_size, device=args.device)
        for name in {c["generator"] for c in configs} | {OFFLINE_DEFAULT}
    }
    refs = reference_crops(args.image_size, args.references, seed=0)

    def emit(record: dict) -> None:
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "curve"}), flush=True)

    for layer_label in args.layers.split(","):
        layer = LAYERS[layer_label]
        probe = Recording(network, [Unit(layer, 0)], device=args.device, input_size=args.image_size)
        sample = pick_channels(probe.layer_shape(layer)[0], args.unit_offset + args.units, layer)
        channels = sample[args.unit_offset :]
        recording = Recording(
            network,
            [Unit(layer, c) for c in channels],
            device=args.device,
            input_size=args.image_size,
        )
        ref_acts = recording.activations(refs)
        for column, channel in enumerate(channels):
            base = {
                "layer": layer_label,
                "channel": channel,
                "unit": str(recording.units[column]),
                "image_size": args.image_size,
                "budget": args.budget,
                "reference_best": float(ref_acts[:, column].max()),
            }
            for seed in seeds:
                if ("white_box", OFFLINE_DEFAULT, layer_label, channel, "none", seed) not in done:
                    t0 = time.perf_counter()
                    best = white_box(generators[OFFLINE_DEFAULT], recording, column, seed)
                    emit(
                        {
                            **base,
                            "kind": "white_box",
                            "label": OFFLINE_DEFAULT,
                            "noise": "none",
                            "seed": seed,
                            "best_true": best,
                            "seconds": round(time.perf_counter() - t0, 2),
                        }
                    )
                for noise_text in args.noise.split(","):
                    spikes = parse_noise(noise_text)
                    for config in configs:
                        key = ("run", config["label"], layer_label, channel, noise_text, seed)
                        if key in done:
                            continue
                        noise = (
                            None
                            if spikes is None
                            else PoissonNoise.calibrated(
                                ref_acts[:, [column]], spikes, seed=seed + 1
                            )
                        )
                        result = run_one(
                            config,
                            generators[config["generator"]],
                            recording,
                            column,
                            noise,
                            args.budget,
                            seed,
                        )
                        emit(
                            {
                                **base,
                                "kind": "run",
                                "label": config["label"],
                                "generator": config["generator"],
                                "optimizer": config["optimizer"],
                                "settings": config["settings"],
                                "noise": noise_text,
                                "seed": seed,
                                **result,
                            }
                        )


if __name__ == "__main__":
    main()
