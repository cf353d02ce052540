"""What the session file hands back to the layers above: plain records, no h5py objects."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocol.errors import XDreamError
from protocol.messages import Presentation, Response
from server.engine.loop import GenerationResult


class SessionFileError(XDreamError, OSError):
    """A file that cannot be opened as an xdream-rig session file (damaged, or not ours)."""


def evolved_marker(thread: int, threads: int) -> str:
    """What every stimulus id of ``thread``'s evolved images holds (of a session of
    ``threads``): ``-e`` in a one-thread session (``g3-e17``), else ``-t<thread>-e``
    (``g3-t1-e17``). PROTOCOL.md, section 7; references are ``g3-r0``."""
    return "-e" if threads == 1 else f"-t{thread}-e"


def evolved_id(generation: int, index: int, thread: int, threads: int) -> str:
    """The stimulus id of image ``index`` of ``thread``'s ``generation``."""
    return f"g{generation}{evolved_marker(thread, threads)}{index}"


_THREAD_ID = re.compile(r"g\d+-t(\d+)-e\d+")


def thread_of(stimulus_id: str) -> int:
    """The thread whose image a stimulus id names (0 for references, and in one-thread
    sessions): the inverse of :func:`evolved_id`'s thread."""
    found = _THREAD_ID.fullmatch(stimulus_id)
    return int(found.group(1)) if found else 0


@dataclass
class ThreadGeneration:
    """A complete generation of one more thread of a session (thread 1, 2, ...): what
    :meth:`SessionFile.write_generation` stores beside thread 0's."""

    result: GenerationResult
    optimizer_state: dict[str, Any]
    #: (reference image, score on this thread's objective) per reference shown.
    reference_scores: Sequence[tuple[int, float]] = ()


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
