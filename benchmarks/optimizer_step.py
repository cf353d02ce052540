"""Cost of one optimizer step (ask + tell) at XDream's code sizes, ours against pycma.

    python benchmarks/optimizer_step.py

Times the mean ask + tell over a run of ``--generations`` generations (population 40) on a
random objective, for d = 4,096 (DeePSiM-fc6) and 7,200 (the 48 px Fourier code); at
7,200 also the default on fourier codes, whose coarse-to-fine band scales every step.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from server.engine.generators import make_generator
from server.engine.optimizers import make_optimizer


def time_ours(name: str, dim: int, generations: int, generator: str | None = None) -> float:
    frequencies = None
    if generator is not None:
        frequencies = make_generator(generator, device="cpu").code_frequencies()
    opt = make_optimizer(name, dim, 0, generator, frequencies=frequencies, population=40)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(generations):
        codes = opt.ask()
        opt.tell(codes, rng.standard_normal(len(codes)))
    return (time.perf_counter() - t0) / generations


def time_pycma(dim: int, generations: int) -> float:
    import cma

    es = cma.CMAEvolutionStrategy(
        np.zeros(dim), 1.0, {"popsize": 40, "CMA_diagonal": True, "verbose": -9, "seed": 1}
    )
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(generations):
        x = es.ask()
        es.tell(x, list(rng.standard_normal(len(x))))
    return (time.perf_counter() - t0) / generations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generations", type=int, default=75)
    args = p.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {platform.python_version()}, "
        f"numpy {np.__version__}, {args.generations} generations, population 40"
    )
    print("| d | ga | cmaes (sep) | cmaes-chol | pycma CMA_diagonal | cmaes, fourier preset |")
    print("|---|---|---|---|---|---|")
    for dim in (4096, 7200):
        cells = [time_ours(n, dim, args.generations) for n in ("ga", "cmaes", "cmaes-chol")]
        cells.append(time_pycma(dim, args.generations))
        banded = time_ours("cmaes", dim, args.generations, "fourier") if dim == 7200 else None
        row = [f"{1000 * c:.1f} ms" for c in cells] + [f"{1000 * banded:.1f} ms" if banded else "-"]
        print(f"| {dim} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
