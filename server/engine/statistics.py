"""Per-generation statistics of a run: one model for live sessions, stored sessions,
``xdream evolve`` and ``xdream demo`` (the full record is in the session file)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def finite(values: Any) -> Any:
    """``values`` (a float or a list of them) with NaN and infinities as None, for JSON."""
    if isinstance(values, list):
        return [finite(v) for v in values]
    return values if isinstance(values, float) and math.isfinite(values) else None


def channel_means(stimulus_ids: Sequence[str], counts: np.ndarray) -> np.ndarray | None:
    """Mean count per recorded channel, weighing every stimulus alike (as scores do): each
    stimulus's mean over its responses (rows of ``counts``), then the mean over stimuli.
    None without responses."""
    if not len(stimulus_ids):
        return None
    ids = np.asarray(stimulus_ids)
    per_stimulus = [counts[ids == sid].mean(axis=0) for sid in dict.fromkeys(stimulus_ids)]
    return np.mean(per_stimulus, axis=0)


@dataclass
class Scored:
    """One generation as a :class:`History` takes it. Beyond the scores (NaN: missing), a
    session knows which reference image each reference score is, and the mean count per
    recorded channel of the evolved and of the reference images."""

    scores: np.ndarray
    reference_scores: np.ndarray | None = None
    reference_images: Sequence[int] = ()
    channels: np.ndarray | None = None
    reference_channels: np.ndarray | None = None


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
    #: Per generation: the position of its best image (None: none scored).
    best_positions: list[int | None] = field(default_factory=list)
    #: Per generation: mean count per recorded channel, evolved and reference images.
    channel_means: list[list[float] | None] = field(default_factory=list)
    reference_channel_means: list[list[float] | None] = field(default_factory=list)
    #: Per reference image: the sum of its scores and how many generations scored it.
    reference_totals: dict[int, list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, generations: Iterable[Scored]) -> History:
        """The history of these generations."""
        history = cls()
        for generation in generations:
            history.add(generation)
        return history

    def record(self, scores: np.ndarray, reference_scores: np.ndarray | None = None) -> bool:
        """Add one generation's scores (NaN = missing; the references may be absent);
        whether they hold a new best score."""
        return self.add(Scored(scores, reference_scores))

    def add(self, generation: Scored) -> bool:
        """Add one generation; whether it holds a new best score."""
        scores = np.asarray(generation.scores, dtype=np.float64)
        refs = generation.reference_scores
        refs = np.asarray([] if refs is None else refs, dtype=np.float64)
        self.last_scores = scores.tolist()
        valid = scores[~np.isnan(scores)]
        self.maxima.append(float(valid.max()) if valid.size else float("nan"))
        self.means.append(float(valid.mean()) if valid.size else float("nan"))
        self.best_positions.append(int(np.nanargmax(scores)) if valid.size else None)
        scored_refs = refs[~np.isnan(refs)]
        self.reference_means.append(float(scored_refs.mean()) if scored_refs.size else float("nan"))
        for image, score in zip(generation.reference_images, refs.tolist(), strict=False):
            if not math.isnan(score):
                total = self.reference_totals.setdefault(int(image), [0.0, 0])
                total[0] += score
                total[1] += 1
        for kept, means in (
            (self.channel_means, generation.channels),
            (self.reference_channel_means, generation.reference_channels),
        ):
            kept.append(None if means is None else finite([float(m) for m in means]))  # fmt: skip
        improved = bool(valid.size) and not valid.max() <= self.best_score  # NaN: the first
        if improved:
            self.best_score = float(valid.max())
        return improved

    def references(self) -> list[dict[str, Any]]:
        """Each reference image shown: its mean score over the generations that scored it."""
        return [
            {"image": image, "mean": total / count, "showings": int(count)}
            for image, (total, count) in sorted(self.reference_totals.items())
        ]

    def median_latency(self) -> float | None:
        latency = self.loop_latency_s
        return float(np.median(latency)) if latency else None

    def as_json(self, start: int = 0) -> dict[str, Any]:
        """Generations ``start`` onwards as JSON-safe lists (missing: None), with the loop
        latency's last and median values, and the reference images' scores when they may
        have changed (from the start, or with a new generation)."""
        latency = self.loop_latency_s
        references = (
            {"references": self.references()} if start < len(self.maxima) or not start else {}
        )
        return {
            **references,
            "start": start,
            "max": finite(self.maxima[start:]),
            "mean": finite(self.means[start:]),
            "reference_mean": finite(self.reference_means[start:]),
            "last_scores": finite(self.last_scores),
            "best_positions": self.best_positions[start:],
            "channels": self.channel_means[start:],
            "reference_channels": self.reference_channel_means[start:],
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
