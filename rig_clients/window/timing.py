"""Frame timing: durations as frame counts at the measured refresh rate, the rate itself,
and frames the display missed.

A display shows a new picture only at a vertical blank, so a stimulus lasts a whole number
of frames: ``on_ms`` becomes the nearest count at the rate measured when the presenter
starts (100 ms at 60 Hz: 6 frames; at 144 Hz: 14, i.e. 97.2 ms). A flip that comes a frame
or more late (the PC was busy) stretches whatever was on screen: each such gap is counted as
dropped frames and reported with the trial.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Sequence

from protocol.errors import ConfigError

#: A gap between flips longer than this many frame periods counts as dropped frames.
DROP_FACTOR = 1.5
#: Measured and expected refresh rates may differ by this fraction.
RATE_TOLERANCE = 0.10
#: Faster than this, flips do not wait for the display (vsync off, or no real display).
NO_VSYNC_HZ = 500.0


def frames_for(ms: float, hz: float, at_least: int = 0) -> int:
    """Whole frames nearest to ``ms`` at ``hz`` (never fewer than ``at_least``)."""
    return max(at_least, round(ms * hz / 1000))


def dropped_frames(flips: Sequence[float], period: float) -> int:
    """Frames missed between consecutive flip times: a gap of ``k`` periods (rounded) where
    one was due hides ``k - 1`` frames."""
    missed = 0
    for before, after in itertools.pairwise(flips):
        gap = after - before
        if gap > DROP_FACTOR * period:
            missed += round(gap / period) - 1
    return missed


def measure_rate(flip: Callable[[], float], frames: int = 120) -> float:
    """The display's refresh rate from the median interval of ``frames`` flips (``flip``
    shows a frame and returns when it is on screen)."""
    times = [flip() for _ in range(frames + 1)]
    return 1.0 / statistics.median(b - a for a, b in itertools.pairwise(times))


def check_rate(measured: float, expected: float | None) -> float:
    """The rate to count frames at: the measured one, if it can be trusted."""
    if measured > NO_VSYNC_HZ:
        raise ConfigError(
            f"flips return at {measured:.0f} Hz: the display does not wait for the vertical "
            "blank (vsync is off in the driver, or there is no real display). Turn vsync on, "
            "or pace frames in software with --pace-hz (tests, virtual displays)"
        )
    if expected is not None and abs(measured - expected) > RATE_TOLERANCE * expected:
        raise ConfigError(
            f"the display refreshes at {measured:.1f} Hz, the monitor profile says "
            f"{expected:g} Hz: set the display mode or correct the profile"
        )
    return measured


class Pacer:
    """Software vsync for displays that have none (Xvfb, a test): each :meth:`wait` returns
    at the next multiple of the period after the previous one, so flips come at ``hz`` on
    average; a late one is late, as a busy real display would be."""

    def __init__(self, hz: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.period = 1.0 / hz
        self._clock = clock
        self._next: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._next is None or now > self._next + self.period:
            self._next = now  # first frame, or too late to catch up: start again from now
        while (left := self._next - self._clock()) > 0:
            time.sleep(min(left, 0.002) if left > 0.002 else 0)
        self._next += self.period
