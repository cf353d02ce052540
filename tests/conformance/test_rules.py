"""The rules of PROTOCOL.md section 6, by the spec-only client: resends, identity across
reconnects, recorders on a separate PC; and that this suite imports nothing of the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conformance.test_exchange import counts_for
from tests.conformance.wire import Peer

pytestmark = pytest.mark.slow


def test_an_unacknowledged_generation_is_resent_with_the_same_id(server):
    session = server.session(rig="slow-screen")
    peer = Peer(server.zmq)
    try:
        peer.hello(["presenter"], "slow-screen")
        first, _ = peer.next_of("generation", session)
        again, _ = peer.next_of("generation", session, timeout_s=10)  # after 2 s, no ack
        assert again["id"] == first["id"] and again["content"] == first["content"]
    finally:
        peer.close()


def test_a_client_that_names_its_client_id_stays_the_same_client(server):
    session = server.session(rig="screen-2")
    peer = Peer(server.zmq)
    try:
        given = peer.hello(["presenter"], "screen-2")["client_id"]
        peer.next_of("generation", session)
        peer.send("generation_ack", {"generation": 0, "block": 0}, session=session)
        peer.close()
        peer = Peer(server.zmq)  # a reconnect: a new socket
        assert peer.hello(["presenter"], "screen-2", client_id=given)["client_id"] == given
        while (got := peer.receive(3.0)) is not None:  # nothing is sent again
            assert got[0]["type"] != "generation", got[0]["content"]
        _, state = server.api("GET", f"/api/sessions/{session}")
        assert "presenter_lost" not in [w["kind"] for w in state["warnings"]]
    finally:
        peer.close()


def test_a_recorder_on_another_pc_learns_the_presentations_and_answers(server):
    session = server.session(rig="rig-c")
    screen, recorder = Peer(server.zmq), Peer(server.zmq)
    try:
        screen.hello(["presenter"], "rig-c")
        recorder.hello(["recorder"], "rig-c", presentations=True)
        block, frames = screen.next_of("generation", session)
        screen.send("generation_ack", {"generation": 0, "block": 0}, session=session)
        responses = counts_for(block, frames)
        shown = [{"presentation_id": r["presentation_id"], "stimulus_id": r["stimulus_id"],
                  "onset": 5.0 + i, "outcome": "ok"} for i, r in enumerate(responses)]  # fmt: skip
        screen.send("presented", {"generation": 0, "presentations": shown}, session=session)
        told, _ = recorder.next_of("presented", session)
        assert told["content"]["generation"] == 0
        assert told["content"]["presentations"] == shown
        by_id = {r["presentation_id"]: r for r in responses}
        counts = [by_id[p["presentation_id"]] for p in told["content"]["presentations"]]
        sent = recorder.send("responses", {"generation": 0, "responses": counts}, session=session)
        assert recorder.reply_to(sent)["content"] == {"accepted": 3, "duplicates": 0}
    finally:
        screen.close()
        recorder.close()


def test_replies_are_matched_by_reply_to_whatever_their_order(server):
    """Section 6, "Order": messages sent back to back get their replies in any order; each
    reply names its message."""
    session = server.session(rig="rig-order")
    peer = Peer(server.zmq)
    try:
        peer.hello(["presenter", "recorder"], "rig-order", protocol="1.1")
        block, frames = peer.next_of("generation", session)
        peer.send("generation_ack", {"generation": 0, "block": 0}, session=session)
        responses = counts_for(block, frames)
        shown = [{"presentation_id": r["presentation_id"], "stimulus_id": r["stimulus_id"],
                  "onset": 1.0, "outcome": "ok"} for r in responses]  # fmt: skip
        sent = {
            peer.send("presented", {"generation": 0, "presentations": shown}, session=session):
                "presented_ack",
            peer.send("responses", {"generation": 0, "responses": responses[:1]},
                      session=session): "responses_ack",
            peer.send("responses", {"generation": 0, "responses": [{**responses[1],
                      "stimulus_id": "g0-e99"}]}, session=session): "error",
            peer.send("responses", {"generation": 0, "responses": responses[1:]},
                      session=session): "responses_ack",
        }  # fmt: skip
        replies = {}
        while len(replies) < len(sent):
            got = peer.receive(10.0)
            assert got is not None, f"replies to {set(sent) - set(replies)} missing"
            if got[0]["reply_to"] in sent:
                replies[got[0]["reply_to"]] = got[0]["type"]
        assert replies == sent
    finally:
        peer.close()


def test_the_suite_imports_nothing_of_xdream_rig():
    own = {"protocol", "server", "rig_clients", "simulator", "xdream"}
    for path in Path(__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in own, f"{path.name} imports {name}"
