"""Bookkeeping of one generation's presentations and spike counts, free of any I/O.

A :class:`GenerationBook` knows which stimuli a generation showed, which presentations and
responses arrived for each, which are still missing, and turns the counts into one score per
evolved stimulus. Duplicates (the same ``presentation_id`` again, e.g. a resent message) are
recognised and ignored; anything naming a stimulus the generation does not have is refused.
It does no I/O, so the server can feed it from ZeroMQ and HTTP alike.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np

from protocol.errors import ChannelMismatch, ConfigError, UnknownStimulus
from protocol.messages import Presentation, Response
from server.engine.objectives import Objective
from server.engine.statistics import channel_means


@dataclass
class StimulusSlot:
    stimulus_id: str
    kind: Literal["evolved", "reference"]
    #: Row of its thread's codes (evolved) or index of the reference image.
    index: int
    #: The evolution thread an evolved image is of (references are every thread's).
    thread: int = 0
    #: Counts as the rig sent them (what the channel means plot).
    responses: list[np.ndarray] = field(default_factory=list)
    #: What the score is made of, one per response: the counts, or with the session's
    #: ``subtract_baseline`` the counts less the baseline (see :func:`net_counts`).
    net: list[np.ndarray] = field(default_factory=list)
    #: Counts from presentations reported as aborted: kept, never scored.
    excluded: list[np.ndarray] = field(default_factory=list)
    #: Presentations that are over: answered with counts, or reported aborted.
    answered: set[str] = field(default_factory=set)


@dataclass
class Ingested:
    accepted: int = 0
    duplicates: int = 0
    #: Of the accepted: counts for aborted presentations, stored but not scored.
    excluded: int = 0


T = TypeVar("T", Presentation, Response)


def _unseen(items: Sequence[T], known: Collection[str]) -> list[T]:
    """``items`` whose ``presentation_id`` is neither in ``known`` nor earlier in ``items``."""
    ids, fresh = set(known), []
    for item in items:
        if item.presentation_id not in ids:
            ids.add(item.presentation_id)
            fresh.append(item)
    return fresh


def net_counts(response: Response, subtract_baseline: bool) -> np.ndarray:
    """The response's evoked counts, less its baseline counts scaled to the evoked window's
    length when ``subtract_baseline`` and the rig sent a baseline: a rate above the
    spontaneous one, in spikes per evoked window (may be negative)."""
    counts = np.asarray(response.counts, dtype=np.float64)
    if not subtract_baseline or response.baseline_counts is None:
        return counts
    start, end = response.evoked_window_ms
    b_start, b_end = response.baseline_window_ms or response.evoked_window_ms
    scale = (end - start) / (b_end - b_start)
    return counts - scale * np.asarray(response.baseline_counts, dtype=np.float64)


class GenerationBook:
    """Presentations and responses of generation ``index``; ``repeats`` wanted per stimulus;
    scored with the baseline subtracted when ``subtract_baseline`` (:func:`net_counts`)."""

    def __init__(
        self,
        index: int,
        slots: Sequence[StimulusSlot],
        repeats: int,
        n_channels: int | None = None,
        subtract_baseline: bool = False,
    ) -> None:
        if repeats < 1:
            raise ConfigError(f"repeats must be at least 1, got {repeats}")
        self.index = index
        self.repeats = repeats
        self.n_channels = n_channels
        self.subtract_baseline = subtract_baseline
        self.slots = {s.stimulus_id: s for s in slots}
        if len(self.slots) != len(slots):
            raise ConfigError("stimulus ids must be unique within a generation")
        self._presentations: dict[str, Presentation] = {}
        self._responded: set[str] = set()

    def _slot(self, stimulus_id: str) -> StimulusSlot:
        try:
            return self.slots[stimulus_id]
        except KeyError:
            raise UnknownStimulus(
                f"generation {self.index} has no stimulus {stimulus_id!r}"
            ) from None

    @property
    def presented(self) -> int:
        """Presentations reported so far (shown, or started and aborted)."""
        return len(self._presentations)

    def record_presented(self, presentations: Sequence[Presentation]) -> Ingested:
        """Log presentations. An aborted one (e.g. broken fixation) leaves its stimulus
        missing, so it is presented again; counts reported for it are kept but not scored."""
        for p in presentations:  # validate all first: a bad message changes nothing
            self._slot(p.stimulus_id)
        result = Ingested()
        for p in presentations:
            if p.presentation_id in self._presentations:
                result.duplicates += 1
                continue
            self._presentations[p.presentation_id] = p
            if p.outcome == "aborted":
                self.slots[p.stimulus_id].answered.add(p.presentation_id)
            result.accepted += 1
        return result

    def new_responses(self, responses: Sequence[Response]) -> list[Response]:
        """Check ``responses`` (raising as :meth:`record_responses` would) and return those
        not yet recorded, without recording anything: the caller stores them first."""
        self._check_responses(responses)
        return _unseen(responses, self._responded)

    def new_presentations(self, presentations: Sequence[Presentation]) -> list[Presentation]:
        """As :meth:`new_responses`, for presentations."""
        for p in presentations:
            self._slot(p.stimulus_id)
        return _unseen(presentations, self._presentations)

    def _check_responses(self, responses: Sequence[Response]) -> int | None:
        """Validate a message's responses; the channel count they establish."""
        n = self.n_channels
        for r in responses:
            self._slot(r.stimulus_id)
            if n is not None and len(r.counts) != n:
                raise ChannelMismatch(
                    f"presentation {r.presentation_id}: {len(r.counts)} channels, "
                    f"the session records {n}"
                )
            n = len(r.counts) if n is None else n
            if r.baseline_counts is not None and len(r.baseline_counts) != n:
                raise ChannelMismatch(
                    f"presentation {r.presentation_id}: {len(r.baseline_counts)} baseline "
                    f"channels for {n} evoked"
                )
            known = self._presentations.get(r.presentation_id)
            if known is not None and known.stimulus_id != r.stimulus_id:
                raise UnknownStimulus(
                    f"presentation {r.presentation_id} showed {known.stimulus_id!r}, "
                    f"not {r.stimulus_id!r}"
                )
        return n

    def record_responses(self, responses: Sequence[Response]) -> Ingested:
        """Add spike counts; all-or-nothing: one bad response rejects the whole message."""
        self.n_channels = self._check_responses(responses)
        result = Ingested()
        for r in responses:
            if r.presentation_id in self._responded:
                result.duplicates += 1
                continue
            self._responded.add(r.presentation_id)
            counts = np.asarray(r.counts, dtype=np.float64)
            slot = self.slots[r.stimulus_id]
            shown = self._presentations.get(r.presentation_id)
            if shown is not None and shown.outcome == "aborted":
                slot.excluded.append(counts)
                result.excluded += 1
            else:
                slot.responses.append(counts)
                slot.net.append(net_counts(r, self.subtract_baseline))
            slot.answered.add(r.presentation_id)
            result.accepted += 1
        return result

    def missing(self) -> list[str]:
        """Stimuli with fewer scored responses than wanted, in the generation's order."""
        return [s.stimulus_id for s in self.slots.values() if len(s.responses) < self.repeats]

    @property
    def complete(self) -> bool:
        return not self.missing()

    def _of(self, kind: str, thread: int | None) -> list[StimulusSlot]:
        """The stimuli of ``kind`` (and of ``thread``, unless None)."""
        return [
            s for s in self.slots.values()
            if s.kind == kind and (thread is None or s.thread == thread)
        ]  # fmt: skip

    def channel_means(self, kind: str, thread: int | None = None) -> np.ndarray | None:
        """Mean count per recorded channel of the stimuli of ``kind`` (of ``thread``) (see
        :func:`~server.engine.statistics.channel_means`); None if none was answered."""
        slots = [s for s in self._of(kind, thread) if s.responses]
        if not slots:
            return None
        ids = [s.stimulus_id for s in slots for _ in s.responses]
        return channel_means(ids, np.stack([r for s in slots for r in s.responses]))

    def scores(self, kind: str, objective: Objective, thread: int | None = None) -> np.ndarray:
        """``objective``'s score of each stimulus of ``kind`` (of ``thread``; of its net
        counts averaged over its presentations), ordered by index; NaN if unanswered."""
        slots = sorted(self._of(kind, thread), key=lambda s: s.index)
        out = np.full(len(slots), np.nan)
        answered = [i for i, slot in enumerate(slots) if slot.net]
        if answered:
            means = np.stack([np.mean(slots[i].net, axis=0) for i in answered])
            out[answered] = objective.score(means)
        return out
