"""A rig client written from PROTOCOL.md alone: a DEALER socket, msgpack headers, raw image
frames. It imports nothing of xdream-rig (tests/conformance/test_own_imports.py checks), so
that what the suite proves is what the text says, not what the code happens to do."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgpack
import numpy as np
import zmq

#: Section 3: the protocol version on the wire.
V = 1


def header(type_: str, content: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A header as section 3 describes it (``fields`` adds or replaces any of its fields)."""
    return {
        "v": V, "type": type_, "id": uuid.uuid4().hex, "session": None,
        "sent_at": time.time(), "reply_to": None, "buffers": [],
        "content": {} if content is None else content,
        **fields,
    }  # fmt: skip


class Peer:
    """One DEALER connection to the server, as a rig client opens it (section 2)."""

    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.client_id: str | None = None
        #: Messages received while waiting for another.
        self.kept: list[tuple[dict[str, Any], list[bytes]]] = []
        self._last_sent = 0.0

    def close(self) -> None:
        self.socket.close(linger=0)

    def send_frames(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)
        self._last_sent = time.monotonic()

    def send(self, type_: str, content: dict[str, Any] | None = None, **fields: Any) -> str:
        """Send one message (one frame: no buffers); its id."""
        message = header(type_, content, **fields)
        self.send_frames([msgpack.packb(message, use_bin_type=True)])
        return message["id"]

    def receive(self, timeout_s: float = 10.0) -> tuple[dict[str, Any], list[bytes]] | None:
        """The next message other than a heartbeat (header, raw frames), heartbeating
        meanwhile as section 6 asks; None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.client_id is not None and time.monotonic() - self._last_sent > 0.5:
                self.send("heartbeat")
            if not self.socket.poll(int(min(left, 0.25) * 1000)):
                continue
            frames = self.socket.recv_multipart()
            message = msgpack.unpackb(frames[0], raw=False)
            if message["type"] != "heartbeat":
                return message, frames[1:]
        return None

    def reply_to(self, message_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The reply whose ``reply_to`` is ``message_id``, whatever comes before it (section
        6, "Order"): other messages are kept for :meth:`next_of`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is None:
                break
            if got[0]["reply_to"] == message_id:
                return got[0]
            self.kept.append(got)
        raise AssertionError(f"no reply to {message_id} in {timeout_s} s")

    def next_of(
        self, type_: str, session: str | None = None, timeout_s: float = 30.0
    ) -> tuple[dict[str, Any], list[bytes]]:
        """The next message of ``type_`` (of ``session``, if given; kept ones first): a
        presenter gets the blocks of every session without a rig name."""

        def wanted(message: dict[str, Any]) -> bool:
            return message["type"] == type_ and session in (None, message["session"])

        for i, (message, frames) in enumerate(self.kept):
            if wanted(message):
                del self.kept[i]
                return message, frames
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            got = self.receive(left)
            if got is not None and wanted(got[0]):
                return got
            if got is not None:
                self.kept.append(got)
        raise AssertionError(f"no {type_} in {timeout_s} s")

    def hello(self, roles: list[str], name: str, **content: Any) -> dict[str, Any]:
        """Register (section 8, ``hello``); the ``welcome`` content."""
        reply = self.reply_to(self.send("hello", {"roles": roles, "name": name, **content}))
        assert reply["type"] == "welcome", reply
        self.client_id = reply["content"]["client_id"]
        return reply["content"]


def images(frames: list[bytes], block: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each stimulus's image, from its raw frame and the header's description (section 4)."""
    out = {}
    for stimulus in block["content"]["stimuli"]:
        spec = block["buffers"][stimulus["buffer"]]
        assert spec["dtype"] == "uint8"
        out[stimulus["stimulus_id"]] = np.frombuffer(
            frames[stimulus["buffer"]], dtype=np.uint8
        ).reshape(spec["shape"])
    return out
