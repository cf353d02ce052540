"""A whole session with the rig on HTTP alone, as a MATLAB rig runs it (PROTOCOL.md,
section 10): long-poll for the next block, fetch its images raw, post what was presented and
the counts; the stored scores are the counts the rig computed from the bytes it fetched."""

from __future__ import annotations

import io
import json
import urllib.parse

import h5py
import numpy as np
import pytest

from xdream.testing.servers import create_session, running_server

pytestmark = pytest.mark.slow


def test_a_session_runs_to_its_end_over_http_alone(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(
            server, generator="pixel", image_size=16, population=4, generations=3,
            rig="matlab-rig",
        )  # fmt: skip
        status, _ = server.api("GET", "/api/rig/other-rig/next?wait_s=0.5")
        assert status == 204  # another rig's presenter gets nothing
        after, scores = None, {}
        for _ in range(3):
            query = f"?wait_s=20&after={after}" if after else "?wait_s=20"
            status, block = server.api("GET", f"/api/rig/matlab-rig/next{query}")
            assert status == 200, block
            assert block["session"] == session_id and block["block"] == 0
            after = block["key"]
            presented, responses = [], []
            for i, stimulus in enumerate(block["stimuli"]):
                status, data = server.api("GET", stimulus["raw"])
                image = np.frombuffer(data, dtype=np.uint8).reshape(stimulus["shape"])
                status, png = server.api("GET", stimulus["png"])
                assert status == 200 and png[:4] == b"\x89PNG"
                pid = f"{stimulus['stimulus_id']}-b0-r0"
                presented.append({"presentation_id": pid, "stimulus_id": stimulus["stimulus_id"],
                                  "onset": 10.0 + i, "outcome": "ok"})  # fmt: skip
                count = float(image.mean())
                scores[stimulus["stimulus_id"]] = count
                responses.append({"presentation_id": pid, "stimulus_id": stimulus["stimulus_id"],
                                  "counts": [count]})  # fmt: skip
            path = f"/api/sessions/{session_id}"
            generation = block["generation"]
            body = {"generation": generation, "presentations": presented}
            assert server.api("POST", f"{path}/presented", body)[1]["accepted"] == 4
            body = {"generation": generation, "responses": responses}
            assert server.api("POST", f"{path}/responses", body)[1] == {
                "accepted": 4,
                "duplicates": 0,
            }
        state = server.wait_for(session_id, lambda s: s["state"] == "finished", 60)
        assert state["generations_done"] == 3
        status, _ = server.api("GET", f"/api/rig/matlab-rig/next?wait_s=0.5&after={after}")
        assert status == 204  # nothing more in flight
        status, refused = server.api("GET", f"/api/sessions/{session_id}/stimuli/g0-e0.raw")
        assert status == 409 and refused["code"] == "SessionStateError"
        status, payload = server.api("GET", f"/api/sessions/{session_id}/data")
        with h5py.File(io.BytesIO(payload), "r") as f:
            index = f["generations/index"][()]
            stored = f["generations/scores"][()]
        rows = np.arange(len(index)) - np.searchsorted(index, index)  # position in generation
        wanted = [scores[f"g{g}-e{i}"] for g, i in zip(index, rows, strict=True)]
        np.testing.assert_allclose(stored, wanted)  # what the rig computed, stored


def test_a_json_body_sent_as_the_one_form_field_json_is_taken_as_json(tmp_path):
    """What GNU Octave's webwrite sends (it form-encodes every body)."""
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, generator="pixel", image_size=16, population=2,
                                    generations=1, rig="octave")  # fmt: skip
        status, block = server.api("GET", "/api/rig/octave/next?wait_s=20")
        assert status == 200
        shown = {"generation": 0, "presentations": [
            {"presentation_id": f"p{i}", "stimulus_id": s["stimulus_id"], "onset": 1.0,
             "outcome": "ok"} for i, s in enumerate(block["stimuli"])]}  # fmt: skip
        form = urllib.parse.urlencode({"json": json.dumps(shown)}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        path = f"/api/sessions/{session_id}/presented"
        status, ack = server.api("POST", path, raw=form, headers=headers)
        assert status == 200 and ack == {"accepted": 2, "duplicates": 0}
        other = urllib.parse.urlencode({"json": "{}", "more": "1"}).encode()
        status, refused = server.api("POST", path, raw=other, headers=headers)
        assert status == 422 and refused["code"] == "MalformedMessage"  # not taken for JSON
