"""What the dashboard reads: the server-sent-event stream, field errors for the form, past
sessions, montage and thumbnails; and the pieces behind them (change notification, warnings,
JSON-safe history)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import urllib.request
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
from PIL import Image

from protocol.errors import UnknownSession
from protocol.messages import Role
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from server.engine.statistics import History
from server.http.live import View, sse
from server.sessions.alarms import Alarms
from server.sessions.changes import Changes
from server.sessions.warnings import Warnings, warning_for
from server.storage.catalog import stored_path
from xdream.testing.servers import brightness_responses, create_session, running_server

SMALL = dict(generator="pixel", image_size=32, population=4, seed=1, response_timeout_s=600)


class Events:
    """The ``update`` events of a server-sent-event stream, read as they arrive."""

    def __init__(self, url: str) -> None:
        self.reply = urllib.request.urlopen(url, timeout=15)
        assert self.reply.headers["content-type"].startswith("text/event-stream")

    def next(self) -> dict[str, Any]:
        event = None
        while True:
            line = self.reply.readline().decode()
            assert line, "stream ended"
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "update":
                return json.loads(line.split(":", 1)[1])

    def until(self, predicate, limit: int = 40) -> dict[str, Any]:
        for _ in range(limit):
            update = self.next()
            if predicate(update):
                return update
        raise AssertionError(f"no matching update in {limit}")

    def close(self) -> None:
        self.reply.close()


def test_changes_wake_waiters_and_bump_the_parent():
    async def main() -> tuple[int, int, float]:
        parent = Changes()
        child = Changes(parent)
        waiter = asyncio.create_task(parent.wait(parent.version, timeout=5))
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        child.bump()
        await waiter
        return child.version, parent.version, loop.time() - t0

    child, parent, waited = asyncio.run(main())
    assert (child, parent) == (1, 1)
    assert waited < 1.0  # woken by the bump, not by the 5 s timeout


def test_warnings_name_what_needs_attention_and_skip_routine_events():
    assert warning_for("block_sent", {"reason": "first", "delivered": True}) is None
    assert "no presenter" in warning_for("block_sent", {"reason": "first", "delivered": False})
    assert "timeout" in warning_for("block_sent", {"reason": "timeout", "block": 2, "stimuli": 3})
    assert "c4" in warning_for("presenter_lost", {"client": "c4"})
    assert "2 stimuli" in warning_for("missing", {"stimuli": ["a", "b"]})
    assert warning_for("block_acknowledged", {}) is None


def test_history_json_has_no_nan_and_sends_only_new_generations():
    history = History()
    history.record(np.array([1.0, np.nan]), np.array([]))
    history.record(np.array([np.nan, np.nan]), np.array([0.5]))
    out = history.as_json(1)
    json.dumps(out, allow_nan=False)  # would raise on NaN
    assert out["start"] == 1 and out["max"] == [None] and out["reference_mean"] == [0.5]
    assert out["last_scores"] == [None, None]
    assert history.as_json()["max"] == [1.0, None]


def test_view_sends_each_warning_and_generation_once():
    history = History()
    warnings = Warnings()
    warnings.add("presenter_lost", 0, {"client": "c1"})
    alarms = Alarms()
    session = SimpleNamespace(
        history=history,
        histories=[history],
        warnings=warnings,
        alarms=alarms,
        notes=[],
        config=SimpleNamespace(model_dump=lambda mode: {"name": "x"}),
        summary=lambda: {"id": "s"},
    )
    manager = SimpleNamespace(sessions={"s": session}, watched={"s": session}.__getitem__)
    view = View(manager, list, "s")
    first = view.snapshot(True)["session"]
    assert first["config"] == {"name": "x"} and len(first["warnings"]) == 1
    assert first["warnings"][0]["severity"] == "warning" and first["alarm_log"] == []
    alarms.raise_(
        "client_lost", "client_lost:rig-A", 0, name="rig-A", roles="presenter", why="said bye"
    )
    history.record(np.array([2.0]), np.array([]))
    second = view.snapshot(False)["session"]
    assert "config" not in second and second["warnings"] == []
    assert [a["kind"] for a in second["alarm_log"]] == ["client_lost"]  # sent whole
    assert "references" in second["history"]  # a generation was added
    third = view.snapshot(False)["session"]
    assert "alarm_log" not in third and "references" not in third["history"]  # unchanged
    assert second["history"]["start"] == 0 and second["history"]["max"] == [2.0]
    assert view.snapshot(False)["session"]["history"]["max"] == []
    assert view.snapshot(True)["session"]["history"]["max"] == [2.0]  # a reconnect: all
    assert "thread_histories" not in first  # one thread: its history is the session's
    other = History()
    other.record(np.array([5.0]), np.array([]))
    session.histories = [history, other]
    both = view.snapshot(True)["session"]["thread_histories"]
    assert [h["max"] for h in both] == [[2.0], [5.0]]
    assert [h["max"] for h in view.snapshot(False)["session"]["thread_histories"]] == [[], []]
    assert sse("update", {"a": 1}) == 'event: update\ndata: {"a":1}\n\n'


@pytest.mark.slow
def test_live_stream_pushes_clients_warnings_and_each_generation(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, name="live", generations=3, **SMALL)
        events = Events(f"{server.http}/api/live?session={session_id}")
        try:
            first = events.next()
            assert first["full"] and first["session"]["config"]["name"] == "live"
            assert [s["id"] for s in first["sessions"]] == [session_id]
            # Started with no presenter connected: the operator is told.
            has_warning = lambda u: u["session"]["warnings"]  # noqa: E731
            warned = first if has_warning(first) else events.until(has_warning)
            assert "no presenter" in warned["session"]["warnings"][0]["message"]

            connection = Connection(server.zmq, [Role.presenter], "screen-1")
            connection.connect(timeout_s=20)
            presenter = Presenter(connection)
            update = events.until(lambda u: [c["name"] for c in u["clients"]] == ["screen-1"])
            assert update["clients"][0]["roles"] == ["presenter"]
            block = presenter.next_block(timeout_s=30)
            status, body = server.api(
                "POST",
                f"/api/sessions/{session_id}/responses",
                brightness_responses(block).model_dump(mode="json"),
            )
            assert status == 200 and body["accepted"] == 4, body
            update = events.until(lambda u: u["session"]["history"]["max"])
            history = update["session"]["history"]
            assert history["start"] == 0 and len(history["max"]) == 1
            assert len(history["last_scores"]) == 4
            later = events.next()  # the next push carries no generation twice
            assert later["session"]["history"]["start"] == 1
            assert later["session"]["history"]["max"] == []
            connection.close()
        finally:
            events.close()
        assert server.api("GET", "/api/live?session=nope")[0] == 404


@pytest.mark.slow
def test_new_session_errors_name_the_field(tmp_path):
    with running_server(tmp_path / "data") as server:
        cases = [
            ({"population": 1}, "population"),
            ({"budget": 3}, "budget"),
            ({"generator": "fc6"}, "generator"),
            ({"generator": "nonsense"}, "generator"),
            ({"optimizer": "nonsense"}, "optimizer"),
            (
                {"references_per_generation": 2, "reference_folder": str(tmp_path)},
                "reference_folder",
            ),
            ({"channels": [0, 0]}, "channels"),  # a rule across fields names the later one
            ({"unknown": 1}, "unknown"),
        ]
        for config, field in cases:
            status, body = server.api("POST", "/api/sessions", config)
            assert status == 422, (config, body)
            assert field in body["fields"], (config, body)
            assert body["fields"][field], body
        status, options = server.api("GET", "/api/options")
        assert status == 200
        names = {g["name"]: g for g in options["generators"]}
        assert names["pixel"]["available"] and not names["fc6"]["available"]
        assert sum(o["default"] for o in options["optimizers"]) == 1
        assert all(o["description"] for o in options["optimizers"])
        assert options["defaults"]["channels"] == [0]


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


@pytest.mark.slow
def test_past_sessions_are_listed_and_read_from_their_files(tmp_path):
    data = tmp_path / "data"
    with running_server(data) as server:
        session_id = create_session(server, name="done yesterday", generations=2, **SMALL)
        connection = Connection(server.zmq, [Role.presenter], "screen")
        connection.connect(timeout_s=20)
        presenter = Presenter(connection)
        blocks = []
        for generation in range(2):
            block = presenter.next_block(timeout_s=30)
            assert block.generation == generation
            blocks.append(block)
            if generation == 0:  # an operator's note, stored with the time and generation
                note = {"text": "unit well isolated"}
                notes = f"/api/sessions/{session_id}/notes"
                status, kept = server.api("POST", notes, note)
                assert status == 201 and (kept["text"], kept["generation"]) == (note["text"], 0)
                assert server.api("POST", notes, {"text": ""})[0] == 422
            if generation == 1:  # a warning for certain: counts after their generation closed
                late = brightness_responses(blocks[0]).model_dump(mode="json")
                late["responses"][0]["presentation_id"] = "late-1"
                status, _ = server.api("POST", f"/api/sessions/{session_id}/responses", late)
                assert status == 409
            server.api(
                "POST",
                f"/api/sessions/{session_id}/responses",
                brightness_responses(block).model_dump(mode="json"),
            )
        live = server.wait_for(session_id, lambda s: s["state"] == "finished", 30)
        assert any("late" in w["message"] for w in live["warnings"]), live["warnings"]
        assert live["progress"]["running_s"] > 0 and live["progress"]["s_per_generation"] > 0
        ended = server.api("POST", f"/api/sessions/{session_id}/notes", {"text": "too late"})
        assert ended[0] == 409  # an ended session's file is closed
        connection.close()
    # A file whose name is no session id cannot be opened, so it is not listed.
    (data / "run.1.h5").write_bytes((data / f"{session_id}.h5").read_bytes())
    with running_server(data) as server:
        status, listing = server.api("GET", "/api/sessions")
        assert listing["sessions"] == []
        (past,) = listing["past"]
        assert past["id"] == session_id and past["name"] == "done yesterday"
        assert past["state"] == "finished"
        stored = server.session(session_id)
        assert [n["text"] for n in stored["notes"]] == ["unit well isolated"]
        assert 0 < stored["progress"]["running_s"] <= live["progress"]["running_s"] + 1
        assert stored["progress"]["eta_s"] is None
        status, table = server.api("GET", f"/api/sessions/{session_id}/scores.csv")
        lines = table.decode().splitlines()
        assert status == 200 and lines[0] == "generation,stimulus_id,kind,index,score,thread"
        with h5py.File(data / f"{session_id}.h5", "r") as f:
            scores = f["generations/scores"][()]
        assert [float(line.split(",")[4]) for line in lines[1:]] == scores.tolist()
        assert {line.split(",")[5] for line in lines[1:]} == {"0"}
        assert lines[1].startswith("0,g0-e0,evolved,0,")
        assert stored["history"]["max"] == live["history"]["max"]
        assert stored["generations_done"] == 2 and stored["best_score"] == live["best_score"]
        assert [w["message"] for w in stored["warnings"]] == [
            w["message"] for w in live["warnings"]
        ]
        status, montage = server.api("GET", f"/api/sessions/{session_id}/montage.png")
        assert status == 200 and png_size(montage) == (6 * 128, 128 + 14)
        status, best = server.api("GET", f"/api/sessions/{session_id}/best.png")
        assert status == 200 and png_size(best) == (32, 32)
        with urllib.request.urlopen(f"{server.http}/api/sessions/{session_id}/best.png") as r:
            named = r.headers["Content-Disposition"]
        assert re.fullmatch(rf'inline; filename="{session_id}-g[01]-best.png"', named), named
        status, image = server.api("GET", f"/api/sessions/{session_id}/generations/1/images/3.png")
        assert status == 200 and png_size(image) == (32, 32)
        path = f"/api/sessions/{session_id}/generations/1/thumbnails/3.jpg"
        status, thumbnail = server.api("GET", path + "?size=64")
        assert status == 200 and thumbnail[:3] == b"\xff\xd8\xff"  # JPEG
        assert png_size(thumbnail) == (64, 64)
        assert server.api("GET", path + "?size=4")[0] == 422
        assert server.api("GET", path.replace("/1/", "/7/"))[0] == 404  # not stored
        # Past sessions are read-only: no live stream, no controls, no ingestion.
        assert server.api("GET", f"/api/live?session={session_id}")[0] == 404
        assert server.api("POST", f"/api/sessions/{session_id}/resume")[0] == 404
        assert server.api("GET", "/api/sessions/..secret")[0] == 404
        for path in ("data", "best.png", "montage.png", "generations/0/images/0.png"):
            assert server.api("GET", f"/api/sessions/nope/{path}")[0] == 404, path
    # Ids are never paths: a file outside the data folder cannot be named.
    (tmp_path / "outside.h5").write_bytes((data / f"{session_id}.h5").read_bytes())
    for name in ("../outside", "..", "a/b", ""):
        with pytest.raises(UnknownSession):
            stored_path(data, name)
    assert stored_path(data, session_id) == data / f"{session_id}.h5"


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a ``$ref`` to ``#/components/schemas/...`` followed."""
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def answer_schema(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    responses = spec["paths"][path][method]["responses"]
    return resolve(spec, responses[status]["content"]["application/json"]["schema"])


@pytest.mark.slow
def test_openapi_describes_the_answers_and_their_errors(tmp_path):
    with running_server(tmp_path / "data") as server:
        status, spec = server.api("GET", "/openapi.json")
    assert status == 200
    detail = spec["paths"]["/api/sessions/{session_id}"]["get"]["responses"]
    ref = detail["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/SessionDetail")
    one = "/api/sessions/{session_id}"
    assert "history" in answer_schema(spec, one, "get", "200")["properties"]
    assert answer_schema(spec, one, "get", "404")["title"] == "ErrorBody"
    create = spec["paths"]["/api/sessions"]["post"]["responses"]
    assert {"201", "422"} <= set(create)
    health = answer_schema(spec, "/api/health", "get", "200")
    assert {"status", "sessions", "device"} <= set(health["properties"])
    image = spec["paths"]["/api/sessions/{session_id}/best.png"]["get"]["responses"]
    assert "image/png" in image["200"]["content"]


@pytest.mark.slow
def test_a_missing_image_is_not_found(tmp_path):
    with running_server(tmp_path / "data") as server:
        status, body = server.api("POST", "/api/sessions", {"name": "fresh", **SMALL})
        assert status == 201, body
        session_id = body["id"]
        for path in ("best.png", "montage.png", "generations/9/images/0.png"):
            status, body = server.api("GET", f"/api/sessions/{session_id}/{path}")
            assert status == 404 and body["code"] == "NotFound", (path, body)
        status, body = server.api("GET", f"/api/sessions/{session_id}")
        assert status == 200 and body["state"] == "created" and "created" not in body


@pytest.mark.slow
def test_live_sessions_are_capped_and_ended_ones_archived(tmp_path):
    data = tmp_path / "data"
    with running_server(data, options=("--max-sessions", "1")) as server:
        first = create_session(server, name="first", **SMALL)
        status, body = server.api("POST", "/api/sessions", {"name": "second", **SMALL})
        assert (
            status == 409
            and body["code"] == "SessionLimit"
            and "--max-sessions 1" in body["message"]
        )
        status, body = server.api("POST", f"/api/sessions/{first}/archive")
        assert (
            status == 409 and body["code"] == "SessionStateError" and "stop it" in body["message"]
        )
        assert server.api("POST", f"/api/sessions/{first}/stop")[0] == 200
        status, listed = server.api("GET", "/api/sessions")
        assert listed["sessions"] == [] and [p["id"] for p in listed["past"]] == [first]
        late = {"generation": 0, "responses": [
            {"presentation_id": "p", "stimulus_id": "g0-e0", "counts": [1]}
        ]}  # fmt: skip
        status, body = server.api("POST", f"/api/sessions/{first}/responses", late)
        assert (
            status == 409 and body["code"] == "SessionStateError" and "aborted" in body["message"]
        )
        assert server.session(first)["state"] == "aborted"  # still answered for
        second = create_session(server, name="second", **SMALL)  # its place is free
        assert server.api("POST", f"/api/sessions/{first}/archive")[0] == 204
        assert server.api("GET", f"/api/sessions/{first}")[0] == 404
        assert server.api("POST", f"/api/sessions/{first}/archive")[0] == 404
        status, listed = server.api("GET", "/api/sessions")
        assert [s["id"] for s in listed["sessions"]] == [second] and listed["past"] == []
    assert sorted(p.name for p in (data / "archive").iterdir()) == [
        f"{first}.h5", f"{first}.journal"
    ]  # fmt: skip
