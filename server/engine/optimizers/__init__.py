"""Gradient-free optimizers behind one ask/tell interface, looked up by name.

``ga`` (XDream's genetic algorithm), ``cmaes`` (separable CMA-ES), ``cmaes-chol``
(low-rank Cholesky CMA-ES), ``nes`` and ``fdgd``. :func:`make_optimizer` applies the presets:
the GA's tuned settings per DeePSiM generator, and the default optimizer's settings per
generator, chosen by the benchmark in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from server.engine.optimizers import cmaes, ga, gradient  # noqa: F401  (registers the classes)
from server.engine.optimizers.base import OPTIMIZERS, Optimizer, Settings

#: The benchmark winner, used when the user names no optimizer.
DEFAULT_OPTIMIZER = "cmaes"

#: CMA-ES for the weight-free generators, chosen on a design set of units (docs/BENCHMARKS.md):
#: population 40 and sigma decaying geometrically from 1 to 0.1 over the budget. Cumulative
#: step-size adaptation (the textbook rule, the class default) barely moves sigma at
#: d ~ 7,000 and lost to the GA on output units. Population 20 did better without noise
#: but worse than the GA under Poisson noise; rigs are always noisy, so 40.
_CMA_WEIGHT_FREE = dict(population=40, sigma0=1.0, step_size="decay", sigma_end=0.1)
#: For DeePSiM codes: Wang & Ponce (2022)'s published setting, not benchmarked here (the
#: DeePSiM weights are not available offline).
_CMA_DEEPSIM = dict(population=40, sigma0=3.0)

#: Settings an optimizer starts from, per generator (missing: the class defaults).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ga": ga.GA_PRESETS,
    **{
        name: {
            "fourier": _CMA_WEIGHT_FREE,
            "pixel": _CMA_WEIGHT_FREE,
            **dict.fromkeys(("fc6", "fc7", "fc8"), _CMA_DEEPSIM),
        }
        for name in ("cmaes", "cmaes-chol")
    },
}


def make_optimizer(
    name: str,
    dim: int,
    seed: int = 0,
    generator: str | None = None,
    budget: int | None = None,
    generations: int | None = None,
    **overrides: Any,
) -> Optimizer:
    """Build optimizer ``name`` for ``dim``-d codes with its preset for ``generator``.

    ``overrides`` (e.g. ``population=40``) win over the preset; unknown names raise
    ``ConfigError``. Optimizers with a schedule (``horizon``) plan it over ``generations``,
    or over the generations a ``budget`` (images) allows, unless a horizon is given.
    """
    cls = OPTIMIZERS.get(name)
    settings = {**PRESETS.get(name, {}).get(generator or "", {}), **overrides}
    fields = {f.name: f.default for f in dataclasses.fields(cls.settings_class)}
    if "horizon" in fields and "horizon" not in settings:
        if generations is not None:
            settings["horizon"] = generations
        elif budget is not None:
            population = preset_population(name, generator, **overrides)
            settings["horizon"] = max(1, budget // max(population, 1))
    return cls(dim, seed, **settings)


def preset_population(name: str, generator: str | None, **overrides: Any) -> int:
    """Images per generation of optimizer ``name`` for ``generator``: the preset's, or the
    optimizer's default (``overrides`` as :func:`make_optimizer` takes them)."""
    fields = {f.name: f.default for f in dataclasses.fields(OPTIMIZERS.get(name).settings_class)}
    preset = PRESETS.get(name, {}).get(generator or "", {})
    return int(overrides.get("population", preset.get("population", fields["population"])))


__all__ = [
    "DEFAULT_OPTIMIZER",
    "OPTIMIZERS",
    "PRESETS",
    "Optimizer",
    "Settings",
    "make_optimizer",
    "preset_population",
]
