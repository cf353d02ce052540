"""What the dashboard is pushed: change notification, operator warnings, and the SSE stream.

Sessions bump a :class:`Changes` counter (on the event loop) whenever something an operator
sees changes; :func:`stream` waits on it and sends server-sent events, so the browser is told
instead of polling. Bursts (a rig answering many stimuli a second) are coalesced to at most
:data:`MAX_RATE_HZ` messages a second, and a message goes out at least every :data:`TICK_S`
anyway, so heartbeat ages stay current and a dead connection is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

#: At most this many pushes per second per connection (each costs the browser a redraw).
MAX_RATE_HZ = 4.0
#: A push at least this often, even when nothing changed.
TICK_S = 1.0


class Changes:
    """A version number to wait on; ``parent`` (the manager's) is bumped along with it."""

    def __init__(self, parent: Changes | None = None) -> None:
        self.version = 0
        self.parent = parent
        self._event = asyncio.Event()

    def bump(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()
        if self.parent is not None:
            self.parent.bump()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once the version differs from ``seen``, or after ``timeout`` seconds."""
        if self.version != seen:
            return
        with contextlib.suppress(asyncio.TimeoutError):  # not the builtin before 3.11
            await asyncio.wait_for(self._event.wait(), timeout)


def warning_for(kind: str, detail: dict[str, Any]) -> str | None:
    """The operator-facing text for a session event that needs attention (None: routine)."""
    if kind == "block_sent":
        if not detail.get("delivered", True):
            return "no presenter is connected for this session; the block waits for one"
        if detail.get("reason") in ("timeout", "aborted or unanswered", "presenter lost"):
            return f"block {detail.get('block')} re-presents {detail.get('stimuli')} stimuli " \
                f"({detail.get('reason')})"  # fmt: skip
        return None
    return {
        "presenter_lost": f"presenter {detail.get('client')} stopped answering heartbeats",
        "missing": f"{len(detail.get('stimuli', []))} stimuli got no response after the last "
        "re-presentation; they score NaN",
        "late_responses": f"{detail.get('count')} responses arrived after their generation "
        "closed; stored as late, not used",
        "error": f"the session stopped on an error: {detail.get('message')}",
    }.get(kind)


def finite(values: Any) -> Any:
    """``values`` (a float or a list of them) with NaN and infinities as None, for JSON."""
    if isinstance(values, list):
        return [finite(v) for v in values]
    return values if isinstance(values, float) and math.isfinite(values) else None


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
    carries only new generations and new warnings. Duck-typed over the manager and session
    (``sessions``, ``summary()``, ``history``, ``warnings``, ``config``) to stay import-free."""

    def __init__(
        self, manager: Any, clients: Callable[[], list[dict[str, Any]]], session: Any = None
    ) -> None:
        self.manager = manager
        self.clients = clients
        self.session = session
        self._generations_sent = 0
        self._warnings_sent = 0

    def snapshot(self, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "full": full,
            "time": time.time(),
            "sessions": [s.summary() for s in self.manager.sessions.values()],
            "clients": self.clients(),
        }
        session = self.session
        if session is None:
            return out
        if full:
            self._generations_sent = self._warnings_sent = 0
        history = session.history
        detail = {
            "summary": session.summary(),
            "history": history.as_json(self._generations_sent),
            "warnings": [w for w in session.warnings if w["seq"] > self._warnings_sent],
        }
        if full:
            detail["config"] = session.config.model_dump(mode="json")
        self._generations_sent = len(history.maxima)
        self._warnings_sent = max((w["seq"] for w in session.warnings), default=0)
        out["session"] = detail
        return out
