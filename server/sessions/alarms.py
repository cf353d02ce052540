"""Operator alarms: conditions under which a session wastes an animal's time unless someone
acts, each with a severity, a plain-language cause and what to do.

An alarm stands for one condition (its ``key``: a stall, refused responses, a lost rig
client named X, ...). Raising a condition that is already active updates that alarm rather
than adding another; it stays active until the cause is gone (:meth:`Alarms.clear`), and an
operator can acknowledge it meanwhile (the page then stops sounding it). Every change is
also a session event, so a stored session shows the alarms it had (:meth:`Alarms.replay`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from protocol.errors import NotFound
from server.storage.records import Event

Severity = Literal["critical", "warning"]
#: Alarms a session keeps (active ones first; all events stay in the file).
ALARMS_KEPT = 100

#: Per kind: severity, cause and action, formatted with the facts the alarm was raised with.
TEXTS: dict[str, tuple[Severity, str, str]] = {
    "stall": (
        "critical",
        "No trial reported by the rig for {quiet_s:.0f} s while generation {generation} "
        "(block {block}, {stimuli} stimuli) is out; the stall limit is {limit_s:.0f} s.",
        "Check that the presenter and the recorder are running and connected, and the animal "
        "is working. {then}",
    ),
    "nan_generation": (
        "critical",
        "{missing} of {total} images of generation {generation} got no response after "
        "{represented} re-presentation(s).",
        "Check that the recorder is running and sends counts for this session. The "
        "generation is held, not given to the optimizer. {then}",
    ),
    "responses_refused": (
        "critical",
        "The server refused {count} response message(s) from {client}: {reason}",
        "Fix the recorder (e.g. its channel count) or the session's channels: refused "
        "counts are not stored. {then}",
    ),
    "client_lost": (
        "warning",
        "Rig client {name} ({roles}) {why}.",
        "Check the rig PC, its program and its network. This clears when it reconnects.",
    ),
    "no_presenter": (
        "warning",
        "No presenter{named} is connected; generation {generation} waits for one. "
        "Connected presenters: {presenters}.",
        "Start the presenter on the rig PC, or check that its name matches the session's "
        "presenter name.",
    ),
    "error": (
        "critical",
        "The session stopped on an error: {message}",
        "Restart the server to resume the session from its file; report the error.",
    ),
}
#: The ``then`` of a pausing alarm's action: what the session did about it.
PAUSED = "The session pauses after the block on the rig; resume it when the cause is fixed."
NOT_PAUSED = "Auto-pause is off for this session: it goes on."


@dataclass
class Alarm:
    """One condition the operator should act on."""

    id: int
    kind: str
    key: str
    severity: Severity
    cause: str
    action: str
    generation: int
    raised: float
    #: Times the condition was raised while this alarm was active.
    count: int = 1
    acknowledged: float | None = None
    cleared: float | None = None

    @property
    def active(self) -> bool:
        return self.cleared is None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


class Alarms:
    """A session's alarms, by id (numbered from 1 in the order they were raised)."""

    def __init__(self) -> None:
        self._by_id: dict[int, Alarm] = {}
        self._next = 1
        #: Changes with every raise, clear and acknowledgement (what a push compares).
        self.version = 0

    def raise_(
        self, kind: str, key: str, generation: int, when: float | None = None, **facts: Any
    ) -> Alarm:
        """Raise the alarm for condition ``key`` (or update it, if it is active)."""
        severity, cause, action = TEXTS[kind]
        current = self.active_for(key)
        text = cause.format(generation=generation, **facts)
        todo = action.format(**facts)
        self.version += 1
        if current is not None:
            current.count += 1
            current.cause, current.action, current.generation = text, todo, generation
            return current
        alarm = Alarm(
            self._next, kind, key, severity, text, todo, generation,
            time.time() if when is None else when,
        )  # fmt: skip
        self._next += 1
        self._by_id[alarm.id] = alarm
        while len(self._by_id) > ALARMS_KEPT:  # forget the oldest cleared one
            oldest = next((a for a in self._by_id.values() if not a.active), None)
            if oldest is None:
                break
            del self._by_id[oldest.id]
        return alarm

    def active_for(self, key: str) -> Alarm | None:
        return next((a for a in self._by_id.values() if a.active and a.key == key), None)

    def clear(self, *keys: str, every: bool = False, when: float | None = None) -> list[Alarm]:
        """Clear the active alarms of ``keys`` (``every``: all of them); those cleared."""
        cleared = [a for a in self.active() if every or a.key in keys]
        for alarm in cleared:
            alarm.cleared = time.time() if when is None else when
        self.version += bool(cleared)
        return cleared

    def acknowledge(self, alarm_id: int, when: float | None = None) -> Alarm:
        """Mark alarm ``alarm_id`` as seen (it stays active until its cause is gone)."""
        alarm = self._by_id.get(alarm_id)
        if alarm is None:
            raise NotFound(f"no alarm {alarm_id} in this session")
        if alarm.acknowledged is None:
            alarm.acknowledged = time.time() if when is None else when
            self.version += 1
        return alarm

    def active(self) -> list[Alarm]:
        return [a for a in self._by_id.values() if a.active]

    def as_json(self, active_only: bool = False) -> list[dict[str, Any]]:
        """The alarms, active ones first, each newest first."""
        alarms = sorted(self._by_id.values(), key=lambda a: (not a.active, -a.id))
        return [a.as_json() for a in alarms if a.active or not active_only]

    # -- as session events -----------------------------------------------------------------
    @staticmethod
    def event(alarm: Alarm, change: str) -> tuple[str, dict[str, Any]]:
        """The session event that records ``change`` (raised, cleared, acknowledged)."""
        if change == "raised":
            fields = asdict(alarm)
            del fields["acknowledged"], fields["cleared"]
            return "alarm", {"alarm": fields}
        return f"alarm_{change}", {"id": alarm.id}

    @classmethod
    def replay(cls, events: Iterable[Event]) -> Alarms:
        """The alarms a stored session had, from its event log."""
        alarms = cls()
        for event in events:
            detail = event.detail
            if event.kind == "alarm":  # raised, or raised again while active
                alarm = Alarm(**detail["alarm"])
                known = alarms._by_id.get(alarm.id)
                if known is not None:
                    alarm.acknowledged = known.acknowledged
                alarms._by_id[alarm.id] = alarm
                alarms._next = max(alarms._next, alarm.id + 1)
            elif event.kind in ("alarm_cleared", "alarm_acknowledged"):
                known = alarms._by_id.get(int(detail.get("id", -1)))
                if known is not None and event.kind == "alarm_cleared":
                    known.cleared = event.time
                elif known is not None:
                    known.acknowledged = event.time
        return alarms
