"""10,000 mutated ZeroMQ messages against a running ``xdream serve``: it stays up, answers
every message it can read the way PROTOCOL.md says, keeps its sessions as they were, and
the rig that was running goes on as if nothing happened.

The mutations start from valid messages of every type (a few aimed at the running session
with stimulus ids it does not have, the rest at no session) and break them at every level:
bytes (flips, cuts, inserts, splices), msgpack values (any field replaced by a value of any
type, including NaN, huge numbers and long strings) and frames (dropped, repeated, added).
A seeded generator makes every run the same run.
"""

from __future__ import annotations

import io
import math
import random
import time
from typing import Any

import h5py
import msgpack
import numpy as np
import pytest
import zmq

from protocol.codec import Message, decode, encode
from protocol.messages import (
    Bye,
    Generation,
    GenerationAck,
    Heartbeat,
    Hello,
    Presentation,
    PresentationParams,
    Presented,
    Response,
    Responses,
    Role,
    Stimulus,
)
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from xdream.testing.servers import Server, brightness_responses, create_session

pytestmark = pytest.mark.slow

MESSAGES = 10_000
#: Codes an error reply may carry for a message the server could not use.
ERROR_CODES = {
    "MalformedMessage", "UnsupportedVersion", "UnknownMessageType", "MessageTooLarge",
    "NotRegistered", "UnknownSession", "UnknownStimulus", "ChannelMismatch", "LateResponse",
    "SessionStateError", "WrongRole",
}  # fmt: skip

ODD_VALUES: list[Any] = [
    None, True, -1, 0, 2**63 - 1, -(2**63), 2**64 - 1, 1e308, -1e308, math.nan, math.inf,
    "", "x" * 5000, "g0-e0", b"\x00\xff", [], [None], {}, {"": 1}, [[[[[]]]]],
]  # fmt: skip


def seeds(session: str) -> list[Message]:
    """Valid messages of every type the server takes, none of which it can act on."""
    image = np.zeros((4, 4, 3), np.uint8)
    stimulus = Stimulus(stimulus_id="g0-e0", buffer=0)
    unknown = [
        Response(presentation_id="fz-1", stimulus_id="g0-e999", counts=[1.0, 2.0]),
        Response(presentation_id="fz-2", stimulus_id="g0-e998", counts=[3.0, 4.0]),
    ]
    shown = [Presentation(presentation_id="fz-3", stimulus_id="g0-e999", onset=1.5, outcome="ok")]
    return [
        Message(Hello(roles=[Role.recorder], name="fuzz", software="fuzz 1")),
        Message(Heartbeat()),
        Message(GenerationAck(generation=7, block=3), session=session),
        Message(Responses(generation=0, responses=unknown), session=session),
        Message(Responses(generation=0, responses=unknown), session="no-such-session"),
        Message(Presented(generation=0, presentations=shown), session=session),
        Message(Presented(generation=0, presentations=shown), session="no-such-session"),
        Message(
            Generation(generation=0, stimuli=[stimulus], params=PresentationParams()),
            session="no-such-session",
            buffers=(image,),
        ),
        Message(Bye(), session=None),
    ]


def mutate_value(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one of its parts (or itself) replaced by an odd value."""
    if isinstance(value, dict) and value and depth < 6 and rng.random() < 0.8:
        key = rng.choice(list(value))
        if rng.random() < 0.1:
            return {k: v for k, v in value.items() if k != key}
        return {**value, key: mutate_value(rng, value[key], depth + 1)}
    if isinstance(value, list) and value and depth < 6 and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return [*value[:i], mutate_value(rng, value[i], depth + 1), *value[i + 1 :]]
    return rng.choice(ODD_VALUES)


def mutate_bytes(rng: random.Random, data: bytes, other: bytes) -> bytes:
    data = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0 and data:  # flip bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # cut
        data = data[: rng.randrange(len(data) + 1)]
    elif kind == 2:  # insert random bytes
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == 3:  # splice with another message
        data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
    else:  # random bytes, sometimes a valid msgpack prefix
        data = bytearray(rng.choice([b"", b"\x80", b"\x81\xa1v", b"\xdf\xff\xff\xff\xff"]))
        data += rng.randbytes(rng.randint(0, 256))
    return bytes(data)


def mutants(session: str, count: int, rng: random.Random):
    """``count`` lists of frames, each a broken version of a valid message."""
    valid = [encode(m) for m in seeds(session)]
    headers = [msgpack.unpackb(f[0]) for f in valid]
    for _ in range(count):
        i = rng.randrange(len(valid))
        frames = [bytes(f) for f in valid[i]]
        level = rng.randrange(3)
        if level == 0:
            frames[0] = mutate_bytes(rng, frames[0], bytes(rng.choice(valid)[0]))
        elif level == 1:
            frames[0] = msgpack.packb(mutate_value(rng, headers[i]), use_bin_type=True)
        else:
            choice = rng.randrange(3)
            if choice == 0 and len(frames) > 1:
                frames.pop(rng.randrange(1, len(frames)))
            elif choice == 1:
                frames.append(rng.randbytes(rng.randint(0, 64)))
            else:
                frames = [frames[0]] * rng.randint(1, 5)
        yield frames


def snapshot(server: Server, session_id: str) -> dict[str, np.ndarray]:
    """Every dataset of the session's file, downloaded through the API."""
    status, payload = server.api("GET", f"/api/sessions/{session_id}/data")
    assert status == 200
    found: dict[str, np.ndarray] = {}

    def keep(name: str, item: h5py.HLObject) -> None:  # visititems stops at a non-None
        if isinstance(item, h5py.Dataset):
            found[name] = item[()]

    with h5py.File(io.BytesIO(payload), "r") as f:
        f.visititems(keep)
    return found


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A server with a session whose generation 0 is out on the rig (presenter "rig"). The
    rig's client is not read from while the test sends: a long heartbeat keeps it from
    counting as gone meanwhile."""
    server = Server(tmp_path_factory.mktemp("fuzz") / "data", options=("--heartbeat", "30"))
    session_id = create_session(
        server, generator="pixel", image_size=16, population=4, generations=3,
        rig="rig", response_timeout_s=600,
    )  # fmt: skip
    connection = Connection(server.zmq, [Role.presenter, Role.recorder], "rig")
    connection.connect(timeout_s=20)
    presenter = Presenter(connection)
    block = presenter.next_block(timeout_s=30)
    # The server logs the presenter's ack on its own time: wait for it, so that the test's
    # "before" already holds it (a loaded machine logged it between before and after).
    deadline = time.monotonic() + 30
    while b"block_acknowledged" not in snapshot(server, session_id).get("events/kind", []):
        assert time.monotonic() < deadline, "the block's acknowledgement was never logged"
        time.sleep(0.05)
    yield server, session_id, connection, presenter, block
    connection.close()
    server.stop()


def test_mutated_messages_leave_the_server_and_its_session_as_they_were(running):
    server, session_id, connection, presenter, block = running
    before_data, before_state = snapshot(server, session_id), server.session(session_id)
    context = zmq.Context.instance()
    fuzzers = []
    for _ in range(4):  # some register (a mutated hello may work), others never do
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.connect(server.zmq)
        fuzzers.append(sock)
    rng = random.Random(20261202)
    replies: list[Message] = []
    for n, frames in enumerate(mutants(session_id, MESSAGES, rng)):
        fuzzers[n % len(fuzzers)].send_multipart(frames)
        if n % 200 == 199:  # keep pace with the server, and read what it said
            assert server.process.poll() is None, f"the server died at message {n}"
            for sock in fuzzers:
                while sock.poll(20 if n % 1000 == 999 else 0):
                    replies.append(decode(sock.recv_multipart()))
    for sock in fuzzers:
        while sock.poll(500):
            replies.append(decode(sock.recv_multipart()))
        sock.close()
    assert server.process.poll() is None, "the server went down"
    status, health = server.api("GET", "/api/health")
    assert status == 200 and health["status"] == "ok"
    errors = [r.content for r in replies if r.type == "error"]
    assert len(errors) > MESSAGES // 2, "most mutants must be refused, with a reply"
    assert {e.code for e in errors} <= ERROR_CODES
    assert {"MalformedMessage", "NotRegistered", "UnknownStimulus"} <= {e.code for e in errors}
    assert all(len(e.message) <= 2000 for e in errors)
    after = snapshot(server, session_id)
    assert after.keys() == before_data.keys()
    for key in before_data:
        np.testing.assert_array_equal(
            before_data[key], after[key], err_msg=f"{key}: {after.get('events/kind')}"
        )
    state = server.session(session_id)
    assert (state["state"], state["generations_done"]) == (
        before_state["state"], before_state["generations_done"]
    )  # fmt: skip
    # and the rig's session goes on: generation 0 answered, generation 1 arrives
    ack = Recorder(connection).send(session_id, 0, brightness_responses(block).responses)
    assert ack.accepted == len(block.stimuli)
    assert presenter.next_block(timeout_s=30).generation == 1
