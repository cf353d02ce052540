"""Per-generation statistics of a run: one model for live sessions, stored sessions,
``xdream evolve`` and ``xdream demo`` (the full record is in the session file)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def finite(values: Any) -> Any:
    """``values`` (a float or a list of them) with NaN and infinities as None, for JSON."""
    if isinstance(values, list):
        return [finite(v) for v in values]
    return values if isinstance(values, float) and math.isfinite(values) else None


@dataclass
class History:
    """The max, mean and reference mean of every generation's scores, the best score, and
    the loop latency; missing scores are NaN and count for nothing."""

    maxima: list[float] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    reference_means: list[float] = field(default_factory=list)
    #: Seconds from the last response of a generation to the next one leaving the server.
    loop_latency_s: list[float] = field(default_factory=list)
    best_score: float = float("nan")
    #: The evolved images' scores in the last complete generation (NaN = missing).
    last_scores: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, generations: Iterable[tuple[np.ndarray, np.ndarray]]) -> History:
        """The history of ``(scores, reference_scores)`` per generation."""
        history = cls()
        for scores, reference_scores in generations:
            history.record(scores, reference_scores)
        return history

    def record(self, scores: np.ndarray, reference_scores: np.ndarray | None = None) -> bool:
        """Add one generation's scores (NaN = missing; the references may be absent);
        whether they hold a new best score."""
        scores = np.asarray(scores, dtype=np.float64)
        refs = np.asarray([] if reference_scores is None else reference_scores, dtype=np.float64)
        self.last_scores = scores.tolist()
        valid = scores[~np.isnan(scores)]
        refs = refs[~np.isnan(refs)]
        self.maxima.append(float(valid.max()) if valid.size else float("nan"))
        self.means.append(float(valid.mean()) if valid.size else float("nan"))
        self.reference_means.append(float(refs.mean()) if refs.size else float("nan"))
        improved = bool(valid.size) and not valid.max() <= self.best_score  # NaN: the first
        if improved:
            self.best_score = float(valid.max())
        return improved

    def median_latency(self) -> float | None:
        latency = self.loop_latency_s
        return float(np.median(latency)) if latency else None

    def as_json(self, start: int = 0) -> dict[str, Any]:
        """Generations ``start`` onwards as JSON-safe lists (missing: None), with the loop
        latency's last and median values."""
        latency = self.loop_latency_s
        return {
            "start": start,
            "max": finite(self.maxima[start:]),
            "mean": finite(self.means[start:]),
            "reference_mean": finite(self.reference_means[start:]),
            "last_scores": finite(self.last_scores),
            "loop_latency_s": {
                "last": latency[-1] if latency else None,
                "median": self.median_latency(),
            },
        }

    def summary(self) -> dict[str, Any]:
        """The closing numbers of a run, as ``--json`` summaries print them (None: none)."""
        first, last = (self.means[0], self.means[-1]) if self.means else (None, None)
        return {
            "best_score": finite(self.best_score),
            "first_generation_mean": finite(first),
            "last_generation_mean": finite(last),
            "last_reference_mean": finite(self.reference_means[-1]) if self.means else None,
            "median_loop_latency_s": self.median_latency(),
        }
