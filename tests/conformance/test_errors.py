"""Every error code of PROTOCOL.md section 5 that a rig can meet over ZeroMQ, provoked as the
text describes it, with the reply pointing at the message (``reply_to``, ``session``)."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest

from tests.conformance.test_exchange import counts_for
from tests.conformance.wire import Peer, header

pytestmark = pytest.mark.slow
SPEC = (Path(__file__).resolve().parents[2] / "PROTOCOL.md").read_text()


def raw(peer: Peer, frames: list[bytes], timeout_s: float = 10.0) -> dict:
    peer.send_frames(frames)
    got = peer.receive(timeout_s)
    assert got is not None, "no reply"
    assert got[0]["type"] == "error", got[0]
    return got[0]


def packed(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


@pytest.fixture(scope="module")
def rig(server):
    """A registered rig (both roles) with generation 0 of a session answered, 1 out."""
    session = server.session(generations=5)
    peer = Peer(server.zmq)
    peer.hello(["presenter", "recorder"], "rig")
    block, frames = peer.next_of("generation", session)
    peer.send("generation_ack", {"generation": 0, "block": 0}, session=session)
    first = counts_for(block, frames)
    ack = peer.reply_to(peer.send("responses", {"generation": 0, "responses": first},
                                  session=session))  # fmt: skip
    assert ack["type"] == "responses_ack"
    following, frames = peer.next_of("generation", session)
    yield peer, session, following, frames
    peer.close()


def test_header_errors_in_the_order_section_5_gives(server):
    peer = Peer(server.zmq)
    try:
        assert raw(peer, [b"\xc1"])["content"]["code"] == "MalformedMessage"
        assert raw(peer, [packed([1, 2])])["content"]["code"] == "MalformedMessage"
        cases = [
            ({"v": None}, "MalformedMessage"), ({"v": True}, "MalformedMessage"),
            ({"v": "1"}, "MalformedMessage"), ({"v": 2}, "UnsupportedVersion"),
            ({"type": 7}, "MalformedMessage"), ({"type": "teleport"}, "UnknownMessageType"),
            ({"sent_at": "now"}, "MalformedMessage"), ({"content": []}, "MalformedMessage"),
        ]  # fmt: skip
        for change, code in cases:
            message = header("heartbeat", session="s-1", **change)
            reply = raw(peer, [packed(message)])
            assert reply["content"]["code"] == code, (change, reply)
            assert (reply["reply_to"], reply["session"]) == (message["id"], "s-1")
        reply = raw(peer, [packed(header("heartbeat", id=b"m1"))])
        assert reply["content"]["code"] == "MalformedMessage" and reply["reply_to"] is None
    finally:
        peer.close()


def test_limits_are_message_too_large(server):
    peer = Peer(server.zmq)
    try:
        big = header("heartbeat", content={"pad": "x" * (64 << 10)})
        assert raw(peer, [packed(big)])["content"]["code"] == "MessageTooLarge"
        many = [packed(header("heartbeat")), *[b""] * 4097]
        assert raw(peer, many)["content"]["code"] == "MessageTooLarge"
    finally:
        peer.close()


def test_before_hello_everything_but_an_error_is_not_registered(server):
    peer = Peer(server.zmq)
    try:
        for type_, content in (("heartbeat", {}), ("bye", {}), ("generation_ack",
                               {"generation": 0})):  # fmt: skip
            reply = raw(peer, [packed(header(type_, content))])
            assert reply["content"]["code"] == "NotRegistered"
        peer.send("error", {"code": "Whatever", "message": "a client's error"})
        assert peer.receive(1.5) is None  # an error is never answered with an error
    finally:
        peer.close()


def test_messages_outside_the_clients_roles_are_wrong_role(server, rig):
    _, session, _, _ = rig
    peer = Peer(server.zmq)
    try:
        peer.hello(["presenter"], "screen")
        sent = peer.send("responses", {"generation": 1, "responses": [
            {"presentation_id": "x", "stimulus_id": "g1-e0", "counts": [1.0]}]},
            session=session)  # fmt: skip
        assert peer.reply_to(sent)["content"]["code"] == "WrongRole"
    finally:
        peer.close()


def test_what_the_counts_name_is_checked(rig):
    peer, session, _, _ = rig

    def refused(content: dict, session_id: str | None = session) -> str:
        reply = peer.reply_to(peer.send("responses", content, session=session_id))
        assert reply["type"] == "error" and reply["session"] == session_id
        return reply["content"]["code"]

    one = {"presentation_id": "c-1", "stimulus_id": "g1-e0", "counts": [1.0]}
    assert refused({"generation": 1, "responses": [one]}, "nope") == "UnknownSession"
    assert refused({"generation": 1, "responses": [one]}, None) == "UnknownSession"
    unknown = {**one, "stimulus_id": "g1-e99"}
    assert refused({"generation": 1, "responses": [unknown]}) == "UnknownStimulus"
    late = {**one, "presentation_id": "late-1", "stimulus_id": "g0-e0"}
    assert refused({"generation": 0, "responses": [late]}) == "LateResponse"
    two = {**one, "counts": [1.0, 2.0]}
    assert refused({"generation": 1, "responses": [two]}) == "ChannelMismatch"
    for bad in ({"evoked_window_ms": [200, 50]}, {"evoked_window_ms": [float("nan"), 200]},
                {"counts": [True]}, {"counts": ["3"]}, {"counts": [-1.0]}):  # fmt: skip
        assert refused({"generation": 1, "responses": [{**one, **bad}]}) == "MalformedMessage"


def test_an_ended_session_refuses_new_counts_but_acknowledges_a_resend(server):
    session = server.session(generations=1)
    peer = Peer(server.zmq)
    try:
        peer.hello(["presenter", "recorder"], "rig-end")
        block, frames = peer.next_of("generation", session)
        peer.send("generation_ack", {"generation": 0, "block": 0}, session=session)
        answered = counts_for(block, frames)
        content = {"generation": 0, "responses": answered}
        first = peer.reply_to(peer.send("responses", content, session=session))
        assert first["type"] == "responses_ack", first["content"]
        for _ in range(100):  # the session finishes with its last generation
            if server.api("GET", f"/api/sessions/{session}")[1]["state"] == "finished":
                break
            peer.receive(0.1)
        again = peer.reply_to(peer.send("responses", content, session=session))
        assert again["content"] == {"accepted": 0, "duplicates": 3}
        new = {"generation": 0, "responses": [{**answered[0], "presentation_id": "new"}]}
        reply = peer.reply_to(peer.send("responses", new, session=session))
        assert reply["content"]["code"] == "SessionStateError"
        assert "finished" in reply["content"]["message"]
    finally:
        peer.close()


def test_every_code_of_section_5_is_provoked_here_or_is_http_or_internal():
    table = SPEC[SPEC.index("## 5. Errors") : SPEC.index("## 6. Reliability")]
    codes = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
    source = Path(__file__).read_text()
    tests = source[: source.index("def test_every_code_of_section_5")]
    here = set(re.findall(r'"(\w+)"', tests)) & codes
    elsewhere = {c for c in codes if re.search(rf"`{c}` \| \(HTTP only\)", table)}
    assert codes - here - elsewhere == {"InternalError"}  # a server bug: cannot be provoked
