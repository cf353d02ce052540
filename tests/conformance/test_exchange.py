"""Every message type of PROTOCOL.md section 8, in the exchange of section 9, by a client
built from the text alone (wire.py), against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest

from tests.conformance.wire import Peer, header, images

pytestmark = pytest.mark.slow
SPEC = (Path(__file__).resolve().parents[2] / "PROTOCOL.md").read_text()


def counts_for(block: dict, frames: list[bytes], suffix: str = "") -> list[dict]:
    """One response per presentation asked for; presentation ids as section 7's Python
    clients make them (``<stimulus_id>-b<block>-r<repeat>``)."""
    shown = images(frames, block)
    return [
        {"presentation_id": f"{s['stimulus_id']}-b{block['content']['block']}-r{r}{suffix}",
         "stimulus_id": s["stimulus_id"], "counts": [float(shown[s["stimulus_id"]].mean())]}
        for s in block["content"]["stimuli"] for r in range(s["repeats"])
    ]  # fmt: skip


def test_a_whole_generation_and_the_next_as_section_9_shows(server):
    session = server.session()
    rig = Peer(server.zmq)
    try:
        welcome = rig.hello(["presenter", "recorder"], "sim", protocol="1.1")
        assert set(welcome) >= {"client_id", "heartbeat_s", "server"}
        assert welcome["heartbeat_s"] > 0 and welcome["server"].startswith("xdream-rig")
        block, frames = rig.next_of("generation", session)
        content = block["content"]
        assert block["session"] == session and content["generation"] == 0
        assert content["block"] == 0
        assert [s["stimulus_id"] for s in content["stimuli"]] == ["g0-e0", "g0-e1", "g0-e2"]
        assert set(content["params"]) >= {"on_ms", "off_ms", "size_deg", "position_deg"}
        assert len(frames) == len(block["buffers"]) == 3
        for image in images(frames, block).values():
            assert image.ndim == 3 and image.shape[2] in (3, 4)
        rig.send("generation_ack", {"generation": 0, "block": 0}, session=session,
                 reply_to=block["id"])  # fmt: skip
        responses = counts_for(block, frames)
        presented = [
            {"presentation_id": r["presentation_id"], "stimulus_id": r["stimulus_id"],
             "onset": 1031.2 + i, "outcome": "ok"}
            for i, r in enumerate(responses)
        ]  # fmt: skip
        sent = rig.send("presented", {"generation": 0, "presentations": presented},
                        session=session)  # fmt: skip
        ack = rig.reply_to(sent)
        assert ack["type"] == "presented_ack" and ack["content"] == {"accepted": 3, "duplicates": 0}
        sent = rig.send("responses", {"generation": 0, "responses": responses}, session=session)
        ack = rig.reply_to(sent)
        assert ack["type"] == "responses_ack" and ack["session"] == session
        assert ack["content"] == {"accepted": 3, "duplicates": 0}
        again = rig.reply_to(
            rig.send("responses", {"generation": 0, "responses": responses}, session=session)
        )  # the same again, e.g. after a lost ack (generation 0 may be complete by now)
        assert again["type"] == "responses_ack"
        assert again["content"] == {"accepted": 0, "duplicates": 3}
        following, _ = rig.next_of("generation", session)
        assert following["content"]["generation"] == 1
        assert following["content"]["stimuli"][0]["stimulus_id"] == "g1-e0"
        rig.send("bye")
    finally:
        rig.close()


def test_the_ids_of_the_spec_example_are_the_servers():
    example = SPEC[SPEC.index("## 9. Example exchange") : SPEC.index("## 10. Over HTTP")]
    assert re.search(r'stimulus_id: "g0-e0"', example)
    assert re.search(r'presentation_id:\s+"g0-e0-b0-r0"', example)
    assert "block: 0" in example and "server:" in example
    assert re.search(r"Stimulus ids are `g<generation>-e<index>`", SPEC)


def test_the_byte_level_example_of_section_4():
    message = header("heartbeat", sent_at=1764150000.5)
    message.pop("id")
    message = {"v": 1, "type": "heartbeat", "id": "9f", **message}
    packed = msgpack.packb(message, use_bin_type=True)
    assert packed[:4] == bytes([0x88, 0xA1, 0x76, 0x01])
    assert "starts `0x88 0xa1 0x76 0x01`" in SPEC


def test_a_client_without_session_gets_heartbeats_and_can_say_bye(server):
    peer = Peer(server.zmq)
    try:
        peer.hello(["recorder"], "quiet")
        peer.client_id = None  # stop heartbeating ourselves, and listen
        assert peer.socket.poll(3000), "the server heartbeats a registered client"
        assert msgpack.unpackb(peer.socket.recv_multipart()[0])["type"] == "heartbeat"
    finally:
        peer.close()
