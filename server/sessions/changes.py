"""Change notification: sessions bump a :class:`Changes` counter (on the event loop)
whenever something an operator sees changes, and the dashboard's live stream waits on it
instead of polling."""

from __future__ import annotations

import asyncio
import contextlib


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
