"""How a session reaches the rig: the ZeroMQ link (server/rig/link.py) implements this, the
tests a double that records what is sent."""

from __future__ import annotations

from typing import Protocol

from protocol.codec import Message


class Transport(Protocol):
    """How a session reaches its presenter, and recorders that follow it."""

    def deliver(self, session_id: str, rig: str | None, message: Message) -> str | None:
        """Send ``message`` to the session's presenter; its client id, or None if none is
        connected (the session then tries again)."""

    def presenters(self) -> list[str]:
        """The names of the presenters connected now (for an operator looking for one)."""

    def recorded_channels(self, rig: str | None) -> int | None:
        """How many channels the recorders of rig ``rig`` (None: of any rig) sent last,
        the fewest if they differ; None if none has sent counts yet."""

    def tell_recorders(self, rig: str | None, message: Message) -> None:
        """Send ``message`` (new presentations) to the recorders of rig ``rig`` (None: of
        any rig) that asked for them; best effort, nothing waits for them."""
