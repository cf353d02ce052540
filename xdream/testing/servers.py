"""Helpers for tests that run ``xdream serve`` (and clients) as real processes on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from protocol.messages import Response, Responses

ROOT = Path(__file__).resolve().parents[2]


#: Ports free_port has handed out in this process: the kernel may offer a closed one again
#: at once, and two servers' (or one server's two) ports must differ.
_handed: set[int] = set()


def free_port() -> int:
    """A free TCP port on loopback, never one this process was given before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed:
            _handed.add(port)
            return port


def xdream(
    *args: str,
    threads: int | None = 1,
    env: dict[str, str] | None = None,
    wrapper: tuple[str, ...] = (),
    **popen: Any,
) -> subprocess.Popen[str]:
    """``xdream ARGS`` as a child process of this interpreter; ``threads`` torch threads
    (one by default, so that server and simulator do not oversubscribe the test machine;
    None for torch's default, as benchmarks need); ``env``: variables to add; ``wrapper``:
    a command that runs it (e.g. strace and its options)."""
    variables = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if threads is not None:
        variables["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen(
        [*wrapper, sys.executable, "-m", "xdream", *args],
        cwd=ROOT, env=variables, text=True, **popen,
    )  # fmt: skip


class ServerDidNotStart(RuntimeError):
    """The server ended before it was ready; with its exit status (negative: a signal) and
    the end of its log."""

    def __init__(self, returncode: int, log: Path) -> None:
        super().__init__(f"server did not start (exit {returncode}); see {log}")
        self.returncode = returncode
        self.log_tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""


class Server:
    """A running ``xdream serve`` with its addresses."""

    def __init__(
        self,
        data: Path,
        zmq_port: int | None = None,
        http_port: int | None = None,
        zmq_host: str = "127.0.0.1",
        options: tuple[str, ...] = (),
        threads: int | None = 1,
        http_host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        wrapper: tuple[str, ...] = (),
    ):
        self.data = data
        self.zmq_port = zmq_port or free_port()
        self.http_port = http_port or free_port()
        self.zmq = f"tcp://{zmq_host}:{self.zmq_port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.log = (data.parent / f"server-{self.zmq_port}.log").open("a")
        self.headers: dict[str, str] = {}  # sent with every api() request
        self.wrapped = bool(wrapper)
        self.process = xdream(
            "serve", "--zmq", self.zmq, "--http", f"{http_host}:{self.http_port}",
            "--data", str(data), *options, threads=threads, stdout=subprocess.PIPE,
            stderr=self.log, env=env, wrapper=wrapper,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            returncode = self.process.wait(30)
            self.log.close()
            raise ServerDidNotStart(returncode, Path(self.log.name))
        self.ready = json.loads(line)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as in a crash. Under a wrapper the server itself is
        killed (the wrapper's child), and the wrapper ends with it."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()] if self.wrapped else []
        for pid in pids or [self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
        return self.process.returncode

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ):
        """(status, JSON body, or bytes if not JSON) of an HTTP request to the server."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.http + path, data=data, method=method,
            headers={"Content-Type": "application/json", **self.headers, **(headers or {})},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                payload = reply.read()
                status = reply.status
                kind = reply.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            payload, status, kind = exc.read(), exc.code, exc.headers.get("content-type", "")
        return status, json.loads(payload) if "json" in kind else payload

    def session(self, session_id: str) -> dict[str, Any]:
        status, body = self.api("GET", f"/api/sessions/{session_id}")
        assert status == 200, body
        return body

    def wait_for(self, session_id: str, predicate, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.session(session_id)
            if predicate(state):
                return state
            time.sleep(0.1)
        raise AssertionError(f"timed out; last state {state}")


@contextlib.contextmanager
def running_server(data: Path, **options: Any) -> Iterator[Server]:
    server = Server(data, **options)
    try:
        yield server
    finally:
        server.stop()


def create_session(server: Server, **config: Any) -> str:
    status, body = server.api("POST", "/api/sessions", config)
    assert status == 201, body
    status, body = server.api("POST", f"/api/sessions/{body['id']}/start")
    assert status == 200, body
    return body["id"]


def brightness_responses(block, only=None) -> Responses:
    """Responses to ``block`` (a rig_clients Block): mean brightness as the 'spike count'."""
    rows = []
    for stimulus, image in zip(block.stimuli, block.images, strict=True):
        if only is not None and stimulus.stimulus_id not in only:
            continue
        value = float(np.asarray(image, dtype=np.float64).mean())
        for r in range(stimulus.repeats):
            rows.append(
                Response(
                    presentation_id=block.presentation_id(stimulus.stimulus_id, r),
                    stimulus_id=stimulus.stimulus_id,
                    counts=[value],
                )
            )
    return Responses(generation=block.generation, responses=rows)
