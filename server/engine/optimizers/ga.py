"""XDream's genetic algorithm, rule for rule (Xiao & Kreiman 2020, reference code).

- Missing (NaN) scores: the code is carried over unchanged and evaluated again.
- Fitness: softmax of ``selectivity`` x z-score, with scores clipped at their 95th percentile.
- The ``n_conserve`` best codes survive unchanged; the rest are children of two parents drawn
  with replacement in proportion to fitness, crossed over per element and mutated.
- Codes are never clipped and scores never averaged across generations.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from protocol.errors import ConfigError
from server.engine.optimizers.base import OPTIMIZERS, Optimizer, Settings, State, valid_mask


@dataclasses.dataclass
class GASettings(Settings):
    population: int = 20
    mutation_rate: float = 0.5
    mutation_size: float = 0.5
    selectivity: float = 2.0
    heritability: float = 0.5
    n_conserve: int = 0

    def check(self) -> None:
        if not 0.0 <= self.mutation_rate <= 1.0:
            raise ConfigError(f"mutation_rate must be in [0, 1], got {self.mutation_rate}")
        if self.mutation_size < 0:
            raise ConfigError(f"mutation_size must be >= 0, got {self.mutation_size}")
        if self.selectivity <= 0:
            raise ConfigError(f"selectivity must be > 0, got {self.selectivity}")
        if not 0.0 <= self.heritability <= 1.0:
            raise ConfigError(f"heritability must be in [0, 1], got {self.heritability}")
        if not 0 <= self.n_conserve < self.population:
            raise ConfigError(f"n_conserve must be in [0, population), got {self.n_conserve}")


#: Tuned settings per DeePSiM generator, from the XDream paper's table.
GA_PRESETS: dict[str, dict[str, float]] = {
    "norm1": dict(population=15, mutation_rate=1.0, mutation_size=1.5, selectivity=2),
    "norm2": dict(population=10, mutation_rate=0.5, mutation_size=0.7, selectivity=4),
    "conv3": dict(population=12, mutation_rate=0.65, mutation_size=0.75, selectivity=2.25),
    "conv4": dict(population=10, mutation_rate=0.9, mutation_size=0.75, selectivity=2.5),
    "pool5": dict(
        population=10, mutation_rate=0.6, mutation_size=1.0, selectivity=2.5, heritability=0.75
    ),
    "fc6": dict(population=20, mutation_rate=0.5, mutation_size=0.5, selectivity=2),
    "fc7": dict(population=45, mutation_rate=0.6, mutation_size=0.3, selectivity=1.25),
    "fc8": dict(population=20, mutation_rate=0.2, mutation_size=0.6, selectivity=2),
}


def fitness(scores: np.ndarray, selectivity: float) -> np.ndarray:
    """Selection probabilities for valid ``scores`` (a softmax of selectivity x z-score)."""
    k_t = max(float(np.std(scores)) / selectivity, 1e-8)
    clipped = np.minimum(scores, np.percentile(scores, 95))
    weights = np.exp((clipped - clipped.max()) / k_t)
    return weights / weights.sum()


@OPTIMIZERS.register("ga")
class GeneticAlgorithm(Optimizer):
    """The reference GA: N(0, 1) codes first, or the codes it is started from."""

    settings_class = GASettings
    settings: GASettings

    def __init__(self, dim: int, seed: int = 0, **settings) -> None:
        super().__init__(dim, seed, **settings)
        self._population = self.rng.standard_normal((self.population, dim))

    def _start_from(self, codes: np.ndarray) -> None:
        """The first generation is ``codes``; a shortfall is filled with their children
        (uniform parents), as the reference code seeds a GA from images."""
        given = codes[: self.population]
        uniform = np.full(len(given), 1.0 / len(given))
        self._population = np.concatenate(
            [given, self._mate(given, uniform, self.population - len(given))]
        )

    def _mate(self, parents: np.ndarray, prob: np.ndarray, n: int) -> np.ndarray:
        s = self.settings
        first = parents[self.rng.choice(len(parents), size=n, p=prob)]
        second = parents[self.rng.choice(len(parents), size=n, p=prob)]
        h = s.heritability if s.heritability >= 0.5 else 1.0 - s.heritability
        children = np.where(self.rng.random((n, self.dim)) < h, first, second)
        mutate = self.rng.random((n, self.dim)) < s.mutation_rate
        return children + mutate * self.rng.normal(0.0, s.mutation_size, (n, self.dim))

    def _ask(self) -> np.ndarray:
        return self._population

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        valid = valid_mask(scores)
        carried = codes[~valid]
        if not valid.any():
            self._population = codes.copy()
            return
        good, good_scores = codes[valid], scores[valid]
        keep = min(self.settings.n_conserve, len(good))
        elite = good[np.argsort(-good_scores, kind="stable")[:keep]]
        n_children = max(self.population - len(carried) - keep, 0)
        children = self._mate(good, fitness(good_scores, self.settings.selectivity), n_children)
        self._population = np.concatenate([elite, children, carried])

    def _state(self) -> State:
        return {"population": self._population}

    def _load_state(self, state: State) -> None:
        self._population = np.array(state["population"], dtype=np.float64)
