"""Bad input over ZeroMQ and HTTP against a running ``xdream serve``.

Every case must get a clear error naming the problem, leave the server up, and leave the
stored data unchanged. One server and one session (generation 0 answered, generation 1 in
flight) serve every case in this module.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import select
import socket
import uuid
from collections.abc import Iterable

import h5py
import msgpack
import numpy as np
import pytest
import zmq

from protocol.codec import Message, decode, encode
from protocol.messages import (
    PROTOCOL_VERSION,
    Bye,
    Error,
    GenerationAck,
    Heartbeat,
    Hello,
    Presentation,
    Presented,
    Response,
    Responses,
    Role,
    Welcome,
)
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from server.http.limits import MAX_BODY_BYTES
from xdream.testing.servers import Server, brightness_responses, create_session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """A server, a session with generation 0 complete, and the rig that answered it. The
    bad counts these tests send would auto-pause it (tests/server/sessions/test_alarms.py):
    here it must go on, to show that they changed nothing."""
    server = Server(tmp_path_factory.mktemp("bad") / "data")
    session_id = create_session(
        server, generator="pixel", image_size=32, population=4, generations=5,
        response_timeout_s=600, auto_pause=False,
    )  # fmt: skip
    connection = Connection(server.zmq, [Role.presenter, Role.recorder], "rig")
    connection.connect(timeout_s=20)
    presenter, recorder = Presenter(connection), Recorder(connection)
    gen0 = presenter.next_block(timeout_s=30)
    answered = brightness_responses(gen0)
    assert recorder.send(session_id, 0, answered.responses).accepted == 4
    gen1 = presenter.next_block(timeout_s=30)
    assert gen1.generation == 1
    yield server, session_id, answered, gen1
    connection.close()
    server.stop()


def stored(server: Server, session_id: str) -> dict[str, np.ndarray]:
    """The session file's responses and generations, downloaded through the API."""
    status, payload = server.api("GET", f"/api/sessions/{session_id}/data")
    assert status == 200
    with h5py.File(io.BytesIO(payload), "r") as f:
        return {
            "responses": f["responses/counts"][()],
            "ids": f["responses/presentation_id"].asstr()[()],
            "scores": f["generations/scores"][()],
        }


@pytest.fixture
def unchanged(loop):
    """Asserts after the test that stored data is what it was before."""
    server, session_id, *_ = loop
    before = stored(server, session_id)
    yield
    after = stored(server, session_id)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert server.process.poll() is None, "the server went down"


@pytest.fixture
def dealer(loop):
    """A raw DEALER socket to send anything at all."""
    server = loop[0]
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.zmq)
    yield sock
    sock.close()


def exchange(sock: zmq.Socket, frames: list, timeout_ms: int = 10_000) -> Message:
    sock.send_multipart(frames, copy=False)
    while True:
        assert sock.poll(timeout_ms), "no reply"
        reply = decode(sock.recv_multipart())
        if not isinstance(reply.content, Heartbeat):
            return reply


def header(**changes) -> dict:
    base = {
        "v": PROTOCOL_VERSION, "type": "heartbeat", "id": uuid.uuid4().hex, "session": None,
        "sent_at": 1.0, "reply_to": None, "content": {}, "buffers": [],
    }  # fmt: skip
    return {**base, **changes}


def register(sock: zmq.Socket) -> None:
    reply = exchange(sock, encode(Message(Hello(roles=[Role.recorder], name="raw"))))
    assert isinstance(reply.content, Welcome)


def responses_frames(session: str | None, content: Responses) -> list:
    return encode(Message(content, session=session))


ZMQ_GARBAGE = {
    "not msgpack": ([b"\xc1\xc1"], "MalformedMessage", "not msgpack"),
    "not a map": ([msgpack.packb([1, 2])], "MalformedMessage", "map"),
    "wrong version": ([msgpack.packb(header(v=99))], "UnsupportedVersion", "99"),
    "unknown type": ([msgpack.packb(header(type="teleport"))], "UnknownMessageType", "teleport"),
    "header too large": (
        [msgpack.packb(header(content={"pad": "x" * (2 << 20)}))],
        "MessageTooLarge",
        "header",
    ),
    "too many frames": ([msgpack.packb(header()), *[b""] * 5000], "MessageTooLarge", "frames"),
    "field out of range": (
        [msgpack.packb(header(type="responses", content={"generation": -1, "responses": []}))],
        "MalformedMessage",
        "generation",
    ),
    "buffers not as described": (
        [msgpack.packb(header(buffers=[{"dtype": "uint8", "shape": [10]}])), b"123"],
        "MalformedMessage",
        "bytes",
    ),
}


@pytest.mark.parametrize("case", ZMQ_GARBAGE, ids=str)
def test_zmq_garbage_gets_a_named_error(loop, dealer, unchanged, case):
    frames, code, words = ZMQ_GARBAGE[case]
    reply = exchange(dealer, frames)
    assert reply.content.code == code and words in reply.content.message


def test_zmq_oversized_frame_is_refused(loop, dealer, unchanged):
    image = np.zeros((65 << 20,), dtype=np.uint8)
    frames = [msgpack.packb(header(buffers=[{"dtype": "uint8", "shape": [65 << 20]}])), image]
    reply = exchange(dealer, frames, timeout_ms=30_000)
    assert reply.content.code == "MessageTooLarge"


def test_zmq_message_before_hello_is_not_registered(loop, dealer, unchanged):
    reply = exchange(dealer, encode(Message(Heartbeat())))
    assert reply.content.code == "NotRegistered"


def test_zmq_bye_before_hello_is_not_registered_and_an_error_is_not_answered(loop, dealer):
    reply = exchange(dealer, encode(Message(Bye())))
    assert reply.content.code == "NotRegistered"
    dealer.send_multipart(encode(Message(Error(code="X", message="a client's error"))))
    assert not dealer.poll(1500) or isinstance(decode(dealer.recv_multipart()).content, Heartbeat)


def test_zmq_errors_point_at_the_message_whenever_its_id_can_be_read(loop, dealer, unchanged):
    for broken in (header(v=True, id="m-1", session="s-1"), header(type=7, id="m-1",
                   session="s-1"), header(type="responses", id="m-1", session="s-1",
                   content={"generation": "0"})):  # fmt: skip
        reply = exchange(dealer, [msgpack.packb(broken)])
        assert reply.content.code == "MalformedMessage", reply.content
        assert (reply.reply_to, reply.session) == ("m-1", "s-1")


def test_zmq_messages_outside_a_clients_roles_are_refused(loop, dealer, unchanged):
    _server, session_id, _answered, gen1 = loop
    register(dealer)  # a recorder
    for content in (GenerationAck(generation=1), Presented(generation=1, presentations=[
        Presentation(presentation_id="x", stimulus_id="g1-e0", onset=1.0, outcome="ok")
    ])):  # fmt: skip
        reply = exchange(dealer, encode(Message(content, session=session_id)))
        assert reply.content.code == "WrongRole" and "presenter" in reply.content.message
    presenter = zmq.Context.instance().socket(zmq.DEALER)
    presenter.setsockopt(zmq.LINGER, 0)
    presenter.connect(loop[0].zmq)
    try:
        hello = Message(Hello(roles=[Role.presenter], name="screen-only"))
        assert isinstance(exchange(presenter, encode(hello)).content, Welcome)
        reply = exchange(presenter, responses_frames(session_id, brightness_responses(gen1)))
        assert reply.content.code == "WrongRole" and "recorder" in reply.content.message
    finally:
        presenter.close()


def test_zmq_unknown_session_stimulus_late_duplicate(loop, dealer, unchanged):
    _server, session_id, answered, gen1 = loop
    register(dealer)
    good = brightness_responses(gen1)
    reply = exchange(dealer, responses_frames("nope", good))
    assert reply.content.code == "UnknownSession" and "nope" in reply.content.message
    reply = exchange(dealer, responses_frames(None, good))
    assert reply.content.code == "UnknownSession"
    wrong = Responses(generation=1, responses=[
        Response(presentation_id="z1", stimulus_id="g1-e99", counts=[1.0])
    ])  # fmt: skip
    reply = exchange(dealer, responses_frames(session_id, wrong))
    assert reply.content.code == "UnknownStimulus" and "g1-e99" in reply.content.message
    reply = exchange(dealer, responses_frames(session_id, answered))  # resent generation 0
    assert (reply.content.accepted, reply.content.duplicates) == (0, 4)
    late = Responses(generation=0, responses=[
        Response(presentation_id="late-zmq", stimulus_id="g0-e1", counts=[1.0])
    ])  # fmt: skip
    reply = exchange(dealer, responses_frames(session_id, late))
    assert reply.content.code == "LateResponse" and "not used" in reply.content.message
    two_channels = Responses(generation=1, responses=[
        Response(presentation_id="c2", stimulus_id="g1-e0", counts=[1.0, 2.0])
    ])  # fmt: skip
    reply = exchange(dealer, responses_frames(session_id, two_channels))
    assert reply.content.code == "ChannelMismatch"
    reply = exchange(dealer, encode(Message(Welcome(client_id="x", heartbeat_s=1))))
    assert reply.content.code == "UnknownMessageType"


def post(server: Server, path: str, body: bytes | Iterable[bytes], length: int | None = None):
    """POST ``body`` with a ``Content-Length`` of ``length`` (default: its own), or chunked
    when ``body`` is an iterable of chunks."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if isinstance(body, bytes):
        headers["Content-Length"] = str(length or len(body))
    connection.request("POST", path, body=body, headers=headers, encode_chunked=True)
    reply = connection.getresponse()
    payload = reply.read()
    connection.close()
    return reply.status, payload


def test_http_errors_are_named(loop, unchanged):
    server, session_id, answered, gen1 = loop
    path = f"/api/sessions/{session_id}/responses"
    status, body = server.api("POST", path, raw=b"{not json")
    assert status == 422 and body["code"] == "MalformedMessage"
    status, body = server.api("POST", path, {"generation": "one", "responses": []})
    assert status == 422 and body["code"] == "MalformedMessage" and "generation" in body["message"]
    good = brightness_responses(gen1).model_dump(mode="json")
    status, body = server.api("POST", "/api/sessions/nope/responses", good)
    assert status == 404 and body["code"] == "UnknownSession"
    wrong = {"generation": 1, "responses": [
        {"presentation_id": "h1", "stimulus_id": "g1-e77", "counts": [1]}
    ]}  # fmt: skip
    status, body = server.api("POST", path, wrong)
    assert status == 422 and body["code"] == "UnknownStimulus"
    status, body = server.api("POST", path, answered.model_dump(mode="json"))
    assert status == 200 and body == {"accepted": 0, "duplicates": 4}
    late = {"generation": 0, "responses": [
        {"presentation_id": "late-http", "stimulus_id": "g0-e2", "counts": [1]}
    ]}  # fmt: skip
    status, body = server.api("POST", path, late)
    assert status == 409 and body["code"] == "LateResponse"
    negative = {"generation": 1, "responses": [
        {"presentation_id": "n1", "stimulus_id": "g1-e0", "counts": [-1]}
    ]}  # fmt: skip
    status, body = server.api("POST", path, negative)
    assert status == 422 and body["code"] == "MalformedMessage"
    status, payload = post(server, path, b"{}", length=100 << 20)
    assert status == 413 and b"MessageTooLarge" in payload
    status, body = server.api("POST", f"/api/sessions/{session_id}/start")
    assert status == 409 and body["code"] == "SessionStateError"
    status, body = server.api("POST", "/api/sessions", {"generator": "nope"})
    assert status == 422 and body["code"] == "ConfigError" and "nope" in body["message"]
    status, body = server.api("POST", "/api/sessions", {"budget": 10, "generations": 2})
    assert status == 422 and body["code"] == "MalformedMessage"


def test_http_bodies_over_the_limit_are_refused_as_they_arrive(loop, unchanged):
    """A chunked body declares no length: the 413 comes once the limit is passed, while the
    client is still sending (it would go on for 64 MiB), and the answer is short."""
    server, session_id, _, _ = loop
    path = f"/api/sessions/{session_id}/responses"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
        sent = 0
        while sent < 64 << 20 and not select.select([sock], [], [], 0.01)[0]:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(chunk)
            sent += 1 << 16
        answer = b""
        while piece := sock.recv(4096):  # the server closes the connection after it
            answer += piece
    assert answer.startswith(b"HTTP/1.1 413") and b"MessageTooLarge" in answer
    assert len(answer) < 1000 and sent < 8 * MAX_BODY_BYTES
    padded = b'{"generation": 1, "responses": []' + b" " * (MAX_BODY_BYTES - 40) + b"}"
    status, payload = post(server, path, padded)  # under the limit: read and validated
    assert status == 422 and b"MalformedMessage" in payload
    status, payload = post(server, path, iter([padded[:1000], padded[1000:]]))
    assert status == 422 and b"MalformedMessage" in payload


def test_http_responses_are_taken_like_zmq_ones(loop):
    """The generation in flight completes from counts posted over HTTP."""
    server, session_id, _, gen1 = loop
    presented = {
        "generation": 1,
        "presentations": [
            {"presentation_id": gen1.presentation_id(s.stimulus_id, 0),
             "stimulus_id": s.stimulus_id, "onset": 12.5 + i, "outcome": "ok"}
            for i, s in enumerate(gen1.stimuli)
        ],
    }  # fmt: skip
    status, body = server.api("POST", f"/api/sessions/{session_id}/presented", presented)
    assert status == 200 and body == {"accepted": 4, "duplicates": 0}
    status, body = server.api("POST", f"/api/sessions/{session_id}/presented", presented)
    assert status == 200 and body == {"accepted": 0, "duplicates": 4}  # a resend
    body = brightness_responses(gen1).model_dump(mode="json")
    status, ack = server.api("POST", f"/api/sessions/{session_id}/responses", body)
    assert status == 200 and ack == {"accepted": 4, "duplicates": 0}
    state = server.wait_for(session_id, lambda s: s["generations_done"] >= 2, 30)
    assert state["state"] == "running"
    status, png = server.api("GET", f"/api/sessions/{session_id}/generations/1/images/0.png")
    assert status == 200 and png[:4] == b"\x89PNG"
    status, body = server.api("GET", f"/api/sessions/{session_id}/generations/1/images/9.png")
    assert status == 404 and body["code"] == "NotFound" and "no image 9" in body["message"]
    status, png = server.api("GET", f"/api/sessions/{session_id}/best.png")
    assert status == 200 and png[:4] == b"\x89PNG"
    status, listing = server.api("GET", "/api/sessions")
    assert [s["id"] for s in listing["sessions"]] == [session_id]
    status, spec = server.api("GET", "/openapi.json")
    assert status == 200 and "/api/sessions/{session_id}/responses" in spec["paths"]
