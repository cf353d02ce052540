"""Gradient-free optimizers behind one ask/tell interface, looked up by name.

``ga`` (XDream's genetic algorithm), ``cmaes`` (separable CMA-ES), ``cmaes-chol``
(low-rank Cholesky CMA-ES), ``nes`` and ``fdgd``. :func:`make_optimizer` applies the presets:
the GA's tuned settings per DeePSiM generator, and the default optimizer's settings per
generator, chosen by the benchmark in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from server.engine.optimizers import cmaes, ga, gradient  # noqa: F401  (registers the classes)
from server.engine.optimizers.base import OPTIMIZERS, Optimizer, Settings

#: The benchmark winner, used when the user names no optimizer.
DEFAULT_OPTIMIZER = "cmaes"

#: CMA-ES on the whole code, chosen on a design set of units (docs/BENCHMARKS.md, section
#: 2): population 40 and sigma decaying geometrically from 1 to 0.1 over the budget.
#: Cumulative step-size adaptation (the textbook rule, the class default) barely moves sigma
#: at d ~ 7,000 and lost to the GA on output units. Population 20 did better without noise
#: but worse than the GA under Poisson noise; rigs are always noisy, so 40. Raw pixels keep
#: it, and so does the Cholesky variant, which section 13 did not tune again.
_CMA_WHOLE_CODE = dict(population=40, sigma0=1.0, step_size="decay", sigma_end=0.1)
#: Separable CMA-ES on fourier codes goes coarse to fine (docs/BENCHMARKS.md, section 13):
#: the band starts at 2 cycles per image and opens to the whole code over the first 60 % of
#: the run, with sigma from 3 to 0.3. Random fine texture blurs the ranking while the search
#: is still finding a unit's coarse preference; without it, larger steps pay. The worst
#: half of each generation pulls the mean as much as the best half pushes it
#: (negative_weight 1), which the same benchmark found better with and without noise.
_CMA_COARSE_TO_FINE = dict(
    _CMA_WHOLE_CODE,
    sigma0=3.0,
    sigma_end=0.3,
    band_start=2.0,
    band_growth=0.6,
    negative_weight=1.0,
)
#: For DeePSiM codes: Wang & Ponce (2022)'s published setting, not benchmarked here (the
#: DeePSiM weights are not available offline).
_CMA_DEEPSIM = dict(population=40, sigma0=3.0)
_CMA_DEEPSIM_PRESETS = dict.fromkeys(("fc6", "fc7", "fc8"), _CMA_DEEPSIM)

#: Settings an optimizer starts from, per generator (missing: the class defaults).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "ga": ga.GA_PRESETS,
    "cmaes": {"fourier": _CMA_COARSE_TO_FINE, "pixel": _CMA_WHOLE_CODE, **_CMA_DEEPSIM_PRESETS},
    "cmaes-chol": {"fourier": _CMA_WHOLE_CODE, "pixel": _CMA_WHOLE_CODE, **_CMA_DEEPSIM_PRESETS},
}


def make_optimizer(
    name: str,
    dim: int,
    seed: int = 0,
    generator: str | None = None,
    budget: int | None = None,
    generations: int | None = None,
    frequencies: np.ndarray | None = None,
    **overrides: Any,
) -> Optimizer:
    """Build optimizer ``name`` for ``dim``-d codes with its preset for ``generator``.

    ``overrides`` (e.g. ``population=40``) win over the preset; unknown names raise
    ``ConfigError``. Optimizers with a schedule (``horizon``) plan it over ``generations``,
    or over the generations a ``budget`` (images) allows, unless a horizon is given.
    ``frequencies`` are the generator's code frequencies, for a coarse-to-fine search.
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
    built = cls(dim, seed, **settings)
    built.use_code_frequencies(frequencies)
    return built


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
