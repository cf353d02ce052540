"""The one place where messages become ZeroMQ frames and back.

A message is a multipart ZeroMQ message: frame 0 is a msgpack map (the header, with the
typed content inside), frames 1..n are raw array bytes (images), described by
``header["buffers"]`` as dtype and shape. Raw frames are sent without copying and decoded
as read-only numpy views. Nothing is ever unpickled: msgpack carries only plain data and
raw frames must be one of a few fixed dtypes. PROTOCOL.md documents the same at byte level.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr, ValidationError

# ProtocolError and its kinds are re-exported: rig code written against 0.1 imports them here.
from protocol.errors import (
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    UnknownMessageType,
    UnsupportedVersion,
)
from protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    TYPE_NAMES,
    Content,
    Generation,
)

#: Largest header (frame 0) a client accepts, in bytes: a generation of 4096 stimuli fits.
MAX_HEADER_BYTES = 1 << 20
#: Largest header the server accepts, in bytes. Decoding holds the server's one event loop
#: (a few ms at this size, docs/RELIABILITY.md), so rigs send many counts in several messages.
MAX_SERVER_HEADER_BYTES = 64 << 10
#: Largest raw frame accepted, in bytes (a 4096 x 4096 RGB image is 48 MiB).
MAX_BUFFER_BYTES = 64 << 20
#: Most raw frames in one message.
MAX_BUFFERS = 4096
#: dtypes a raw frame may have.
BUFFER_DTYPES = ("uint8",)


@dataclass(frozen=True, eq=False)
class Message:
    """One logical message: typed content, routing fields and raw buffers."""

    content: Content
    session: str | None = None
    buffers: tuple[np.ndarray, ...] = ()
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent_at: float = field(default_factory=time.time)
    reply_to: str | None = None

    @property
    def type(self) -> str:
        return TYPE_NAMES[type(self.content)]


class _BufferSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    dtype: str
    shape: list[int]


class _Header(BaseModel):
    """The header's fields past ``v`` and ``type`` (checked first, for their own codes):
    ``id`` is required, the others optional (PROTOCOL.md, section 3). Types are strict: no
    booleans as numbers, strings as numbers or bytes as strings."""

    model_config = ConfigDict(extra="ignore")
    id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    session: Annotated[StrictStr, Field(max_length=128)] | None = None
    sent_at: Annotated[float, Strict(), Field(allow_inf_nan=False)] | None = None
    reply_to: Annotated[StrictStr, Field(max_length=128)] | None = None
    content: Annotated[dict[str, Any], Strict()] = Field(default_factory=dict)
    buffers: Annotated[list[_BufferSpec], Strict()] = Field(default_factory=list)


def encode(message: Message) -> list[bytes | memoryview]:
    """Frames for ``socket.send_multipart(frames, copy=False)``; buffers are not copied."""
    arrays = [np.ascontiguousarray(b) for b in message.buffers]
    for a in arrays:
        if a.dtype.name not in BUFFER_DTYPES:
            raise MalformedMessage(f"buffer dtype {a.dtype.name} not in {BUFFER_DTYPES}")
    header = {
        "v": PROTOCOL_VERSION,
        "type": message.type,
        "id": message.id,
        "session": message.session,
        "sent_at": message.sent_at,
        "reply_to": message.reply_to,
        "content": message.content.model_dump(mode="json"),
        "buffers": [{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays],
    }
    return [msgpack.packb(header, use_bin_type=True), *(a.data.cast("B") for a in arrays)]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "message"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def decode(
    frames: Sequence[bytes | memoryview | Any], max_header_bytes: int = MAX_HEADER_BYTES
) -> Message:
    """Validate and decode frames (without the ROUTER identity) into a :class:`Message`
    whose header is at most ``max_header_bytes``.

    Raises a :class:`ProtocolError` subclass naming the problem, carrying the message's
    ``id`` and ``session`` where they could be read; never executes code.
    """
    raw = [memoryview(f.buffer if hasattr(f, "buffer") else f) for f in frames]
    if not raw:
        raise MalformedMessage("empty message")
    if raw[0].nbytes > max_header_bytes:
        raise MessageTooLarge(f"header of {raw[0].nbytes} bytes; at most {max_header_bytes}")
    try:
        obj = msgpack.unpackb(raw[0], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for bad input
        raise MalformedMessage(f"header is not msgpack: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise MalformedMessage("header must be a msgpack map")
    try:
        return _decode_header(obj, raw)
    except ProtocolError as exc:
        exc.reply_to, exc.session = _readable(obj.get("id")), _readable(obj.get("session"))
        raise


def _readable(value: Any) -> str | None:
    """``value`` if it is a valid id (a string of 1-128 characters), else None."""
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def _decode_header(obj: dict[str, Any], raw: list[memoryview]) -> Message:
    version = obj.get("v")
    if type(version) is not int:  # missing, or not an integer (a boolean is not one)
        got = type(version).__name__ if version is not None else "none"
        raise MalformedMessage(f"header v: an integer protocol version is required, got {got}")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"protocol version {version} not supported; this side speaks {PROTOCOL_VERSION}"
        )
    msg_type = obj.get("type")
    if not isinstance(msg_type, str):
        got = type(msg_type).__name__ if msg_type is not None else "none"
        raise MalformedMessage(f"header type: a string is required, got {got}")
    if msg_type not in MESSAGE_TYPES:
        raise UnknownMessageType(f"unknown message type {msg_type[:64]!r}")
    try:
        header = _Header.model_validate(obj)
    except ValidationError as exc:
        raise MalformedMessage(f"header {_first_error(exc)}") from None
    if len(raw) - 1 > MAX_BUFFERS:
        raise MessageTooLarge(f"{len(raw) - 1} raw frames; at most {MAX_BUFFERS}")
    buffers = _buffers(header.buffers, raw[1:])
    try:
        content = MESSAGE_TYPES[msg_type].model_validate(header.content)
    except ValidationError as exc:
        raise MalformedMessage(f"{msg_type}: {_first_error(exc)}") from None
    if isinstance(content, Generation):
        _check_images(content, buffers)
    sent_at = time.time() if header.sent_at is None else header.sent_at
    return Message(content, header.session, buffers, header.id, sent_at, header.reply_to)


def _buffers(specs: list[_BufferSpec], frames: list[memoryview]) -> tuple[np.ndarray, ...]:
    if len(specs) != len(frames):
        raise MalformedMessage(f"header describes {len(specs)} buffers, {len(frames)} arrived")
    out = []
    for i, (spec, frame) in enumerate(zip(specs, frames, strict=True)):
        if spec.dtype not in BUFFER_DTYPES:
            raise MalformedMessage(f"buffer {i}: dtype {spec.dtype!r} not in {BUFFER_DTYPES}")
        if frame.nbytes > MAX_BUFFER_BYTES:
            raise MessageTooLarge(f"buffer {i}: {frame.nbytes} bytes; at most {MAX_BUFFER_BYTES}")
        if any(d < 0 for d in spec.shape) or len(spec.shape) > 8:
            raise MalformedMessage(f"buffer {i}: invalid shape {spec.shape}")
        dtype = np.dtype(spec.dtype)
        if math.prod(spec.shape) * dtype.itemsize != frame.nbytes:
            raise MalformedMessage(
                f"buffer {i}: shape {spec.shape} needs "
                f"{math.prod(spec.shape) * dtype.itemsize} bytes, frame has {frame.nbytes}"
            )
        view = np.frombuffer(frame, dtype=dtype).reshape(spec.shape)
        view.setflags(write=False)  # a view on the received frame: never written through
        out.append(view)
    return tuple(out)


def _check_images(content: Generation, buffers: tuple[np.ndarray, ...]) -> None:
    for s in content.stimuli:
        if s.buffer >= len(buffers):
            raise MalformedMessage(f"stimulus {s.stimulus_id}: no buffer {s.buffer}")
        image = buffers[s.buffer]
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise MalformedMessage(
                f"stimulus {s.stimulus_id}: image must be uint8 (height, width, 3 or 4), "
                f"got {image.dtype} {list(image.shape)}"
            )
