"""Schemathesis against a running ``xdream serve``: requests generated from the server's own
``/openapi.json`` (from the schema's examples and edges, fuzzed, and chained) never get a
5xx. The server holds a finished session whose id, generation and image position are given
to Schemathesis, so the routes behind them are reached, not only their 404s.

The live stream (``/api/live``) is left out: it is an endless answer by design; the rig's
long poll (``/api/rig/{rig}/next``) is given ``wait_s = 0``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol.messages import Role
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from xdream.testing.servers import brightness_responses, create_session, running_server

pytestmark = pytest.mark.slow

#: Cases per operation and phase: enough to find the edges, small enough for CI (~1 min).
EXAMPLES = 25


def finished_session(server) -> str:
    session_id = create_session(server, generator="pixel", image_size=16, population=4,
                                generations=2)  # fmt: skip
    connection = Connection(server.zmq, [Role.presenter, Role.recorder], "rig")
    connection.connect(timeout_s=20)
    presenter, recorder = Presenter(connection), Recorder(connection)
    for generation in range(2):
        block = presenter.next_block(timeout_s=30)
        assert block.generation == generation
        recorder.send(session_id, generation, brightness_responses(block).responses)
    server.wait_for(session_id, lambda s: s["state"] == "finished", 30)
    connection.close()
    return session_id


def test_no_generated_request_gets_a_server_error(tmp_path: Path):
    with running_server(tmp_path / "data") as server:
        session_id = finished_session(server)
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            f'parameters = {{ session_id = "{session_id}", generation = 0, position = 0, '
            "wait_s = 0 }\n"  # the rig's long poll answers at once: nothing is in flight
        )
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run",
                f"{server.http}/openapi.json", "--checks", "not_a_server_error",
                "--max-examples", str(EXAMPLES), "--seed", "20261202", "--workers", "1",
                "--exclude-path-regex", "/live", "--request-timeout", "30",
                "--report-dir", str(tmp_path / "report"),
            ],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
        assert server.process.poll() is None, "the server went down"
    summary = run.stdout[-4000:]
    assert run.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("SUMMARY")[-1], summary
