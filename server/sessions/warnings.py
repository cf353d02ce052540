"""Operator warnings: which session events need attention, in what words. One model for a
live session (kept as events happen) and a stored one (re-derived from its event log)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from server.storage.records import Event

#: Warnings a session keeps for the dashboard (all events stay in the file).
WARNINGS_KEPT = 100


#: Re-presentation reasons worth a warning (``block_sent`` events).
REPRESENTED = ("timeout", "aborted or unanswered", "presenter lost", "mostly unanswered")
#: How much each warning matters: info (routine trouble the session handles), warning (it
#: costs trials), critical (the session cannot go on by itself).
SEVERITY = {
    "block_sent": "info",
    "presenter_lost": "warning",
    "missing": "warning",
    "late_responses": "info",
    "dropped_frames": "warning",
    "error": "critical",
}


def warning_for(kind: str, detail: dict[str, Any]) -> str | None:
    """The operator-facing text for a session event that needs attention (None: routine)."""
    if kind == "block_sent":
        if not detail.get("delivered", True):
            return "no presenter is connected for this session; the block waits for one"
        if detail.get("reason") in REPRESENTED:
            return f"block {detail.get('block')} re-presents {detail.get('stimuli')} stimuli " \
                f"({detail.get('reason')})"  # fmt: skip
        return None
    if kind == "dropped_frames" and not detail.get("first", True):
        return None  # the block's first report warned; every trial's count is in the file
    return {
        "presenter_lost": f"presenter {detail.get('client')} stopped answering heartbeats",
        "missing": f"{len(detail.get('stimuli', []))} stimuli got no response after the last "
        "re-presentation; they score NaN",
        "late_responses": f"{detail.get('count')} responses arrived after their generation "
        "closed; stored as late, not used",
        "error": f"the session stopped on an error: {detail.get('message')}",
        "dropped_frames": f"the display dropped {detail.get('frames')} frames in "
        f"{detail.get('presentations')} trials of block {detail.get('block')}: those images "
        "stayed on or off longer than asked (check the presenter PC's load and refresh rate; "
        "later drops in this block are in the event log and each trial's in the file)",
    }.get(kind)


class Warnings:
    """The last :data:`WARNINGS_KEPT` warnings, each numbered ``seq`` from 1."""

    def __init__(self) -> None:
        self._kept: deque[dict[str, Any]] = deque(maxlen=WARNINGS_KEPT)
        #: Warnings ever added (the ``seq`` of the newest).
        self.count = 0

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> Warnings:
        """The warnings a stored session showed, from its event log."""
        warnings = cls()
        for event in events:
            warnings.add(event.kind, event.generation, event.detail, event.time)
        return warnings

    def add(
        self, kind: str, generation: int, detail: dict[str, Any], when: float | None = None
    ) -> None:
        """Keep the event if the operator should see it."""
        text = warning_for(kind, detail)
        if text is not None:
            self.count += 1
            self._kept.append(
                {"seq": self.count, "time": time.time() if when is None else when,
                 "generation": generation, "kind": kind, "severity": SEVERITY[kind],
                 "message": text}
            )  # fmt: skip

    def since(self, seq: int) -> list[dict[str, Any]]:
        """The kept warnings newer than ``seq``."""
        return [w for w in self._kept if w["seq"] > seq]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._kept)

    def __len__(self) -> int:
        return len(self._kept)
