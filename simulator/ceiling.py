"""The white-box ceiling of a unit: gradient ascent (Adam) on its activation through the
generator and the network, from N(0, 1) codes. A search on a rig sees only responses, never
gradients, so how close it comes to this is a measure of the search (docs/BENCHMARKS.md);
``xdream sweep`` runs it beside a grid's configurations (its ``ceiling``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from protocol.errors import ConfigError
from server.engine.generators import Generator
from simulator.evolve import EvolveConfig, build_generator, build_recording
from simulator.target import Recording


@dataclass(frozen=True)
class Climb:
    """How the ceiling is climbed: ``starts`` codes at once, ``steps`` Adam steps of ``lr``."""

    starts: int = 4
    steps: int = 200
    lr: float = 0.05

    def __post_init__(self) -> None:
        for name in ("starts", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ceiling: {name} must be a whole number of at least 1")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr <= 10:
            raise ConfigError("ceiling: lr must be a number above 0, at most 10")


def white_box(
    generator: Generator, recording: Recording, column: int, seed: int, climb: Climb = Climb()
) -> float:
    """The best noiseless activation of unit ``column`` that Adam reaches."""
    rng = np.random.default_rng(seed)
    codes = torch.tensor(
        rng.standard_normal((climb.starts, generator.code_dim)),
        dtype=torch.float32,
        device=generator.device,
        requires_grad=True,
    )
    opt = torch.optim.Adam([codes], lr=climb.lr)
    best = -np.inf
    for _ in range(climb.steps):
        acts = recording.activations_float(generator.render_resized(codes))[:, column]
        best = max(best, float(acts.detach().max()))
        opt.zero_grad()
        (-acts.sum()).backward()
        opt.step()
    return best


def ceiling(config: EvolveConfig, climb: Climb) -> dict[str, Any]:
    """The ceiling of ``config``'s target (channel 0, noiseless) with its generator, as a
    summary like :func:`simulator.evolve.run`'s: ``best_activation`` and ``best_reference``."""
    generator = build_generator(config)
    neurons, ref_acts = build_recording(config, generator.image_size, None)
    started = time.perf_counter()
    best = white_box(generator, neurons.recording, 0, config.seed, climb)
    return {
        "kind": "white_box",
        "best_activation": best,
        "best_reference": None if ref_acts is None else float(ref_acts[:, 0].max()),
        "generator": config.generator,
        "target": config.target,
        "steps": climb.steps,
        "starts": climb.starts,
        "seconds": round(time.perf_counter() - started, 3),
    }
