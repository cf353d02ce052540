"""Typed content of every message type; the wire format is in ``protocol.codec``.

Each model validates what arrives at the boundary. Unknown extra fields are ignored so that
a newer peer can add optional fields without breaking an older one (PROTOCOL.md,
"Compatibility"). Units: times in seconds unless the name ends in ``_ms``; ``onset`` is in
the rig's own clock.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    StrictBool,
    StrictStr,
    field_validator,
    model_serializer,
)

#: Bumped on any incompatible change; PROTOCOL.md states the same number (tested).
PROTOCOL_VERSION = 1
#: The minor version: what it added is sent only to clients that say they speak it.
PROTOCOL_MINOR = 2

# Types are strict (PROTOCOL.md, section 3): a number is a number (an integer does for a
# float), never a boolean or a string; a string is never bytes.
Id = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Index = Annotated[int, Strict(), Field(ge=0)]
Count = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
#: Degrees of visual angle from the fixation point.
Degrees = Annotated[float, Strict(), Field(ge=-180, le=180, allow_inf_nan=False)]
#: Milliseconds from stimulus onset.
Millis = Annotated[float, Strict(), Field(ge=-10_000, le=10_000, allow_inf_nan=False)]
#: Milliseconds of a presentation's timing.
Duration = Annotated[float, Strict(), Field(ge=0, le=10_000, allow_inf_nan=False)]


def _ordered(window: tuple[float, float] | None) -> tuple[float, float] | None:
    if window is not None and not window[0] < window[1]:
        raise ValueError(f"a window runs from its start to a later end, got {list(window)}")
    return window


class Content(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Role(str, Enum):
    presenter = "presenter"
    recorder = "recorder"


class Hello(Content):
    """Client -> server, first message and after every reconnect."""

    roles: Annotated[list[Role], Field(min_length=1, max_length=2)]
    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    software: Annotated[StrictStr, Field(max_length=128)] = ""
    #: The ``client_id`` an earlier ``welcome`` gave this client, sent again on every
    #: reconnect: the server then knows it is the same client (not a lost one and a new one).
    client_id: Id | None = None
    #: The protocol version the client speaks, ``"1.<minor>"``: the server sends what a
    #: later minor version added (e.g. ``presented_ack``) only to clients that speak it.
    protocol: Annotated[StrictStr, Field(pattern=r"^1\.[0-9]{1,3}$")] = "1.0"
    #: A recorder that does not present (a separate recording PC) asks for every new
    #: presentation of its rig's sessions, as ``presented`` messages from the server.
    presentations: StrictBool = False

    @field_validator("roles")
    @classmethod
    def _unique(cls, roles: list[Role]) -> list[Role]:
        if len(set(roles)) != len(roles):
            raise ValueError("roles must not repeat")
        return roles


class Welcome(Content):
    """Server -> client, answer to ``hello``."""

    client_id: Id
    heartbeat_s: Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
    server: StrictStr = ""


class Heartbeat(Content):
    """Either direction, about once a second; three missed = peer gone."""


class PresentationParams(Content):
    on_ms: Annotated[Duration, Field(gt=0)] = 100.0
    off_ms: Duration = 150.0
    size_deg: Annotated[float, Strict(), Field(gt=0, le=180, allow_inf_nan=False)] = 3.0
    position_deg: tuple[Degrees, Degrees] = (0.0, 0.0)


class Stimulus(Content):
    stimulus_id: Id
    #: Index of the image among the message's raw buffers.
    buffer: Index
    kind: Literal["evolved", "reference"] = "evolved"
    repeats: Annotated[int, Strict(), Field(ge=1, le=100)] = 1


class Generation(Content):
    """Server -> presenter: the images of one generation. Resent until acknowledged.

    Block 0 holds every stimulus; blocks 1, 2, ... re-present those still lacking responses.
    """

    generation: Index
    block: Index = 0
    stimuli: Annotated[list[Stimulus], Field(min_length=1, max_length=4096)]
    params: PresentationParams = PresentationParams()


class GenerationAck(Content):
    """Presenter -> server: the generation (block) arrived intact."""

    generation: Index
    block: Index = 0


RigTime = Annotated[float, Strict(), Field(allow_inf_nan=False)]
#: A presentation's optional fields of protocol 1.2.
FRAME_TIMING = ("offset", "frames", "dropped_frames")


class Presentation(Content):
    presentation_id: Id
    stimulus_id: Id
    onset: RigTime
    outcome: Literal["ok", "aborted"]
    # Protocol 1.2, optional: what a frame-counting presenter (``xdream present --window``)
    # measured. A server that predates them ignores them.
    #: Rig-clock time of the first frame after the stimulus.
    offset: RigTime | None = None
    #: Stimulus frames shown.
    frames: Annotated[int, Strict(), Field(ge=0, le=1_000_000)] | None = None
    #: Frames the display missed while this trial was on or off (the stimulus or the blank
    #: lasted longer than asked).
    dropped_frames: Annotated[int, Strict(), Field(ge=0, le=1_000_000)] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_timing(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """What a presenter did not measure is not sent: a 1.0 presentation passed on to a
        recorder reads as it came."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k not in FRAME_TIMING or v is not None}


class Presented(Content):
    """Presenter -> server: what was shown (or aborted), with onsets in the rig's clock."""

    generation: Index
    presentations: Annotated[list[Presentation], Field(min_length=1, max_length=100_000)]


class Response(Content):
    presentation_id: Id
    stimulus_id: Id
    #: Spike counts in the evoked window, one per recorded channel.
    counts: Annotated[list[Count], Field(min_length=1, max_length=4096)]
    evoked_window_ms: tuple[Millis, Millis] = (50.0, 200.0)
    baseline_counts: Annotated[list[Count], Field(max_length=4096)] | None = None
    baseline_window_ms: tuple[Millis, Millis] | None = None

    _windows = field_validator("evoked_window_ms", "baseline_window_ms")(_ordered)


class Responses(Content):
    """Recorder -> server: spike counts per presentation. Acknowledged by ``responses_ack``."""

    generation: Index
    responses: Annotated[list[Response], Field(min_length=1, max_length=100_000)]


class ResponsesAck(Content):
    """Server -> recorder: how many of a ``responses`` message's counts were new, and how
    many repeats of counts already taken (counted, not stored again)."""

    accepted: Index
    duplicates: Index


class PresentedAck(ResponsesAck):
    """Server -> presenter (protocol 1.1 clients): the same for a ``presented`` message."""


class Error(Content):
    """Reply to any message that could not be taken; ``code`` is a stable error name."""

    code: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    message: Annotated[StrictStr, Field(max_length=2000)]


class Bye(Content):
    """Either direction: the peer is leaving on purpose (not a lost connection)."""


#: Message type name on the wire -> content model.
MESSAGE_TYPES: dict[str, type[Content]] = {
    "hello": Hello,
    "welcome": Welcome,
    "heartbeat": Heartbeat,
    "generation": Generation,
    "generation_ack": GenerationAck,
    "presented": Presented,
    "responses": Responses,
    "responses_ack": ResponsesAck,
    "presented_ack": PresentedAck,
    "error": Error,
    "bye": Bye,
}
TYPE_NAMES: dict[type[Content], str] = {model: name for name, model in MESSAGE_TYPES.items()}
