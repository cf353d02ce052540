"""What an evolution maximises: one score per image from its mean counts on the recorded
channels. The optimizer only ever maximises, so an objective that lowers something (a rate,
a distance) scores its negative.

Each objective is a small pydantic model: ``kind`` names it, its fields are its settings
(checked when a session is made, so a form can name the bad one), and :meth:`score` turns
the per-image mean counts ``(images, recorded channels)`` into ``(images,)`` scores, NaN
where an image has no counts. The rig server and ``xdream evolve`` score with the same
objects. Counts are averaged over an image's presentations first, then scored: for the
linear objectives it makes no difference; for a distance or a sparseness, the mean response
is what the objective is about, not each noisy trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from protocol.errors import ChannelMismatch, ConfigError

Channel = Annotated[int, Field(ge=0, le=4095)]
Channels = Annotated[list[Channel], Field(min_length=1, max_length=4096)]
#: A weight or target rate: finite, and small enough that a sum cannot overflow.
Value = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]


def _distinct(channels: Sequence[int], name: str) -> None:
    if len(set(channels)) != len(channels):
        raise ValueError(f"{name} must not repeat a channel")


def _one_per_channel(values: Sequence[float], name: str, channels: Sequence[int]) -> None:
    if len(values) != len(channels):
        raise ValueError(f"{name} has {len(values)} entries for {len(channels)} channels")


class _Objective(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def channels_used(self) -> list[int]:
        """The recorded channels the score reads (the rig must record each)."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is optimised, in an operator's words (the dashboard, ``--json``)."""
        raise NotImplementedError

    def score(self, counts: np.ndarray) -> np.ndarray:
        """One score per row of ``counts`` (images x recorded channels; higher is better)."""
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 2:
            raise ValueError(f"counts must be images x channels, got shape {counts.shape}")
        needed = max(self.channels_used())
        if needed >= counts.shape[1]:
            raise ChannelMismatch(
                f"the objective reads channel {needed} but only {counts.shape[1]} are recorded"
            )
        return self._score(counts)

    def _score(self, counts: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Mean(_Objective):
    """The mean of ``channels`` (with ``weights``: their weighted sum), raised or, with
    ``minimize``, lowered (its negative is the score)."""

    kind: Literal["mean"] = "mean"
    channels: Channels = [0]
    weights: Annotated[list[Value], Field(max_length=4096)] | None = None
    minimize: bool = False

    @model_validator(mode="after")
    def _check(self) -> Mean:
        _distinct(self.channels, "channels")
        if self.weights is not None:
            _one_per_channel(self.weights, "weights", self.channels)
        return self

    def channels_used(self) -> list[int]:
        return list(self.channels)

    def describe(self) -> str:
        how = "weighted sum" if self.weights is not None else "mean"
        goal = "lower" if self.minimize else "raise"
        return f"{goal} the {how} of channel(s) {_listed(self.channels)}"

    def _score(self, counts: np.ndarray) -> np.ndarray:
        picked = counts[:, self.channels]
        value = picked.mean(axis=1) if self.weights is None else picked @ np.array(self.weights)
        return -value if self.minimize else value


class Selectivity(_Objective):
    """Drive channels ``drive`` while holding ``suppress`` down: the mean of the first less
    ``suppress_weight`` times the mean of the second (a difference of rates, defined when
    either is zero, unlike a ratio)."""

    kind: Literal["selectivity"] = "selectivity"
    drive: Channels
    suppress: Channels
    suppress_weight: Annotated[float, Field(ge=0, le=1e3, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _check(self) -> Selectivity:
        _distinct(self.drive, "drive")
        _distinct(self.suppress, "suppress")
        if set(self.drive) & set(self.suppress):
            raise ValueError("a channel cannot be both driven and suppressed")
        return self

    def channels_used(self) -> list[int]:
        return [*self.drive, *self.suppress]

    def describe(self) -> str:
        return f"drive channel(s) {_listed(self.drive)}, hold {_listed(self.suppress)} down"

    def _score(self, counts: np.ndarray) -> np.ndarray:
        driven = counts[:, self.drive].mean(axis=1)
        return driven - self.suppress_weight * counts[:, self.suppress].mean(axis=1)


class TargetPattern(_Objective):
    """Bring the response of ``channels`` to the pattern ``target`` (Bashivan et al. 2019's
    population control): the score is minus the Euclidean distance, so it rises to 0."""

    kind: Literal["target"] = "target"
    channels: Channels
    target: Annotated[list[Value], Field(min_length=1, max_length=4096)]

    @model_validator(mode="after")
    def _check(self) -> TargetPattern:
        _distinct(self.channels, "channels")
        _one_per_channel(self.target, "target", self.channels)
        return self

    def channels_used(self) -> list[int]:
        return list(self.channels)

    def describe(self) -> str:
        return f"bring channel(s) {_listed(self.channels)} to {_listed(self.target)}"

    def _score(self, counts: np.ndarray) -> np.ndarray:
        return -np.linalg.norm(counts[:, self.channels] - np.array(self.target), axis=1)


class Sparseness(_Objective):
    """A response carried by few of ``channels``: the Treves-Rolls population sparseness
    (Vinje & Gallant 2000's normalisation), 0 when all respond alike, 1 when one alone
    does. Negative rates (after a baseline) count as 0; no response at all scores 0."""

    kind: Literal["sparseness"] = "sparseness"
    channels: Annotated[list[Channel], Field(min_length=2, max_length=4096)]

    @model_validator(mode="after")
    def _check(self) -> Sparseness:
        _distinct(self.channels, "channels")
        return self

    def channels_used(self) -> list[int]:
        return list(self.channels)

    def describe(self) -> str:
        return f"sparse response across channel(s) {_listed(self.channels)}"

    def _score(self, counts: np.ndarray) -> np.ndarray:
        rates = np.clip(counts[:, self.channels], 0.0, None)
        n = rates.shape[1]
        mean, mean_square = rates.mean(axis=1), (rates**2).mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            activity = np.where(mean_square > 0, mean**2 / mean_square, 1.0)
        score = (1.0 - activity) / (1.0 - 1.0 / n)
        return np.where(np.isnan(mean), np.nan, score)


Objective = Annotated[Mean | Selectivity | TargetPattern | Sparseness, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[Objective] = TypeAdapter(Objective)
KINDS = ("mean", "selectivity", "target", "sparseness")


def _listed(values: Sequence[float]) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:8])
    return shown + (f" ... ({len(values)})" if len(values) > 8 else "")


def objective_from(data: object) -> Objective:
    """An objective from its JSON form (``{"kind": "selectivity", ...}``); ConfigError
    naming the setting otherwise."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).isdigit())
        at = f" {where}" if where else ""
        raise ConfigError(f"objective{at}: {first['msg']}", field="objective") from None


def parse_objective(text: str) -> Objective:
    """An objective from a command line: ``KIND`` or ``KIND:NAME=VALUE;NAME=VALUE``, lists
    comma-separated, e.g. ``selectivity:drive=0;suppress=1,2`` or
    ``target:channels=0,1,2;target=10,0,5`` or ``mean:channels=3;minimize=true``."""
    kind, _, rest = text.strip().partition(":")
    data: dict[str, object] = {"kind": kind}
    list_fields = {"channels", "weights", "drive", "suppress", "target"}
    for item in filter(None, (part.strip() for part in rest.split(";"))):
        name, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(f"objective setting {item!r} is not NAME=VALUE", field="objective")
        name = name.strip()
        parts = [v.strip() for v in value.split(",") if v.strip()]
        data[name] = parts if name in list_fields else value.strip()
    return objective_from(data)
