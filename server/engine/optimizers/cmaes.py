"""CMA-ES for 10^3-10^4-dimensional codes: separable (diagonal) and low-rank Cholesky.

Why our own and not pycma (which the tests use as the reference on sphere and ellipsoid):
- a session must be restorable bit-for-bit from plain arrays in its HDF5 file after a crash;
  pycma's state is a large object graph that only pickle can save;
- missing responses (NaN) drop out of our update, which recombines the observed samples
  only (pycma accepts NaN too, by rules of its own that we would have to pin down);
- step-size control is where the gains are for XDream (Wang & Ponce 2022): a budget-aware
  decay of sigma beats cumulative step-size adaptation, which at d ~ 7,000 and
  lambda = 40 barely moves sigma within a few hundred generations;
- cost: one ask + tell at d = 7,200, lambda = 40 takes ~7 ms here vs ~14 ms for pycma's
  diagonal mode (``benchmarks/optimizer_step.py``, docs/BENCHMARKS.md).

Both variants share the evolution paths and step-size rules (Hansen's tutorial, 2016); they
differ in how the covariance is stored: a vector of variances (sep-CMA, Ros & Hansen 2008,
learning rates scaled by (d + 2) / 3), or a Cholesky factor A with C = A A^T kept as
``alpha I + U V^T`` and updated by rank one per generation (Igel et al. 2006), so memory and
time grow as O(d x generations) instead of O(d^2).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from protocol.errors import ConfigError
from server.engine.optimizers.base import OPTIMIZERS, Optimizer, Settings, State, valid_mask


@dataclasses.dataclass
class CMASettings(Settings):
    population: int = 40
    #: Initial step size in code units.
    sigma0: float = 1.0
    #: ``csa`` (cumulative step-size adaptation) or ``decay`` (geometric from sigma0 to
    #: sigma_end over ``horizon`` generations, then constant).
    step_size: str = "csa"
    sigma_end: float = 0.2
    horizon: int = 75
    #: Where the search starts: ``zeros`` or one N(0, 1) ``random`` code.
    start: str = "zeros"
    #: Started from codes (images): at their ``mean``, or at the ``best`` of them, which
    #: takes one generation that shows the codes themselves to find it.
    seeds: str = "best"
    #: Coarse to fine: steps start on spatial frequencies up to ``band_start`` cycles per
    #: image (0: the whole code from the first generation) and the band widens
    #: geometrically to the code's highest frequency over the first ``band_growth`` of the
    #: horizon. Above the band a coordinate's step shrinks as (band / frequency) **
    #: ``band_rolloff``. Needs a generator whose codes have frequencies (``fourier``).
    band_start: float = 0.0
    band_growth: float = 0.6
    band_rolloff: float = 2.0
    #: The worst samples' pull on the mean: its step is the weighted best half minus
    #: ``negative_weight`` times the worst half, weighted alike (0: the textbook positive
    #: weights). With 1 every sample counts, as in NES, the step's signal doubles, and of
    #: the random directions in it a part cancels.
    negative_weight: float = 0.0

    def check(self) -> None:
        if self.sigma0 <= 0 or self.sigma_end <= 0:
            raise ConfigError("sigma0 and sigma_end must be positive")
        if self.step_size not in ("csa", "decay"):
            raise ConfigError(f"step_size must be 'csa' or 'decay', got {self.step_size!r}")
        if self.horizon < 1:
            raise ConfigError(f"horizon must be at least 1 generation, got {self.horizon}")
        if self.start not in ("zeros", "random"):
            raise ConfigError(f"start must be 'zeros' or 'random', got {self.start!r}")
        if self.seeds not in ("mean", "best"):
            raise ConfigError(f"seeds must be 'mean' or 'best', got {self.seeds!r}")
        if not 0 <= self.negative_weight <= 1:
            raise ConfigError(f"negative_weight must be in [0, 1], got {self.negative_weight}")
        band_ok = 0 < self.band_growth <= 1 and 0 < self.band_rolloff <= 8
        if self.band_start < 0 or not band_ok:
            raise ConfigError(
                "band_start must be at least 0, band_growth in (0, 1] and band_rolloff in "
                "(0, 8]"
            )


def recombination_weights(n: int) -> np.ndarray:
    """Positive log-linear weights for the best ``n // 2`` of ``n`` samples, summing to 1."""
    mu = max(n // 2, 1)
    w = math.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    return w / w.sum()


class _CMABase(Optimizer):
    """Evolution paths, mean and step size; subclasses own the covariance."""

    settings_class = CMASettings
    settings: CMASettings

    def __init__(self, dim: int, seed: int = 0, **settings) -> None:
        super().__init__(dim, seed, **settings)
        d, s = dim, self.settings
        w = recombination_weights(s.population)
        mu_eff = 1.0 / float(np.sum(w**2))
        self.c_sigma = (mu_eff + 2) / (d + mu_eff + 5)
        self.d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (d + 1)) - 1) + self.c_sigma
        self.c_c = (4 + mu_eff / d) / (d + 4 + 2 * mu_eff / d)
        scale = self._cov_rate_scale_for(d)
        self.c_1 = min(1.0, scale * 2 / ((d + 1.3) ** 2 + mu_eff))
        self.c_mu = min(
            1 - self.c_1, scale * 2 * (mu_eff - 2 + 1 / mu_eff) / ((d + 2) ** 2 + mu_eff)
        )
        self.chi_n = math.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d**2))
        start = self.rng.standard_normal(d) if s.start == "random" else np.zeros(d)
        self.mean = start
        self.sigma = s.sigma0
        self.p_sigma = np.zeros(d)
        self.p_c = np.zeros(d)
        #: Codes to show as the first generation, whose best becomes the mean (seeds=best).
        self.seed_codes: np.ndarray | None = None
        #: Cycles per image of each coordinate, for the coarse-to-fine band.
        self.frequencies: np.ndarray | None = None

    def use_code_frequencies(self, frequencies: np.ndarray | None) -> None:
        if self.settings.band_start <= 0:
            return
        if frequencies is None:
            raise ConfigError(
                "band_start (coarse to fine) needs the spatial frequency of every code "
                "coordinate (Generator.code_frequencies: fourier codes have them, pixel "
                "and DeePSiM codes do not); set band_start to 0 for this generator",
                field="settings",
            )
        frequencies = np.asarray(frequencies, dtype=np.float64)
        if frequencies.shape != (self.dim,) or not (frequencies > 0).all():
            raise ConfigError(f"code frequencies must be {self.dim} positive numbers")
        self.frequencies = frequencies

    def _band(self) -> np.ndarray | float:
        """Each coordinate's step factor this generation: 1 inside the band, less above."""
        s = self.settings
        if self.frequencies is None:
            if s.band_start > 0:  # built directly, or restored from a state without them
                raise ConfigError("band_start is set but no code frequencies were given")
            return 1.0
        top = float(self.frequencies.max())
        start = min(s.band_start, top)
        progress = min(1.0, self.generation / max(1.0, s.band_growth * s.horizon))
        band = start * (top / start) ** progress
        return np.minimum(1.0, band / self.frequencies) ** s.band_rolloff

    def _start_from(self, codes: np.ndarray) -> None:
        self.mean = codes.mean(axis=0)
        if self.settings.seeds == "best":
            self.seed_codes = codes[: self.population]

    def _cov_rate_scale_for(self, dim: int) -> float:
        """Factor on the covariance learning rates (sep-CMA raises them by (d + 2) / 3)."""
        return 1.0

    # Covariance hooks -----------------------------------------------------------------
    def _colour(self, z: np.ndarray) -> np.ndarray:
        """Rows z ~ N(0, I) -> rows y ~ N(0, C)."""
        raise NotImplementedError

    def _whiten(self, y: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_colour`."""
        raise NotImplementedError

    def _update_covariance(self, y: np.ndarray, w: np.ndarray, h_sigma: float) -> None:
        raise NotImplementedError

    # ask / tell -----------------------------------------------------------------------
    def _ask(self) -> np.ndarray:
        seeds = self.seed_codes if self.seed_codes is not None else np.zeros((0, self.dim))
        z = self.rng.standard_normal((self.population - len(seeds), self.dim))
        return np.concatenate([seeds, self.mean + self.sigma * self._colour(z) * self._band()])

    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        valid = valid_mask(scores)
        if self.seed_codes is not None:  # the seeds' generation: start at the best seed
            seeds = len(self.seed_codes)
            if valid[:seeds].any():  # else (no seed answered) they are shown again
                self.mean = codes[int(np.nanargmax(scores[:seeds]))].copy()
                self.seed_codes = None
            return
        if valid.sum() < 2:
            return  # nothing to rank; the next ask resamples around the same mean
        order = np.argsort(-scores[valid], kind="stable")
        w = recombination_weights(int(valid.sum()))
        mu_eff = 1.0 / float(np.sum(w**2))
        ranked = (codes[valid][order] - self.mean) / self.sigma  # best first
        y = ranked[: len(w)]
        step = w @ y
        if self.settings.negative_weight > 0:  # the worst first, as the best are
            step = step - self.settings.negative_weight * (w @ ranked[::-1][: len(w)])
        self.mean = self.mean + self.sigma * step
        # The paths and the covariance learn from the steps as if the band were not there
        # (it is a schedule, not something learnt), so a coordinate's variance is not
        # taken for small while the band holds it back.
        y = y / self._band()
        y_w = w @ y
        z_w = self._whiten(y_w[None])[0]
        cs, cc = self.c_sigma, self.c_c
        self.p_sigma = (1 - cs) * self.p_sigma + math.sqrt(cs * (2 - cs) * mu_eff) * z_w
        norm_ps = float(np.linalg.norm(self.p_sigma))
        correction = math.sqrt(1 - (1 - cs) ** (2 * (self.generation + 1)))
        h_sigma = float(norm_ps / correction < (1.4 + 2 / (self.dim + 1)) * self.chi_n)
        self.p_c = (1 - cc) * self.p_c + h_sigma * math.sqrt(cc * (2 - cc) * mu_eff) * y_w
        self._update_covariance(y, w, h_sigma)
        s = self.settings
        if s.step_size == "csa":
            self.sigma *= math.exp(min(1.0, (cs / self.d_sigma) * (norm_ps / self.chi_n - 1)))
        else:
            progress = min(self.generation + 1, s.horizon) / s.horizon
            self.sigma = s.sigma0 * (s.sigma_end / s.sigma0) ** progress

    def _state(self) -> State:
        state = {"mean": self.mean, "sigma": self.sigma, "p_sigma": self.p_sigma, "p_c": self.p_c}
        if self.seed_codes is not None:
            state["seed_codes"] = self.seed_codes
        if self.frequencies is not None:
            state["frequencies"] = self.frequencies
        return state

    def _load_state(self, state: State) -> None:
        seeds = state.get("seed_codes")
        self.seed_codes = None if seeds is None else np.array(seeds, dtype=np.float64)
        frequencies = state.get("frequencies")
        if (frequencies is None) != (self.settings.band_start <= 0):
            raise ValueError("code frequencies are saved exactly when band_start is set")
        self.frequencies = None
        self.use_code_frequencies(frequencies)  # its checks (a ConfigError is a ValueError)
        self.mean = np.array(state["mean"], dtype=np.float64)
        self.sigma = float(state["sigma"])
        self.p_sigma = np.array(state["p_sigma"], dtype=np.float64)
        self.p_c = np.array(state["p_c"], dtype=np.float64)


@OPTIMIZERS.register("cmaes")
class SepCMAES(_CMABase):
    """Separable CMA-ES: a diagonal covariance, O(d) per sample."""

    def __init__(self, dim: int, seed: int = 0, **settings) -> None:
        super().__init__(dim, seed, **settings)
        self.variances = np.ones(dim)

    def _cov_rate_scale_for(self, dim: int) -> float:
        return (dim + 2) / 3

    def _colour(self, z: np.ndarray) -> np.ndarray:
        return z * np.sqrt(self.variances)

    def _whiten(self, y: np.ndarray) -> np.ndarray:
        return y / np.sqrt(self.variances)

    def _update_covariance(self, y: np.ndarray, w: np.ndarray, h_sigma: float) -> None:
        c1, cmu, cc = self.c_1, self.c_mu, self.c_c
        rank_one = self.p_c**2 + (1 - h_sigma) * cc * (2 - cc) * self.variances
        rank_mu = w @ (y**2)
        self.variances = (1 - c1 - cmu) * self.variances + c1 * rank_one + cmu * rank_mu

    def _state(self) -> State:
        return {**super()._state(), "variances": self.variances}

    def _load_state(self, state: State) -> None:
        super()._load_state(state)
        self.variances = np.array(state["variances"], dtype=np.float64)


@OPTIMIZERS.register("cmaes-chol")
class CholeskyCMAES(_CMABase):
    """Cholesky CMA-ES with rank-one updates (Igel, Suttorp & Hansen 2006).

    ``A = alpha I + U V^T`` and ``A^-1 = beta I + P Q^T`` are kept in factored form: each
    generation appends one column to each factor, which is exact, not an approximation.
    """

    def __init__(self, dim: int, seed: int = 0, **settings) -> None:
        super().__init__(dim, seed, **settings)
        self.alpha, self.beta = 1.0, 1.0
        self.u = np.zeros((dim, 0))
        self.v = np.zeros((dim, 0))
        self.p = np.zeros((dim, 0))
        self.q = np.zeros((dim, 0))

    def _colour(self, z: np.ndarray) -> np.ndarray:
        return self.alpha * z + (z @ self.v) @ self.u.T

    def _whiten(self, y: np.ndarray) -> np.ndarray:
        return self.beta * y + (y @ self.q) @ self.p.T

    def _update_covariance(self, y: np.ndarray, w: np.ndarray, h_sigma: float) -> None:
        # C' = a^2 C + c1 p_c p_c^T, where a^2 = 1 - c1, plus (as in the textbook update)
        # c1 cc (2 - cc) C when h_sigma = 0 stalled p_c, so C does not shrink meanwhile.
        c1, cc = self.c_1, self.c_c
        a = math.sqrt(1 - c1 + (1 - h_sigma) * c1 * cc * (2 - cc))
        v = self._whiten(self.p_c[None])[0]
        nv2 = float(v @ v)
        if nv2 < 1e-300:
            return
        root = math.sqrt(1 + c1 / a**2 * nv2)
        b = a / nv2 * (root - 1)
        c = (1 - 1 / root) / (a * nv2)
        w_row = self.beta * v + self.q @ (self.p.T @ v)  # (A^-1)^T v
        self.u = np.column_stack([a * self.u, b * self.p_c])
        self.v = np.column_stack([self.v, v])
        self.alpha *= a
        self.p = np.column_stack([self.p / a, -c * v])
        self.q = np.column_stack([self.q, w_row])
        self.beta /= a

    def _state(self) -> State:
        return {
            **super()._state(),
            "alpha": self.alpha,
            "beta": self.beta,
            "u": self.u,
            "v": self.v,
            "p": self.p,
            "q": self.q,
        }

    def _load_state(self, state: State) -> None:
        super()._load_state(state)
        self.alpha, self.beta = float(state["alpha"]), float(state["beta"])
        for key in ("u", "v", "p", "q"):
            setattr(self, key, np.array(state[key], dtype=np.float64).reshape(self.dim, -1))
