"""What the session file hands back to the layers above: plain records, no h5py objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.errors import XDreamError
from protocol.messages import Presentation, Response


class SessionFileError(XDreamError, OSError):
    """A file that cannot be opened as an xdream-rig session file (damaged, or not ours)."""


@dataclass
class StoredRound:
    """What the rig had reported of one generation when the server stopped."""

    presentations: list[Presentation]
    responses: list[Response]
    #: Blocks of the generation sent so far.
    blocks: int


@dataclass
class ResumePoint:
    """Where a session continues: ``done`` complete generations, the presentation ids the
    rig has been answered for (responses of complete generations and late ones), and the
    channel count the responses established (None before the first)."""

    done: int
    seen: set[str]
    n_channels: int | None


@dataclass
class Event:
    time: float
    generation: int
    kind: str
    detail: dict[str, Any]
