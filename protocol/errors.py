"""One root exception for everything xdream-rig raises on purpose.

Each subclass also inherits the builtin it resembles, so callers that only know Python's
exceptions (``except ValueError``) still catch it, and the command line can print any
``XDreamError`` as one clear line instead of a traceback. The class name doubles as the
stable error name sent to clients.
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


class ConfigError(XDreamError, ValueError):
    """A setting is invalid: unknown name, out-of-range value, inconsistent options."""


class WeightsError(XDreamError, FileNotFoundError):
    """A model weights file is missing, unreadable, or does not match the architecture."""


class TargetError(XDreamError, ValueError):
    """An in-silico target names a layer, channel or position the network does not have."""


class OptimizerStateError(XDreamError, ValueError):
    """A saved optimizer state does not fit the optimizer it is being restored into."""


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


class NotRegistered(XDreamError, ValueError):
    """A client sent something other than ``hello`` before being welcomed."""
