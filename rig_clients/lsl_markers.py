"""Stimulus onsets as Lab Streaming Layer markers: the format a presenter emits and
``xdream record --lsl`` reads.

LSL onset markers
-----------------

A presenter announces each stimulus onset on one LSL stream:

- name ``xdream-markers`` (``xdream record --lsl ... --markers NAME`` reads another), type
  ``Markers``, 1 channel, ``cf_string``, nominal rate 0 (irregular), a ``source_id`` of the
  presenter's choosing that stays the same when it restarts (so LSL reconnects inlets);
- one sample per onset: a JSON object, for example
  ``{"event":"onset","session":"a1b2c3d4","generation":3,"presentation_id":"g3-s7-b0-r0","stimulus_id":"g3-s7"}``,
  ``session`` and ``stimulus_id`` as the server sent them in ``generation``,
  ``presentation_id`` the presenter's (unique within the session, PROTOCOL.md section 6),
  ``generation`` a JSON integer; strings of 1 to 128 characters;
- the sample's LSL timestamp is the true onset: the flip time of the stimulus's first
  frame (what the photodiode sees), in the presenter's ``local_clock()``. Push the marker
  with that timestamp as soon as the flip returns: the recorder counts spikes from it and
  takes markers up to its latency margin (``--latency-s``, default 0.25 s) late.

Other ``event`` values (``"offset"``, ...) may share the stream and are ignored by the
recorder, as are extra fields. Anything else on the stream (markers of other programs, not
JSON) is skipped with one warning per kind of problem.

From MATLAB (liblsl-Matlab and Psychtoolbox; ``vbl`` is the time ``Screen('Flip')``
returned, converted to LSL's clock by its age)::

    lib = lsl_loadlib();
    info = lsl_streaminfo(lib, 'xdream-markers', 'Markers', 1, 0, 'cf_string', 'rig-a-screen');
    outlet = lsl_outlet(info);
    % ... after the flip that showed the stimulus:
    t = lsl_local_clock(lib) - (GetSecs() - vbl);
    marker = struct('event', 'onset', 'session', session, 'generation', generation, ...
                    'presentation_id', presentation_id, 'stimulus_id', stimulus_id);
    outlet.push_sample({jsonencode(marker)}, t);

From Python: :class:`MarkerOutlet`. The pure parts of this module (:func:`encode_onset`,
:func:`parse_marker`) need no pylsl; the outlet needs the ``lsl`` extra.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.errors import ConfigError
from protocol.messages import Id, Index

STREAM_NAME = "xdream-markers"
STREAM_TYPE = "Markers"


def require_pylsl() -> ModuleType:
    """The ``pylsl`` module, imported on first use so that the rest of rig_clients (and
    this module's pure parts) run without it."""
    try:
        return importlib.import_module("pylsl")
    except ImportError:
        raise ConfigError("LSL needs pylsl: pip install 'xdream-rig[lsl]'") from None
    except RuntimeError as exc:  # pylsl found no liblsl binary for this platform
        raise ConfigError(f"pylsl could not load liblsl: {exc}") from None


class _OnsetMarker(BaseModel):
    """The JSON of an onset marker, validated with the protocol's own id rules (so that a
    marker that parses always makes a valid ``responses`` entry)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: Literal["onset"] = "onset"
    session: Id
    generation: Index
    presentation_id: Id
    stimulus_id: Id


@dataclass(frozen=True)
class Onset:
    """One stimulus onset: which presentation, and when (``time``: seconds, the recorder's
    LSL clock once the stream's clock offset is applied)."""

    session: str
    generation: int
    presentation_id: str
    stimulus_id: str
    time: float


class BadMarker(ConfigError):
    """A marker that is not an xdream marker. ``problem`` names the fault without the
    marker's text, the same for every marker with that fault, so that a foreign stream's
    markers are reported once, not once per marker."""

    def __init__(self, problem: str, text: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{problem}: {shown!r}")
        self.problem = problem


def encode_onset(session: str, generation: int, presentation_id: str, stimulus_id: str) -> str:
    """The marker text of one onset (its time goes in the LSL timestamp, not here)."""
    marker = _OnsetMarker(
        session=session,
        generation=generation,
        presentation_id=presentation_id,
        stimulus_id=stimulus_id,
    )
    return marker.model_dump_json()


def parse_marker(text: str, timestamp: float) -> Onset | None:
    """The onset that ``text`` (stamped ``timestamp``) announces; None for another xdream
    event (e.g. ``"offset"``). Raises :class:`BadMarker` for text that is not an xdream
    marker, or an onset whose fields are wrong."""
    try:
        obj: Any = json.loads(text)
    except ValueError:
        raise BadMarker("not JSON", text) from None
    if not isinstance(obj, dict):
        raise BadMarker("JSON but not an object", text)
    event = obj.get("event")
    if not isinstance(event, str):
        raise BadMarker('no "event" string', text)
    if event != "onset":
        return None
    try:
        marker = _OnsetMarker.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadMarker(f"onset field {where}: {first['msg']}", text) from None
    return Onset(
        marker.session, marker.generation, marker.presentation_id, marker.stimulus_id, timestamp
    )


class MarkerOutlet:
    """The presenter's marker stream (needs pylsl). Use it as a context manager, or call
    :meth:`close` when done."""

    def __init__(self, name: str = STREAM_NAME, source_id: str = "xdream-window") -> None:
        pylsl = require_pylsl()
        info = pylsl.StreamInfo(
            name, STREAM_TYPE, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id
        )
        self._outlet: Any = pylsl.StreamOutlet(info)

    def onset(
        self,
        session: str,
        generation: int,
        presentation_id: str,
        stimulus_id: str,
        timestamp: float,
    ) -> None:
        """Announce an onset; ``timestamp``: the first frame's flip, in ``pylsl.local_clock()``."""
        self.push(encode_onset(session, generation, presentation_id, stimulus_id), timestamp)

    def push(self, marker: str, timestamp: float) -> None:
        """Send any marker text (another event, e.g. an offset) stamped ``timestamp``."""
        if self._outlet is None:
            raise RuntimeError("the marker outlet is closed")
        self._outlet.push_sample([marker], timestamp)

    def wait_for_consumers(self, timeout_s: float) -> bool:
        """Whether a recorder listens, waiting up to ``timeout_s`` for one: markers pushed
        while none does reach no one."""
        return bool(self._outlet is not None and self._outlet.wait_for_consumers(timeout_s))

    def close(self) -> None:
        """Withdraw the stream (liblsl destroys an outlet with its last reference)."""
        self._outlet = None

    def __enter__(self) -> MarkerOutlet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
