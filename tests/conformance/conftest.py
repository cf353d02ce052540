"""A real ``xdream serve`` for the conformance suite, started as a user would (no import of
the server), and sessions made over its HTTP API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    zmq: str
    http: str
    process: subprocess.Popen[str]

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.http + path, data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def session(self, **config: Any) -> str:
        """A new session of small pixel images, started; its id."""
        base = {"generator": "pixel", "image_size": 16, "population": 3, "generations": 3,
                "response_timeout_s": 600}  # fmt: skip
        status, body = self.api("POST", "/api/sessions", {**base, **config})
        assert status == 201, body
        status, _ = self.api("POST", f"/api/sessions/{body['id']}/start")
        assert status == 200
        return body["id"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Running]:
    data = tmp_path_factory.mktemp("conformance") / "data"
    zmq_port, http_port = _free_port(), _free_port()
    log = (data.parent / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "xdream", "serve", "--zmq", f"tcp://127.0.0.1:{zmq_port}",
         "--http", f"127.0.0.1:{http_port}", "--data", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline(), "the server did not start"
    try:
        yield Running(f"tcp://127.0.0.1:{zmq_port}", f"http://127.0.0.1:{http_port}", process)
    finally:
        process.terminate()
        process.wait(20)
        log.close()
