"""How far and how fast a session goes, for the operator: time spent running (pauses and
server downtime left out), seconds per generation while running, the time left, and
responses per second now.

Fed by the session as it changes state, completes generations and takes responses; a stored
session's is re-derived from its event log (:meth:`Progress.replay`), so a session resumed
after a restart keeps its elapsed time.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from server.sessions.states import STATE_EVENTS
from server.storage.records import Event

#: Seconds per generation is the median of this many recent generations.
RECENT = 10
#: Responses per second are counted over this many seconds.
RATE_WINDOW_S = 10.0


class Progress:
    """Running time, generation times and the recent response rate of one session."""

    def __init__(self) -> None:
        #: Wall time of the first start (None: never started).
        self.started: float | None = None
        self._run_s = 0.0  # running time before the current stretch
        self._since: float | None = None  # wall time the current running stretch began
        self._gaps: deque[float] = deque(maxlen=RECENT)  # between generations, while running
        self._last: float | None = None  # when the last generation completed, while running
        self._responses: deque[tuple[float, int]] = deque()

    @classmethod
    def replay(cls, events: Iterable[Event], live: bool = True) -> Progress:
        """A session's progress, from its state changes and blocks in the log; ``live``:
        it goes on now (resumed after a restart), else it ran until its last event."""
        progress = cls()
        generation, last, state = -1, None, None
        for event in events:
            if event.kind == "server_restarted" and progress._since is not None:
                # Down since the last event before: not running time. Running again now,
                # if it was running (a pausing one pauses: nothing is on the rig any more).
                progress.state("down", last)
                if state == "running":
                    progress.state("running", event.time)
            elif event.kind in STATE_EVENTS:
                progress.state(event.kind, event.time)
                state = event.kind
            elif event.kind == "block_sent" and event.detail.get("block") == 0:
                if 0 <= generation < event.generation:  # the one before was complete
                    progress.completed(event.time)
                generation = event.generation
            last = event.time
        if not live and progress._since is not None:
            progress.state("down", last)
        return progress

    def state(self, state: str, when: float | None = None) -> None:
        """The session entered ``state``."""
        now = time.time() if when is None else when
        if state in ("running", "pausing"):  # pausing: the rig still works
            self.started = now if self.started is None else self.started
            self._since = now if self._since is None else self._since
        elif self._since is not None:  # running no more: a pause, an end, a restart
            self._run_s += now - self._since
            self._since = self._last = None

    def completed(self, when: float | None = None) -> None:
        """A generation is complete (the time since the one before counts only if the
        session ran all along)."""
        now = time.time() if when is None else when
        if self._last is not None:
            self._gaps.append(now - self._last)
        self._last = now if self._since is not None else None

    def took(self, responses: int, when: float | None = None) -> None:
        """``responses`` were accepted."""
        now = time.time() if when is None else when
        self._responses.append((now, responses))
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._responses and self._responses[0][0] < now - RATE_WINDOW_S:
            self._responses.popleft()

    def running_s(self, now: float) -> float:
        return self._run_s + (now - self._since if self._since is not None else 0.0)

    def as_json(self, done: int, total: int, now: float | None = None) -> dict[str, Any]:
        """Elapsed running time, seconds per generation (median of recent ones), the
        estimated time left (None until known, and while not running), and responses per
        second now."""
        now = time.time() if now is None else now
        self._forget(now)
        per_generation = statistics.median(self._gaps) if self._gaps else None
        running = self._since is not None
        left = per_generation * max(total - done, 0) if per_generation and running else None
        return {
            "started": self.started,
            "running_s": self.running_s(now),
            "s_per_generation": per_generation,
            "eta_s": left,
            "responses_per_s": sum(n for _, n in self._responses) / RATE_WINDOW_S,
        }
