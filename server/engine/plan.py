"""One way to build a run from settings, shared by rig sessions and ``xdream evolve``.

:func:`choose_generator` checks the generator settings and gives a hashable choice (the
generator pool shares one instance per choice); :func:`plan_run` builds the optimizer for a
generator once, with its preset, the schedule's horizon and the number of generations the
budget allows, or restores it from a saved state. Errors name the setting to blame
(``XDreamError.field``), so a form can show each next to its field.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from protocol.errors import ConfigError, XDreamError
from server.engine.device import resolve_device
from server.engine.generators import Generator, default_generator, make_generator
from server.engine.generators.deepsim import VARIANTS as DEEPSIM_VARIANTS
from server.engine.loop import ImageSource
from server.engine.optimizers import DEFAULT_OPTIMIZER, Optimizer, make_optimizer

#: Budget in images when a run names neither budget nor generations (the paper's 3,000).
DEFAULT_BUDGET = 3000


@contextlib.contextmanager
def blame(field: str) -> Iterator[None]:
    """Name ``field`` as the setting to blame for an error raised inside (if none is named)."""
    try:
        yield
    except XDreamError as exc:
        exc.field = exc.field or field
        raise


@contextlib.contextmanager
def within(prefix: str, own: Collection[str]) -> Iterator[None]:
    """Name the setting to blame for an error raised inside as one of ``prefix``'s where it
    is one of its ``own`` (a thread's own generator is ``threads.1.generator``); a setting
    it took from the session keeps its name."""
    try:
        yield
    except XDreamError as exc:
        if exc.field is None or exc.field in own:
            exc.field = f"{prefix}.{exc.field}" if exc.field else prefix
        raise


@dataclass(frozen=True)
class GeneratorChoice:
    """A generator as settings name it: equal choices can share one instance."""

    name: str
    device: str
    options: tuple[tuple[str, Any], ...]

    def build(self) -> Generator:
        with blame("weights" if dict(self.options).get("weights") else "generator"):
            return make_generator(self.name, device=self.device, **dict(self.options))


def choose_generator(
    name: str | None = None,
    weights: str | None = None,
    image_size: int | None = None,
    device: str = "auto",
    precision: str = "float32",
    settings: dict[str, Any] | None = None,
) -> GeneratorChoice:
    """The generator ``name`` (default: DeePSiM-fc6 if its weights are installed, else the
    offline one) on ``device`` (``auto`` resolved now), checked before anything is built;
    ``settings``: the generator's own (e.g. fourier's ``resolution``)."""
    name = name or default_generator()
    own = {"weights", "image_size", "precision", "device"} & set(settings or {})
    odd = [k for k, v in (settings or {}).items() if not isinstance(v, (int, float, str))]
    if odd:  # a choice is a key of the generator pool: its values must be hashable
        raise ConfigError(
            f"generator setting(s) {', '.join(sorted(odd))} must be numbers or text",
            field="generator_settings",
        )
    if own:
        raise ConfigError(
            f"generator setting(s) {', '.join(sorted(own))} have options of their own",
            field="generator_settings",
        )
    if weights and name not in DEEPSIM_VARIANTS:
        raise ConfigError(
            f"weights are for DeePSiM generators ({', '.join(DEEPSIM_VARIANTS)}); "
            f"{name!r} has none",
            field="weights",
        )
    with blame("device"):
        where = str(resolve_device(device))
    options = {
        **(settings or {}),
        **({"weights": weights} if weights else {}),
        **({"image_size": image_size} if image_size else {}),
        "precision": precision,
    }
    return GeneratorChoice(name, where, tuple(sorted(options.items())))


@dataclass
class RunPlan:
    """The optimizer of a run and how long the run lasts."""

    optimizer: Optimizer
    optimizer_name: str
    generations: int

    def record(self, generator: ImageSource) -> dict[str, Any]:
        """What a session file records about the run's parts."""
        return {
            "generator": generator.name,
            "optimizer": self.optimizer_name,
            "population": self.optimizer.population,
            "generations": self.generations,
            "image_size": generator.image_size,
            "device": str(generator.device),
            "optimizer_settings": dataclasses.asdict(self.optimizer.settings),
        }


def plan_run(
    generator: ImageSource,
    optimizer: str | None = None,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    population: int | None = None,
    budget: int | None = None,
    generations: int | None = None,
    state: dict[str, Any] | None = None,
) -> RunPlan:
    """The optimizer (``optimizer``, default the benchmark winner) for ``generator``'s codes
    and the run's length: ``generations``, or as many as ``budget`` images allow (default
    :data:`DEFAULT_BUDGET`). With ``state`` the optimizer continues from it."""
    name = optimizer or DEFAULT_OPTIMIZER
    overrides = dict(settings or {})
    if population is not None:
        overrides["population"] = population
    budget = budget if budget is not None or generations is not None else DEFAULT_BUDGET
    with blame("optimizer" if optimizer else "settings"):
        built = make_optimizer(
            name,
            generator.code_dim,
            seed,
            generator.name,
            budget,
            generations,
            generator.code_frequencies(),
            **overrides,
        )
    length = generations or (budget or 0) // built.population
    if length < 1:
        raise ConfigError(
            f"budget {budget} is below one generation of {built.population} images",
            field="budget",
        )
    if state is not None:
        built = Optimizer.from_state_dict(state)
    return RunPlan(built, name, length)
