"""What the dashboard is pushed: the server-sent-event stream.

Sessions bump a :class:`~server.sessions.changes.Changes` counter (on the event loop)
whenever something an operator sees changes; :func:`stream` waits on it and sends
server-sent events, so the browser is told instead of polling. Bursts (a rig answering many
stimuli a second) are coalesced to at most :data:`MAX_RATE_HZ` messages a second, and a
message goes out at least every :data:`TICK_S` anyway, so heartbeat ages stay current and
a dead connection is noticed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from server.sessions.changes import Changes

#: At most this many pushes per second per connection (each costs the browser a redraw).
MAX_RATE_HZ = 4.0
#: A push at least this often, even when nothing changed.
TICK_S = 1.0


def sse(event: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def stream(
    changes: Changes, snapshot: Callable[[bool], dict[str, Any]]
) -> AsyncIterator[str]:
    """Server-sent ``update`` events: ``snapshot(True)`` first (everything), then
    ``snapshot(False)`` (what changed since) on every change, coalesced, and every tick."""
    yield "retry: 2000\n\n"  # how soon the browser reconnects after losing the stream
    yield sse("update", snapshot(True))
    seen = changes.version
    while True:
        sent_at = time.monotonic()
        await changes.wait(seen, TICK_S)
        await asyncio.sleep(max(0.0, sent_at + 1 / MAX_RATE_HZ - time.monotonic()))
        seen = changes.version  # what the snapshot below includes
        yield sse("update", snapshot(False))


class View:
    """What one dashboard connection is sent, remembering what it already has, so each push
    carries only new generations, warnings and notes, and the alarms when they changed.
    Duck-typed over the manager and session (``sessions``, ``watched()``, ``summary()``,
    ``history``, ``warnings``, ``alarms``, ``notes``, ``config``) to stay import-free. The
    watched session is looked up on every push, by id: once it ends, the manager lets go
    of it and the view shows what is left of it."""

    def __init__(
        self,
        manager: Any,
        clients: Callable[[], list[dict[str, Any]]],
        session_id: str | None = None,
    ) -> None:
        self.manager = manager
        self.clients = clients
        self.session_id = session_id
        self._generations_sent = 0
        self._warnings_sent = 0
        self._notes_sent = 0
        self._alarms_sent = -1

    def snapshot(self, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "full": full,
            "time": time.time(),
            "sessions": [s.summary() for s in self.manager.sessions.values()],
            "clients": self.clients(),
        }
        if self.session_id is None:
            return out
        session = self.manager.watched(self.session_id)
        if full:
            self._generations_sent = self._warnings_sent = self._notes_sent = 0
        history = session.history
        detail = {
            "summary": session.summary(),
            "history": history.as_json(self._generations_sent),
            **(
                {"thread_histories": [h.as_json(self._generations_sent) for h in session.histories]}
                if len(session.histories) > 1
                else {}
            ),
            "warnings": session.warnings.since(self._warnings_sent),
            "notes": session.notes[self._notes_sent :],
        }
        if full or session.alarms.version != self._alarms_sent:  # sent whole, when changed
            detail["alarm_log"] = session.alarms.as_json()
        if full:
            detail["config"] = session.config.model_dump(mode="json")
        self._generations_sent = len(history.maxima)
        self._warnings_sent = session.warnings.count
        self._notes_sent = len(session.notes)
        self._alarms_sent = session.alarms.version
        out["session"] = detail
        return out
