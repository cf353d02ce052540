"""The errors that travel on the wire: their class names are the ``code`` of an ``error``
message (ZeroMQ) and of an HTTP error body (PROTOCOL.md, "Error codes").

One root, :class:`XDreamError`, for everything xdream-rig raises on purpose. Each subclass
also inherits the builtin it resembles, so callers that only know Python's exceptions
(``except ValueError``) still catch it, and the command line prints any ``XDreamError`` as
one clear line instead of a traceback. Errors that never leave a process (a bad in-silico
target, a damaged optimizer state, a damaged session file) are defined next to the code
that raises them, as subclasses of the same root.
"""

from __future__ import annotations


class XDreamError(Exception):
    """Root of all deliberate xdream-rig errors."""

    #: The setting (e.g. a session config field) the error is about, where one is to blame:
    #: forms show the message next to that field.
    field: str | None = None

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        if field is not None:
            self.field = field

    @property
    def code(self) -> str:
        """The stable error name on the wire: the class name."""
        return type(self).__name__


# -- the message itself ----------------------------------------------------------------------
class ProtocolError(XDreamError, ValueError):
    """A message that cannot be decoded or taken as it is. ``reply_to`` and ``session``: the
    message's ``id`` and ``session`` where they could be read, so that the error points at
    the message even when the rest of it is wrong (PROTOCOL.md, section 5)."""

    reply_to: str | None = None
    session: str | None = None


class MalformedMessage(ProtocolError):
    """Not decodable, or fields missing, of the wrong type or out of range."""


class UnsupportedVersion(ProtocolError):
    """The header's protocol version is not the one this side speaks."""


class UnknownMessageType(ProtocolError):
    """The header names a message type this side does not know (or does not take)."""


class MessageTooLarge(ProtocolError):
    """A frame, the number of frames, or an HTTP body exceeds the limits."""


class NotRegistered(XDreamError, ValueError):
    """A client sent something other than ``hello`` before being welcomed."""


class WrongRole(XDreamError, ValueError):
    """A client sent a message that its roles (as it said ``hello``) do not cover."""


# -- what the message refers to ----------------------------------------------------------------
class UnknownSession(XDreamError, KeyError):
    """A message or request names a session this server does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownStimulus(XDreamError, ValueError):
    """A presentation or response names a stimulus the generation does not have."""


class LateResponse(XDreamError, ValueError):
    """Counts for a generation that is already complete: stored, not optimised on."""


class ChannelMismatch(XDreamError, ValueError):
    """A response's channel count differs from the session's."""


class SessionStateError(XDreamError, RuntimeError):
    """A control that the session's state does not allow (e.g. resuming a finished session)."""


class SessionLimit(XDreamError, RuntimeError):
    """The server already holds as many live sessions as it was started to (--max-sessions)."""


class NotFound(XDreamError, LookupError):
    """A stored item a request names does not exist (an image, a scored best image)."""


# -- settings ------------------------------------------------------------------------------------
class ConfigError(XDreamError, ValueError):
    """A setting is invalid: unknown name, out-of-range value, inconsistent options."""


class WeightsError(XDreamError, FileNotFoundError):
    """A model weights file is missing, unreadable, or does not match the architecture."""


class InternalError(XDreamError, RuntimeError):
    """The server failed on a message through no fault of the sender (a bug; it is logged)."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message ('' for none): torch's and others' messages run
    to many lines, and an error of ours that quotes one must stay one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def one_line(exc: BaseException) -> str:
    """Any exception as one line, its type and the first line of its message: how a
    failure that is not ours (a modeller's code, torch, Ray) is told inside our errors."""
    return f"{type(exc).__name__}: {first_line(exc)}"
