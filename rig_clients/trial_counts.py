"""Spike counts per trial in an evoked and a baseline window, from a live spike stream.

Pure bookkeeping, no I/O: times are seconds in one clock (the recorder maps every stream's
timestamps into its own before they come here), windows are milliseconds after onset and
half-open, ``[onset + start, onset + end)``. Counts are floats >= 0, one per channel,
channel ``k`` at index ``k`` (PROTOCOL.md, ``responses``).

Two kinds of spike source:

- :class:`SpikeEvents`: one sample per spike, its timestamp the spike time and its one
  value the channel index (0 ... channels - 1). Such a stream can be silent, so only the
  clock tells when a window is over: a trial is complete once ``now - latency_s`` has passed
  its windows' end, ``latency_s`` being how late the source may deliver a spike (detection,
  the sender's chunking, the network). Spikes that arrive later than that are counted in
  :attr:`SpikeEvents.late`: trials already sent missed them.
- :class:`SpikeBins`: a regular stream, one sample per bin, one count per channel; the
  sample's timestamp is the bin's start and the bin lasts ``1 / rate``. A bin counts in a
  window when its midpoint lies in the window: a bin wholly inside counts, one straddling
  an edge counts when more than half of it is inside (exactly half: it counts at the
  window's start, not at its end). A window whose length is a multiple of the bin width thus
  always takes exactly length / width bins, wherever the onset falls, and the counts are
  exact when the window's edges fall on bin edges. Bins arrive in order, so a trial is
  complete as soon as a bin whose midpoint is at or after its windows' end has arrived.

Markers can be late as well (the presenter pushes one after its flip): the buffer keeps
spikes for ``latency_s`` and whatever a pending trial still needs, and drops the rest. An
onset that arrives after its spikes were dropped is refused (:meth:`TrialCounter.add_trial`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from protocol.errors import ConfigError

T = TypeVar("T")
Window = tuple[float, float]

#: Windows must lie within this many ms of onset (PROTOCOL.md, ``evoked_window_ms``).
WINDOW_LIMIT_MS = 10_000.0
#: How late a spike or a marker may arrive, by default: a few of the chunks that
#: acquisition programs send (tens of ms each) and the network, with room to spare.
LATENCY_S = 0.25


def _check_window(name: str, window: Window) -> None:
    start, end = window
    if not (-WINDOW_LIMIT_MS <= start < end <= WINDOW_LIMIT_MS):
        raise ConfigError(
            f"the {name} window runs from a start to a later end within ±10000 ms, "
            f"got {list(window)}",
            field=f"{name}_ms",
        )


@dataclass(frozen=True)
class Windows:
    """The evoked and baseline windows, ms after onset (defaults: Ponce lab's pipeline)."""

    evoked_ms: Window = (50.0, 200.0)
    baseline_ms: Window = (0.0, 45.0)

    def __post_init__(self) -> None:
        _check_window("evoked", self.evoked_ms)
        _check_window("baseline", self.baseline_ms)

    @property
    def first_s(self) -> float:
        """Seconds from onset to the earliest spike any window needs."""
        return min(self.evoked_ms[0], self.baseline_ms[0]) / 1000.0

    @property
    def last_s(self) -> float:
        """Seconds from onset to the end of the last window."""
        return max(self.evoked_ms[1], self.baseline_ms[1]) / 1000.0


@dataclass
class _Chunk:
    times: np.ndarray
    values: np.ndarray  # per spike its channel (events), per bin its counts (bins)
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self) -> None:
        self.low, self.high = float(self.times.min()), float(self.times.max())


class SpikeBuffer(ABC):
    """Timed values kept in chunks as they arrived; counted by window, dropped by age."""

    #: What :meth:`add` refuses, for the operator's warning.
    rejects = ""
    #: Spikes that arrived after the time they belong to was taken as complete (bins never
    #: do: the bins that arrive are what proves the stream's progress).
    late = 0

    def __init__(self, channels: int) -> None:
        if channels < 1:
            raise ConfigError(f"need at least one channel, got {channels}", field="channels")
        self.channels = channels
        self._chunks: deque[_Chunk] = deque()

    def __len__(self) -> int:
        return sum(len(chunk.times) for chunk in self._chunks)

    def _keep(self, times: np.ndarray, values: np.ndarray) -> None:
        if len(times):
            self._chunks.append(_Chunk(times, values))

    def count(self, start: float, end: float) -> np.ndarray:
        """Counts per channel of what lies in ``[start, end)``."""
        total = np.zeros(self.channels)
        for chunk in self._chunks:
            if chunk.high < start or chunk.low >= end:
                continue
            inside = (chunk.times >= start) & (chunk.times < end)
            total += self._tally(chunk.values[inside])
        return total

    @abstractmethod
    def add(self, times: np.ndarray, samples: np.ndarray) -> int:
        """Take what the stream delivered (``samples``: one row per timestamp); the number
        of samples refused (see :attr:`rejects`)."""

    @abstractmethod
    def horizon(self, now: float) -> float:
        """The time before which everything has arrived, at ``now``."""

    @abstractmethod
    def _tally(self, values: np.ndarray) -> np.ndarray:
        """Counts per channel of these values."""

    def drop_before(self, time: float) -> None:
        """Forget everything before ``time``."""
        kept: deque[_Chunk] = deque()
        for chunk in self._chunks:
            if chunk.low >= time:
                kept.append(chunk)
            elif chunk.high >= time:
                newer = chunk.times >= time
                kept.append(_Chunk(chunk.times[newer], chunk.values[newer]))
        self._chunks = kept


class SpikeEvents(SpikeBuffer):
    """Spike times with their channel index; complete by the clock, ``latency_s`` behind."""

    rejects = "spike events whose value is not a channel index 0 ... channels - 1"

    def __init__(self, channels: int, latency_s: float = LATENCY_S) -> None:
        super().__init__(channels)
        if not latency_s >= 0:
            raise ConfigError(f"the latency margin is >= 0 s, got {latency_s}", field="latency_s")
        self.latency_s = latency_s
        self._horizon = -math.inf

    def add(self, times: np.ndarray, samples: np.ndarray) -> int:
        """Take spikes (``samples``: one value per spike, its channel); the number refused."""
        if not len(times):
            return 0
        channel = np.asarray(samples, dtype=np.float64).reshape(len(times), -1)[:, 0]
        valid = (channel >= 0) & (channel < self.channels) & (channel == np.round(channel))
        times = np.asarray(times, dtype=np.float64)[valid]
        self.late += int(np.count_nonzero(times < self._horizon))
        self._keep(times, channel[valid].astype(np.int64))
        return int(np.count_nonzero(~valid))

    def _tally(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(values, minlength=self.channels).astype(np.float64)

    def horizon(self, now: float) -> float:
        """Every spike before this time has arrived (we assume: ``latency_s`` says so)."""
        self._horizon = max(self._horizon, now - self.latency_s)
        return self._horizon


class SpikeBins(SpikeBuffer):
    """Binned counts at ``rate`` bins per second, counted by bin midpoint."""

    rejects = "bins with negative or non-finite counts"

    def __init__(self, channels: int, rate: float) -> None:
        super().__init__(channels)
        if not (rate > 0 and math.isfinite(rate)):
            raise ConfigError(f"a binned stream has a rate > 0, got {rate}", field="rate")
        self.width_s = 1.0 / rate
        self._horizon = -math.inf

    def add(self, starts: np.ndarray, samples: np.ndarray) -> int:
        """Take bins (``starts``: their timestamps; ``samples``: bins x channels); the
        number refused. Refused bins still tell how far the stream has come."""
        if not len(starts):
            return 0
        counts = np.asarray(samples, dtype=np.float64).reshape(len(starts), self.channels)
        middles = np.asarray(starts, dtype=np.float64) + self.width_s / 2
        self._horizon = max(self._horizon, float(middles.max()))
        valid = np.isfinite(counts).all(axis=1) & (counts >= 0).all(axis=1)
        self._keep(middles[valid], counts[valid])
        return int(np.count_nonzero(~valid))

    def _tally(self, values: np.ndarray) -> np.ndarray:
        return values.sum(axis=0)

    def horizon(self, now: float) -> float:
        """Every bin with a midpoint before this time has arrived (bins come in order)."""
        return self._horizon


@dataclass(frozen=True)
class Counted(Generic[T]):
    """A complete trial: counts per channel in the evoked and the baseline window."""

    trial: T
    onset: float
    evoked: np.ndarray
    baseline: np.ndarray


class TrialCounter(Generic[T]):
    """Trials (an onset and whatever ``T`` identifies them) waiting for their spikes.

    ``latency_s`` is how late a marker may arrive after its onset: spikes are kept at
    least that long for trials not announced yet."""

    def __init__(self, spikes: SpikeBuffer, windows: Windows, latency_s: float = LATENCY_S) -> None:
        self.spikes = spikes
        self.windows = windows
        self.latency_s = latency_s
        self._pending: list[tuple[float, T]] = []
        self._dropped_before = -math.inf

    @property
    def pending(self) -> int:
        """Trials announced and not complete yet."""
        return len(self._pending)

    def add_trial(self, onset: float, trial: T) -> bool:
        """Wait for ``trial``'s spikes; False (and nothing kept) if some of them were
        already dropped: the onset came more than ``latency_s`` late."""
        if onset + self.windows.first_s < self._dropped_before:
            return False
        self._pending.append((onset, trial))
        return True

    def add_spikes(self, times: np.ndarray, samples: np.ndarray) -> int:
        """Spikes or bins for the buffer (see its ``add``); the number refused."""
        return self.spikes.add(times, samples)

    def complete(self, now: float) -> list[Counted[T]]:
        """The trials whose windows the spike stream has passed by ``now``, counted, in
        onset order; then drops the spikes that no trial, pending or yet to come, needs."""
        horizon = self.spikes.horizon(now)
        done = sorted(
            (p for p in self._pending if p[0] + self.windows.last_s <= horizon),
            key=lambda p: p[0],
        )
        self._pending = [p for p in self._pending if p[0] + self.windows.last_s > horizon]
        counted = [
            Counted(trial, onset, self._count(onset, self.windows.evoked_ms),
                    self._count(onset, self.windows.baseline_ms))
            for onset, trial in done
        ]  # fmt: skip
        earliest = min((onset for onset, _ in self._pending), default=now - self.latency_s)
        keep_from = min(earliest, now - self.latency_s) + self.windows.first_s
        if keep_from > self._dropped_before:
            self.spikes.drop_before(keep_from)
            self._dropped_before = keep_from
        return counted

    def _count(self, onset: float, window: Window) -> np.ndarray:
        return self.spikes.count(onset + window[0] / 1000.0, onset + window[1] / 1000.0)
