"""Poisson spiking for in-silico units, calibrated the way the XDream paper did.

A unit's rate is its rectified activation times a per-unit ``scale`` chosen so that a good
natural stimulus (the expected best of ``n_best`` reference images) evokes ``spikes`` spikes.
The expectation is taken over the reference images given: with fewer than ``n_best`` of them
it is simply their best, which sits below the best of 2,500, so pass many references
(``xdream evolve --references``) for noise as strong as the paper's.
Observed response = Poisson(rate) / scale, averaged over repeats: activation units, noisy.
"""

from __future__ import annotations

import numpy as np

from protocol.errors import ConfigError


def expected_max(values: np.ndarray, n: int) -> float:
    """Expected maximum of ``n`` draws (with replacement) from the empirical ``values``."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    m = len(v)
    cdf = (np.arange(1, m + 1) / m) ** n
    prob = np.diff(np.concatenate([[0.0], cdf]))
    return float(prob @ v)


def parse_noise(text: str) -> float | None:
    """``none`` -> None; ``poisson:K`` -> K (spikes to a good natural stimulus)."""
    if text == "none":
        return None
    kind, _, value = text.partition(":")
    try:
        spikes = float(value)
    except ValueError:
        spikes = -1.0
    if kind != "poisson" or not 0 < spikes < float("inf"):
        raise ConfigError(f"noise must be 'none' or 'poisson:K' with K > 0, got {text!r}")
    return spikes


class PoissonNoise:
    """Spike-count noise for ``(n, units)`` activations; ``scale`` is per unit."""

    def __init__(self, scale: np.ndarray, repeats: int = 1, seed: int = 0) -> None:
        self.scale = np.asarray(scale, dtype=np.float64)
        if (self.scale <= 0).any() or not np.isfinite(self.scale).all():
            raise ConfigError("Poisson scale must be positive and finite for every unit")
        if repeats < 1:
            raise ConfigError(f"repeats must be at least 1, got {repeats}")
        self.repeats = repeats
        self.rng = np.random.default_rng(seed)

    @classmethod
    def calibrated(
        cls, reference_acts: np.ndarray, spikes: float, n_best: int = 2500, **kwargs
    ) -> PoissonNoise:
        """Scale each unit so the expected best of ``n_best`` references gives ``spikes``."""
        acts = np.atleast_2d(np.asarray(reference_acts, dtype=np.float64))
        good = np.array([expected_max(col, n_best) for col in acts.T])
        if (good <= 0).any():
            bad = np.flatnonzero(good <= 0).tolist()
            raise ConfigError(
                f"unit(s) {bad} never respond to the reference images; cannot calibrate noise"
            )
        return cls(spikes / good, **kwargs)

    def spikes(self, activations: np.ndarray) -> np.ndarray:
        """One presentation's spike counts per unit (whole numbers, as a rig reports them)."""
        return self.rng.poisson(np.maximum(activations, 0.0) * self.scale).astype(np.float64)

    def __call__(self, activations: np.ndarray) -> np.ndarray:
        rate = np.maximum(activations, 0.0) * self.scale
        counts = self.rng.poisson(rate, size=(self.repeats, *rate.shape)).mean(axis=0)
        return counts / self.scale
