"""Finite-difference gradient ascent (FDGD) and natural evolution strategies (NES).

Both estimate a gradient from antithetic pairs around a centre: ask returns
``[c + step_1 .. c + step_k, c - step_1 .. c - step_k]``, so ``tell`` must receive the codes
in that order (the engine does). A pair with a missing score is left out of the estimate.
Settings are XDream's for DeePSiM-fc6.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from protocol.errors import ConfigError
from server.engine.optimizers.base import OPTIMIZERS, Optimizer, Settings, State


@dataclasses.dataclass
class AntitheticSettings(Settings):
    population: int = 20
    radius: float = 1.25
    learning_rate: float = 1.25

    def check(self) -> None:
        if self.population % 2:
            raise ConfigError(f"population must be even (+/- pairs), got {self.population}")
        if self.radius <= 0 or self.learning_rate <= 0:
            raise ConfigError("radius and learning_rate must be positive")


@dataclasses.dataclass
class NESSettings(AntitheticSettings):
    learning_rate: float = 1.75
    #: Learning rate of the sampling radius (0 keeps it fixed).
    radius_learning_rate: float = 0.05


class _Antithetic(Optimizer):
    """Centre, radius and the +/- sampling shared by FDGD and NES."""

    settings_class = AntitheticSettings
    settings: AntitheticSettings

    def __init__(self, dim: int, seed: int = 0, **settings) -> None:
        super().__init__(dim, seed, **settings)
        self.center = np.zeros(dim)
        self.radius = self.settings.radius

    def _start_from(self, codes: np.ndarray) -> None:
        self.center = codes.mean(axis=0)

    def _noise(self, half: int) -> np.ndarray:
        """Unscaled perturbations; the sample is ``centre +/- radius * noise``."""
        return self.rng.standard_normal((half, self.dim))

    def _ask(self) -> np.ndarray:
        steps = self.radius * self._noise(self.population // 2)
        return np.concatenate([self.center + steps, self.center - steps])

    def _pairs(self, codes: np.ndarray, scores: np.ndarray):
        """Steps and (f+, f-) of the pairs whose two scores are both present."""
        half = len(codes) // 2
        steps = codes[:half] - self.center
        plus, minus = scores[:half], scores[half : 2 * half]
        ok = ~(np.isnan(plus) | np.isnan(minus))
        return steps[ok], plus[ok], minus[ok]

    def _state(self) -> State:
        return {"center": self.center, "radius": self.radius}

    def _load_state(self, state: State) -> None:
        self.center = np.array(state["center"], dtype=np.float64)
        self.radius = float(state["radius"])


@OPTIMIZERS.register("fdgd")
class FDGD(_Antithetic):
    """Finite differences: gradient = mean(delta_i * step_i / mean|step_i|^2)."""

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        steps, plus, minus = self._pairs(codes, scores)
        if len(steps) == 0:
            return
        delta = (plus - minus) / 2
        norm = np.abs(steps).mean(axis=1)
        gradient = np.mean(delta[:, None] * steps / norm[:, None] ** 2, axis=0)
        self.center = self.center + self.settings.learning_rate * gradient


@OPTIMIZERS.register("nes")
class NES(_Antithetic):
    """NES on raw scores (Ilyas et al. 2018), with an optionally learned radius."""

    settings_class = NESSettings
    settings: NESSettings

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        steps, plus, minus = self._pairs(codes, scores)
        if len(steps) == 0:
            return
        eps = np.concatenate([steps, -steps]) / self.radius
        f = np.concatenate([plus, minus])
        gradient = np.mean(f[:, None] * eps, axis=0) / self.radius
        radius_gradient = float(np.mean(f[:, None] * (eps**2 - 1))) / self.radius
        self.center = self.center + self.settings.learning_rate * gradient
        rlr = self.settings.radius_learning_rate
        if rlr > 0:
            self.radius = max(self.radius + rlr * radius_gradient, 0.01)
