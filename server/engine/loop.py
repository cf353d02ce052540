"""The generation loop shared by the rig server and ``xdream evolve``.

One generation is: ask the optimizer for codes, render them, obtain one score per image
(from a rig, or from an in-silico neuron), tell the optimizer, record everything. The
engine splits that into :meth:`Engine.propose` and :meth:`Engine.complete` so that the
server can wait for a rig between the two while ``xdream evolve`` calls them back to back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from protocol.errors import ConfigError
from server.engine.optimizers import Optimizer


@dataclass
class Proposal:
    """Codes and images of one generation, waiting for scores."""

    index: int
    codes: np.ndarray
    images: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class GenerationResult:
    index: int
    codes: np.ndarray
    images: np.ndarray
    scores: np.ndarray
    timings: dict[str, float]
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class ImageSource(Protocol):
    """What the engine needs of a generator: a generator, or a shared one from the pool."""

    @property
    def name(self) -> str: ...
    @property
    def code_dim(self) -> int: ...
    @property
    def image_size(self) -> int: ...
    @property
    def device(self) -> torch.device: ...
    def code_frequencies(self) -> np.ndarray | None: ...
    def generate(self, codes: np.ndarray) -> np.ndarray: ...


class GenerationSink(Protocol):
    """Where completed generations and the optimizer's state go (e.g. the HDF5 file)."""

    def write_generation(self, result: GenerationResult, optimizer_state: dict) -> None: ...


class Engine:
    """Drives one optimizer and one generator; knows nothing about where scores come from."""

    def __init__(
        self, generator: ImageSource, optimizer: Optimizer, sink: GenerationSink | None = None
    ) -> None:
        if optimizer.dim != generator.code_dim:
            raise ConfigError(
                f"optimizer works on {optimizer.dim}-d codes but {generator.name} "
                f"takes {generator.code_dim}"
            )
        self.generator = generator
        self.optimizer = optimizer
        self.sink = sink

    def propose(self) -> Proposal:
        """Codes and images for the next generation (the same until it is completed)."""
        t0 = time.perf_counter()
        codes = self.optimizer.ask()
        t1 = time.perf_counter()
        images = self.generator.generate(codes)
        t2 = time.perf_counter()
        return Proposal(
            self.optimizer.generation, codes, images, {"ask_s": t1 - t0, "generate_s": t2 - t1}
        )

    def complete(
        self,
        proposal: Proposal,
        scores: np.ndarray,
        extra: dict[str, np.ndarray] | None = None,
        score_seconds: float = 0.0,
    ) -> GenerationResult:
        """Tell the optimizer the scores (NaN = missing) and record the generation."""
        if proposal.index != self.optimizer.generation:  # a caller's bug, not a setting
            raise RuntimeError(
                f"scores for generation {proposal.index} arrived, but generation "
                f"{self.optimizer.generation} is current"
            )
        t0 = time.perf_counter()
        self.optimizer.tell(proposal.codes, scores)
        t1 = time.perf_counter()
        timings = {**proposal.timings, "score_s": score_seconds, "tell_s": t1 - t0}
        result = GenerationResult(
            proposal.index,
            proposal.codes,
            proposal.images,
            np.asarray(scores, dtype=np.float64),
            timings,
            extra or {},
        )
        if self.sink is not None:
            self.sink.write_generation(result, self.optimizer.state_dict())
        return result


ScoreFunction = Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]


def run_in_process(
    engine: Engine,
    score: ScoreFunction,
    generations: int,
    on_generation: Callable[[GenerationResult], None] | None = None,
) -> None:
    """Run ``generations`` generations with an in-process score function (no rig).

    Results are not accumulated (a run can hold gigabytes of images): the sink stores them
    and ``on_generation`` sees each one as it completes.
    """
    for _ in range(generations):
        proposal = engine.propose()
        t0 = time.perf_counter()
        scores, extra = score(proposal.images)
        result = engine.complete(proposal, scores, extra, time.perf_counter() - t0)
        if on_generation is not None:
            on_generation(result)
