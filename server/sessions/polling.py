"""A presenter over HTTP (a MATLAB or MonkeyLogic rig without ZeroMQ): it asks for the next
block of its rig's sessions and waits (a long poll) until there is one; fetching a block
acknowledges it, as ``generation_ack`` does over ZeroMQ (PROTOCOL.md, section 10).

A block is named by its key, ``<session>/<generation>/<block>``: the presenter says which
one it has (``after``) and gets the next one that is not that one. There is no heartbeat
over HTTP: a presenter that never reports is handled by the session's response timeout.
"""

from __future__ import annotations

import time

from protocol.codec import Message
from protocol.messages import Generation, GenerationAck
from server.sessions.manager import SessionManager
from server.sessions.session import Session

#: Longest a request waits for a block (HTTP clients and proxies time out beyond).
MAX_WAIT_S = 30.0


def block_key(session_id: str, generation: int, block: int) -> str:
    return f"{session_id}/{generation}/{block}"


def _current(
    manager: SessionManager, rig: str, after: str | None
) -> tuple[Session, Message] | None:
    """The first block in flight of a session of rig ``rig`` (or of no rig) other than
    ``after``."""
    for session in manager.sessions.values():
        rnd = session.round
        if session.config.rig not in (None, rig) or rnd is None or rnd.message is None:
            continue
        if rnd.book.complete or block_key(session.id, rnd.index, rnd.block) == after:
            continue
        return session, rnd.message
    return None


async def next_block(
    manager: SessionManager, rig: str, after: str | None, wait_s: float
) -> tuple[Session, Message] | None:
    """The next block for the HTTP presenter of rig ``rig``, acknowledged; None if none
    came within ``wait_s`` (at most MAX_WAIT_S)."""
    deadline = time.monotonic() + min(wait_s, MAX_WAIT_S)
    while True:
        seen = manager.changes.version
        found = _current(manager, rig, after)
        if found is not None:
            session, message = found
            content = message.content
            assert isinstance(content, Generation)  # rounds send no other
            session.on_ack(GenerationAck(generation=content.generation, block=content.block),
                           f"http:{rig}")  # fmt: skip
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await manager.changes.wait(seen, left)
