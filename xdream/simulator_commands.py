"""``xdream evolve`` (in silico, in process) and ``xdream simulate`` (a rig played by ConvNet
units): they need the server extra (torch), imported only when chosen."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING

from protocol.errors import ConfigError
from xdream.common import (
    add_client_options,
    client_connection,
    parse_settings,
    share_cpus_politely,
)

if TYPE_CHECKING:  # torch-free at import: the statistics load with the command
    from server.engine.statistics import History


class _ProgressBar:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_decile = -1

    def __call__(self, done: int, total: int, history: History) -> None:
        frac = done / total
        bar = "#" * int(30 * frac)
        line = (
            f"{done}/{total} generations done [{bar:<30}] best {history.best_score:.3g} "
            f"mean {history.means[-1]:.3g} {time.perf_counter() - self.start:.0f}s"
        )
        if self.tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif int(frac * 10) > self._last_decile or done == total:
            self._last_decile = int(frac * 10)
            print(line, file=sys.stderr, flush=True)


def _evolve(args: argparse.Namespace) -> int:
    from server.engine.generators import default_generator
    from server.engine.optimizers import DEFAULT_OPTIMIZER
    from simulator import evolve

    config = evolve.EvolveConfig(
        target=args.target,
        out=args.out,
        generator=args.generator or default_generator(),
        optimizer=args.optimizer or DEFAULT_OPTIMIZER,
        budget=args.budget,
        noise=args.noise,
        repeats=args.repeats,
        seed=args.seed,
        weights=args.weights,
        image_size=args.image_size,
        input_size=args.input_size,
        device=args.device,
        references=args.references,
        reference_folder=args.reference_folder,
        network_weights=args.network_weights,
        settings=parse_settings(args.set),
        channels=args.channels,
        objective=args.objective,
        init_images=args.init_images,
        generator_settings=parse_settings(args.generator_set),
    )
    prepared = evolve.prepare(config)
    summary = evolve.run(prepared, progress=None if args.quiet else _ProgressBar())
    if args.json:
        print(json.dumps(summary))
    else:
        rel = ""
        if summary["best_reference"] and args.objective is None:
            ratio = summary["best_activation"] / summary["best_reference"]
            rel = f" (noiseless {ratio:.2f}x the best natural image)"
        print(
            f"best score {summary['best_score']:.4g}{rel}; mean first generation "
            f"{summary['first_generation_mean']:.4g}, last {summary['last_generation_mean']:.4g}; "
            f"{summary['images']} images in {summary['seconds']:.1f}s; "
            f"data in {summary['data_file']}"
        )
    return 0


def add_evolve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve",
        help="evolve images for a simulated ConvNet unit, in process",
        description="Run one XDream session against an in-silico unit and save it to DIR.",
    )
    p.add_argument(
        "--target",
        default="efficientnet-lite0:_fc:1",
        help="NETWORK:LAYER:CHANNEL[:X:Y] (default: %(default)s)",
    )
    p.add_argument(
        "--channels",
        type=int,
        default=1,
        help="units recorded in one pass: channel k is the target's unit + k (default 1)",
    )
    p.add_argument(
        "--objective",
        help="what is maximised, e.g. selectivity:drive=0;suppress=1,2 or "
        "target:channels=0,1;target=5,0 or mean:channels=0;minimize=true or "
        "sparseness:channels=0,1,2 (default: channel 0's response)",
    )
    p.add_argument(
        "--init-images",
        metavar="DIR",
        help="start from the images of DIR, inverted into the generator's codes (default: "
        "the optimizer's own start)",
    )
    p.add_argument(
        "--generator",
        help="fc6..norm1, pixel, fourier (default: fc6 when its "
        "weights are installed, else the offline default)",
    )
    p.add_argument("--optimizer", help="ga, cmaes, cmaes-chol, nes, fdgd (default: cmaes)")
    p.add_argument("--budget", type=int, default=3000, help="images to present (default 3000)")
    p.add_argument(
        "--noise", default="none", help="none or poisson:K (K spikes to a good natural image)"
    )
    p.add_argument("--repeats", type=int, default=1, help="presentations averaged per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (must not hold a session)")
    p.add_argument("--weights", help="DeePSiM weights file (default: the weights directory)")
    p.add_argument("--image-size", type=int, help="side of generated images in px")
    p.add_argument("--network-weights", help="state dict for a torchvision:ARCH target network")
    p.add_argument("--input-size", type=int, help="side the network sees (default: its own)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--references",
        type=int,
        default=100,
        help="natural reference images for calibration and comparison (default 100)",
    )
    p.add_argument(
        "--reference-folder",
        help="folder of reference photos (default: scikit-image's bundled ones)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="optimizer setting, e.g. --set population=40 (repeatable)",
    )
    p.add_argument(
        "--generator-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator setting, e.g. --generator-set resolution=16 for fourier (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary line at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_evolve)


def _sweep(args: argparse.Namespace) -> int:
    share_cpus_politely()
    from pathlib import Path

    from simulator import sweep

    config = sweep.SweepConfig.load(args.config)
    out = Path(args.out)
    if args.baseline and args.baseline not in {c["label"] for c in config.configurations}:
        raise ConfigError(f"--baseline {args.baseline} is none of the grid's labels")
    if args.report:
        print(sweep.report(config, out, args.baseline))
        return 0
    if args.workers < 1:
        raise ConfigError(f"--workers is at least 1, got {args.workers}")
    runner = sweep.on_ray(args.ray) if args.ray else sweep.on_local_pool(args.workers)

    def progress(row: dict, n: int, total: int) -> None:
        if not args.quiet:
            what = row.get("error") or f"best activation {row['best_activation']:.3g}"
            print(f"{n}/{total} {row['label']} {row['target']} seed {row['seed']}: {what}",
                  file=sys.stderr, flush=True)  # fmt: skip

    failed = sweep.sweep(config, out, runner, progress)
    print(sweep.report(config, out, args.baseline))
    if failed:
        print(f"{failed} cells failed (their lines in {out / sweep.RESULTS} say why; they "
              "run again when the sweep is started again)", file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


def add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="a grid of in-silico evolutions: targets x configurations x seeds",
        description="Run every cell of a grid (a JSON file: targets, configurations, seeds, "
        "common settings; see simulator/sweep.py) as an xdream evolve run, on local "
        "processes or a Ray cluster. Results go to OUT/results.jsonl as they finish; started "
        "again, the sweep runs only the cells without a result.",
    )
    p.add_argument("config", help="the grid's JSON file")
    p.add_argument("--out", required=True, help="folder for results.jsonl (and kept runs)")
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, os.cpu_count() or 1),
        help="local processes (default: one per core)",
    )
    p.add_argument(
        "--ray", metavar="ADDRESS", help="run on a Ray cluster (e.g. ray://head:10001; "
        "'local': a Ray started here); needs the cluster extra",
    )  # fmt: skip
    p.add_argument("--report", action="store_true", help="print the results' table only")
    p.add_argument(
        "--baseline", metavar="LABEL",
        help="a configuration the table compares every other with, target by target and "
        "seed by seed (e.g. the GA's)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no line per finished cell")
    p.set_defaults(handler=_sweep)


def _simulate(args: argparse.Namespace) -> int:
    share_cpus_politely()
    from protocol.messages import Role
    from simulator import client

    rig = client.build(
        client.SimulatorConfig(
            target=args.target,
            noise=args.noise,
            channels=args.channels,
            abort_rate=args.abort_rate,
            latency_ms=args.latency_ms,
            seed=args.seed,
            device=args.device,
        ),
        client_connection(args, [Role.presenter, Role.recorder]),
    )
    try:
        rig.run()
    finally:
        rig.connection.close()
    return 0


def add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="play a rig (presenter and recorder) with in-silico units",
        description="Connect to a server as presenter and recorder and answer every block "
        "with spike counts of ConvNet units.",
    )
    add_client_options(p, "simulator")
    p.add_argument("--target", default="efficientnet-lite0:_fc:1", help="NETWORK:LAYER:CHANNEL")
    p.add_argument("--noise", default="poisson:20", help="none or poisson:K (default poisson:20)")
    p.add_argument("--channels", type=int, default=1, help="neighbouring units recorded")
    p.add_argument("--abort-rate", type=float, default=0.0, help="fraction of trials aborted")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before each reply")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(handler=_simulate)
