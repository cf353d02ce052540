"""Replies, built in one place: every answer points at its request through ``reply_to``
and stays in the request's session (PROTOCOL.md, sections 3 and 5)."""

from __future__ import annotations

from protocol.codec import Message
from protocol.errors import ProtocolError, XDreamError
from protocol.messages import Content, Error

#: Longest error text sent; the full one stays in the sender's log.
MAX_ERROR_CHARS = 2000


def reply(request: Message, content: Content) -> Message:
    """The message answering ``request`` with ``content``."""
    return Message(content, session=request.session, reply_to=request.id)


def error_reply(error: XDreamError, request: Message | None = None) -> Message:
    """The ``error`` message answering ``request`` (None: a message that could not be
    decoded; the error then points at whatever of its id and session could be read)."""
    content = Error(code=error.code, message=str(error)[:MAX_ERROR_CHARS])
    if request is not None:
        return reply(request, content)
    if isinstance(error, ProtocolError):
        return Message(content, session=error.session, reply_to=error.reply_to)
    return Message(content)
