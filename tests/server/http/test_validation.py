"""Every setting a new session takes, and every number a rig reports, is finite and in range:
each bad value is a 4xx that names its field, never a 500, and nothing is created.

The nested optimizer settings are checked by the optimizer's own settings class when the
session is created, not at its first generation."""

from __future__ import annotations

import json

import pytest

from xdream.testing.servers import create_session, running_server

SMALL = {"generator": "pixel", "image_size": 16, "population": 6, "generations": 2}

#: (what is sent, the field the answer must name); JSON NaN and Infinity as Python sends them.
BAD_SETTINGS = [
    ({"seed": -1}, "seed"),
    ({"seed": 2**40}, "seed"),
    ({"device": "meta"}, "device"),
    ({"device": "cuda:x"}, "device"),
    ({"population": None, "settings": {"population": 10_000_000}}, "settings"),
    ({"settings": {"population": 8}}, "settings"),  # given twice
    ({"generations": 2, "budget": 60}, "generations"),  # both
    ({"channels": [1, 1]}, "channels"),
    ({"channels": [0, 1], "channel_weights": [1.0]}, "channel_weights"),
    ({"settings": {"sigma0": float("nan")}}, "settings"),
    ({"settings": {"sigma0": float("inf")}}, "settings"),
    ({"settings": {"sigma0": 1e300}}, "settings"),
    ({"settings": {f"k{i}": 1 for i in range(40)}}, "settings"),
    ({"channel_weights": [float("inf")]}, "channel_weights"),
    ({"channel_weights": [1e308, 1e308], "channels": [0, 1]}, "channel_weights"),
    ({"params": {"position_deg": [float("nan"), 0]}}, "params"),
    ({"params": {"position_deg": [0, 500]}}, "params"),
    ({"channels": [5000]}, "channels"),
    ({"weights": ""}, "weights"),
    ({"generator": "fc6", "weights": "/etc/passwd"}, "weights"),  # outside the server's folders
    ({"references_per_generation": 1, "reference_folder": "/etc"}, "reference_folder"),
]


@pytest.mark.slow
def test_bad_settings_are_refused_naming_the_field(tmp_path):
    with running_server(tmp_path / "data") as server:
        for change, field in BAD_SETTINGS:
            body = json.dumps({**SMALL, **change}).encode()  # allow_nan: NaN, Infinity
            status, answer = server.api("POST", "/api/sessions", raw=body)
            assert 400 <= status < 500, (change, status, answer)
            assert field in answer.get("fields", {}), (change, answer)
            assert len(answer["message"]) <= 2000
            assert "passwd" not in answer["message"] and "exist" not in answer["message"]
        status, listing = server.api("GET", "/api/sessions")
        assert status == 200 and listing["sessions"] == []  # nothing was created


@pytest.mark.slow
def test_bad_windows_in_responses_are_refused_and_store_nothing(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, **SMALL)
        server.wait_for(session_id, lambda s: s["current"] is not None)  # generation 0 is out
        path = f"/api/sessions/{session_id}/responses"
        for window in ([float("nan"), 200], [200, 50], [0, 1e9]):
            response = {"presentation_id": "p", "stimulus_id": "g0-e0", "counts": [1.0],
                        "evoked_window_ms": window}  # fmt: skip
            body = json.dumps({"generation": 0, "responses": [response]}).encode()
            status, answer = server.api("POST", path, raw=body)
            assert status == 422 and answer["code"] == "MalformedMessage", (window, answer)
            assert "evoked_window_ms" in answer["message"]
        assert server.session(session_id)["current"]["responses"] == 0
