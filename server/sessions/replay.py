"""What a session shows an operator besides its scores, re-derived from its event log: a
stored session opened read-only and a session resumed after a restart show the same
warnings, alarms, progress and notes as while it ran."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.sessions.alarms import Alarms
from server.sessions.progress import Progress
from server.sessions.states import STATE_EVENTS
from server.sessions.warnings import Warnings
from server.storage.records import Event

#: Longest operator note, in characters.
MAX_NOTE = 2000


def note(time: float, generation: int, text: str) -> dict[str, Any]:
    """An operator's note as the API shows it."""
    return {"time": time, "generation": generation, "text": text}


@dataclass
class Logged:
    warnings: Warnings
    alarms: Alarms
    progress: Progress
    #: The operator's notes, oldest first.
    notes: list[dict[str, Any]]
    #: Why it was last pausing or paused (None: it ran on after that, or never paused).
    pause_reason: str | None

    @classmethod
    def of(cls, events: Sequence[Event], live: bool = True) -> Logged:
        """What ``events`` showed; ``live``: the session goes on now (see
        :meth:`Progress.replay`)."""
        last_state = next((e for e in reversed(events) if e.kind in STATE_EVENTS), None)
        return cls(
            Warnings.from_events(events),
            Alarms.replay(events),
            Progress.replay(events, live),
            [note(e.time, e.generation, str(e.detail.get("text", ""))) for e in events
             if e.kind == "note"],
            None if last_state is None else last_state.detail.get("reason"),
        )  # fmt: skip
