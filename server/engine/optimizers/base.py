"""The ask/tell interface every optimizer implements, with exact, pickle-free state.

Public :meth:`Optimizer.ask` and :meth:`Optimizer.tell` do the bookkeeping once (shape
checks, NaN handling rules, generation counter, the pending batch); subclasses override
``_ask``, ``_tell`` and the pair ``_state`` / ``_load_state``. State is a flat mapping of
names to numpy arrays, numbers and strings, so it can live in HDF5 next to the data and a
restored optimizer continues bit-for-bit (its next ``ask()`` is identical).
"""

from __future__ import annotations

import dataclasses
import json
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from protocol.errors import ConfigError, XDreamError
from server.engine.registry import Registry

State = dict[str, Any]
#: Most images per generation (a rig shows them all, each at least once, per generation).
MAX_POPULATION = 1000
#: Largest magnitude of any numeric setting: beyond it a step size or a count is a typo,
#: and an overflow waiting to happen.
MAX_SETTING = 1e7


class OptimizerStateError(XDreamError, ValueError):
    """A saved optimizer state does not fit the optimizer it is being restored into."""


@dataclasses.dataclass
class Settings:
    """Base for per-optimizer settings; ``check`` validates after construction."""

    population: int = 20

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if number and (not math.isfinite(value) or abs(value) > MAX_SETTING):
                raise ConfigError(
                    f"setting {field.name} must be a finite number of magnitude at most "
                    f"{MAX_SETTING:g}, got {value!r}"
                )
        if not 2 <= self.population <= MAX_POPULATION:
            raise ConfigError(
                f"population must be between 2 and {MAX_POPULATION}, got {self.population}"
            )
        self.check()

    def check(self) -> None:
        """Subclasses raise ``ConfigError`` for out-of-range values."""

    @classmethod
    def build(cls, **values: Any) -> Settings:
        """Settings from user-supplied values, refusing names this optimizer does not know."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)} for {cls.__qualname__}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**{k: _coerce(k, v, str(known[k].type)) for k, v in values.items()})


def _coerce(name: str, value: Any, kind: str) -> Any:
    """``value`` as the setting's type (``int``, ``float`` or ``str``), or ``ConfigError``.

    Values come from command lines, JSON and HDF5, so 40.0 is a fine ``int`` and numpy
    scalars are fine numbers; booleans and strings are not numbers.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if kind == "int" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value).is_integer():
            return int(value)
    elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif kind == "str" and isinstance(value, str):
        return value
    raise ConfigError(f"setting {name} must be {kind}, got {value!r}")


class Optimizer(ABC):
    """Maximises a noisy black-box score over ``dim``-dimensional real codes."""

    name: ClassVar[str]
    settings_class: ClassVar[type[Settings]] = Settings

    def __init__(self, dim: int, seed: int = 0, **settings: Any) -> None:
        if dim < 1:
            raise ConfigError(f"code dimension must be positive, got {dim}")
        self.dim = dim
        self.seed = seed
        self.settings = self.settings_class.build(**settings)
        self.rng = np.random.default_rng(seed)
        self.generation = 0
        self._pending: np.ndarray | None = None

    @property
    def population(self) -> int:
        return self.settings.population

    def ask(self) -> np.ndarray:
        """The codes to evaluate next, ``(population, dim)``; repeated calls return the same."""
        if self._pending is None:
            self._pending = np.ascontiguousarray(self._ask(), dtype=np.float64)
        return self._pending.copy()

    def start_from(self, codes: np.ndarray) -> None:
        """Begin the search at ``codes`` (e.g. images inverted into the generator's code
        space: server/engine/inversion.py) instead of the optimizer's own start; only
        before the first generation is asked for."""
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.dim or len(codes) == 0:
            raise ConfigError(f"start codes have shape (n >= 1, {self.dim}), not {codes.shape}")
        if self.generation or self._pending is not None:
            raise ConfigError("an optimizer starts from codes only before its first generation")
        self._start_from(codes)

    def use_code_frequencies(self, frequencies: np.ndarray | None) -> None:
        """Learn what spatial frequency each code coordinate stands for (the generator's
        :meth:`~server.engine.generators.base.Generator.code_frequencies`; None: codes
        without one). Searches that go coarse to fine keep it; the rest ignore it."""
        return None

    def _start_from(self, codes: np.ndarray) -> None:
        raise ConfigError(f"optimizer {self.name} cannot start from images")

    def tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
        """Report scores (higher is better; NaN = no response) for ``codes``."""
        codes = np.asarray(codes, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != self.dim:
            raise ConfigError(f"codes must have shape (n, {self.dim}), got {codes.shape}")
        if scores.shape != (len(codes),):
            raise ConfigError(f"need one score per code ({len(codes)}), got {scores.shape}")
        if np.isinf(scores).any():
            raise ConfigError("scores must be finite or NaN (missing), not infinite")
        self._tell(codes, scores)
        self._pending = None
        self.generation += 1

    @abstractmethod
    def _ask(self) -> np.ndarray: ...

    @abstractmethod
    def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None: ...

    @abstractmethod
    def _state(self) -> State:
        """Internal state beyond the RNG, as arrays and numbers (see :meth:`state_dict`)."""

    @abstractmethod
    def _load_state(self, state: State) -> None:
        """Restore what :meth:`_state` wrote."""

    def state_dict(self) -> State:
        """Everything needed to continue exactly: settings, counters, RNG and internals."""
        state: State = {
            "optimizer": self.name,
            "dim": self.dim,
            "seed": self.seed,
            "generation": self.generation,
            "settings": json.dumps(dataclasses.asdict(self.settings)),
            "rng": json.dumps(self.rng.bit_generator.state),
        }
        if self._pending is not None:
            state["pending"] = self._pending.copy()
        for key, value in self._state().items():
            state[f"_{key}"] = value.copy() if isinstance(value, np.ndarray) else value
        return state

    @classmethod
    def from_state_dict(cls, state: State) -> Optimizer:
        """Rebuild an optimizer saved by :meth:`state_dict` (any registered one)."""
        try:
            opt_cls = OPTIMIZERS.get(str(state["optimizer"]))
            opt = opt_cls(
                int(state["dim"]), int(state["seed"]), **json.loads(str(state["settings"]))
            )
            opt.generation = int(state["generation"])
            opt.rng.bit_generator.state = json.loads(str(state["rng"]))
            pending = state.get("pending")
            opt._pending = None if pending is None else np.array(pending, dtype=np.float64)
            opt._load_state({k[1:]: v for k, v in state.items() if k.startswith("_")})
        except (KeyError, TypeError, ValueError) as exc:
            raise OptimizerStateError(
                f"saved optimizer state is incomplete or invalid: {exc}"
            ) from None
        return opt


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")


def valid_mask(scores: np.ndarray) -> np.ndarray:
    """True where a score was observed (not NaN)."""
    return ~np.isnan(scores)
