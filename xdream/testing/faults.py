"""Fault injection: kill ``xdream serve`` at the n-th call of a system call that makes its
session durable, restart it, and check what a lab cares about.

strace SIGKILLs the server at its n-th call of one system call (strace counts per thread;
a session's file work runs in its one storage thread):

- ``pwrite64``, the call HDF5 writes a session file with (the server writes nothing else
  with it; the journal uses ``write``): the kill lands anywhere inside a write or a flush
  of HDF5;
- ``fsync``, the call the journal makes before a response is acknowledged: the kill lands
  with the record written but not yet known to be on the disk.

Both are kills, not power cuts: the page cache survives them (power cuts are
tests/server/sessions/test_power_cut.py). Optionally the restarted server is killed too, at
the n-th ``pwrite64`` of its start-up, while it repairs or rebuilds the file the first kill
left. A rig (presenter and recorder, in threads of this process) answers every block
throughout, and remembers which responses the server acknowledged. The server is then
started again on the same data; the rig reconnects by itself and the session runs to its
end. Checked from the file: every acknowledged response stored exactly once, every
generation stored once, the file readable; and counted: the trials shown again because of
the kill.

Used by the bounded sweep in CI (tests/server/test_fault_injection.py) and the soak
(benchmarks/faults.py).
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.messages import Role
from rig_clients.connection import Connection, RequestFailed, ServerUnavailable
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from server.storage.catalog import read_closed
from server.storage.recovery import journal_path
from server.storage.session_file import SessionFile
from xdream.testing.servers import Server, ServerDidNotStart, brightness_responses, free_port

#: A small session: a few hundred writes in all, a few seconds per run.
POPULATION, GENERATIONS = 6, 3
SESSION: dict[str, Any] = dict(
    generator="pixel", image_size=16, population=POPULATION, generations=GENERATIONS, seed=1,
    response_timeout_s=5,
)  # fmt: skip


#: Seconds without a server before the rig stops trying: a restart takes a few, a start-up
#: under strace killed in its rebuild and then a second start up to 30 on a busy machine.
RIG_GIVES_UP_S = 60.0
#: The system calls a kill can be timed on: HDF5's writes, the journal's fsyncs.
WRITE, SYNC = "pwrite64", "fsync"


def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        raise RuntimeError("fault injection needs strace (apt-get install strace)")
    return path


def attach_strace(pid: int, syscall: str, *options: str) -> subprocess.Popen[bytes]:
    """strace, tracing ``syscall``, attached to every thread of process ``pid`` (once it
    is, this returns).

    Attaching to a running server leaves its start-up untraced (under strace it takes many
    times longer) and counts only the calls of the session that follows."""
    tracer = subprocess.Popen(
        [_strace(), "-f", "-qq", "-p", str(pid), "-e", f"trace={syscall}", *options],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _tracer(pid) == 0:
        time.sleep(0.02)
    if _tracer(pid) == 0:
        tracer.kill()
        raise RuntimeError(f"strace could not attach to process {pid}")
    return tracer


def _tracer(pid: int) -> int:
    """The pid of the process tracing ``pid`` (0: none)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


def kill_at(call: int, syscall: str) -> tuple[str, ...]:
    """strace options that SIGKILL the traced process at its ``call``-th ``syscall``."""
    return ("-o", "/dev/null", "-e", f"inject={syscall}:signal=SIGKILL:when={call}")


class Rig(threading.Thread):
    """Presents every block it gets and answers it; keeps the acknowledged ids."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        # Outlives a server restart (seconds), not the last server: then it stops by itself.
        self.connection = Connection(
            endpoint, [Role.presenter, Role.recorder], "fault-rig", give_up_s=RIG_GIVES_UP_S
        )
        self.acknowledged: list[str] = []
        self.trials = 0
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        with contextlib.suppress(ServerUnavailable):  # the last server is gone: done
            self._serve()

    def _serve(self) -> None:
        self.connection.connect()
        presenter, recorder = Presenter(self.connection), Recorder(self.connection)
        while not self.stop.is_set():
            block = presenter.next_block(timeout_s=0.2)
            presenter.other.clear()
            if block is None:
                continue
            reply = brightness_responses(block)
            self.trials += len(reply.responses)
            try:
                recorder.send(block.session, block.generation, reply.responses)
            except RequestFailed as exc:  # e.g. late after a restart: the server says so
                self.errors.append(str(exc))
                continue
            self.acknowledged += [r.presentation_id for r in reply.responses]

    def close(self) -> None:
        self.stop.set()
        self.join(RIG_GIVES_UP_S + 10)
        self.connection.close()


@dataclass
class KillPoint:
    """What one kill did."""

    #: The call killed at, and of which system call.
    call: int
    syscall: str = WRITE
    #: The restarted server's start-up write killed at too, if any.
    start_up_write: int | None = None
    #: Whether the server died at that call (False: the session needs fewer calls).
    killed: bool = False
    #: Whether the restarted server died in its start-up (at ``start_up_write``).
    killed_in_start_up: bool = False
    #: Whether the session's creation was answered before the kill (else it never was one).
    created: bool = False
    completed: bool = False
    acknowledged: int = 0
    lost: int = 0
    stored_twice: int = 0
    generations_twice: int = 0
    damaged: bool = False
    trials: int = 0
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def failed(self) -> bool:
        """Whether anything a lab cares about went wrong."""
        return bool(
            self.problems or self.lost or self.stored_twice or self.generations_twice
            or self.damaged or (self.created and not self.completed)
        )  # fmt: skip


def spread(total: int, points: int) -> list[int]:
    """``points`` call numbers spread evenly over 1..``total``, both ends included."""
    return sorted({1 + i * (total - 1) // max(points - 1, 1) for i in range(points)})


def count_calls(workdir: Path, syscall: str) -> int:
    """The calls of ``syscall`` one whole session makes (no fault)."""
    log = workdir / f"{syscall}.strace"
    _, rig, _, _ = run_session(workdir / "count", syscall, ("-o", str(log)))
    rig.close()
    return sum(1 for line in log.read_text().splitlines() if f"{syscall}(" in line)


def count_start_up_writes(workdir: Path, write: int) -> int:
    """The session-file writes of a server starting on what a kill at the ``write``-th
    write left (no rig connected, so the start-up is all it does)."""
    first, rig, _, _ = run_session(workdir / "first", WRITE, kill_at(write, WRITE))
    rig.close()
    log = workdir / "start-up.strace"
    server = Server(first.data, wrapper=_start_up_strace("-o", str(log), fast=True))
    server.kill()  # no clean shutdown: its writes are not the start-up's
    return sum(1 for line in log.read_text().splitlines() if f"{WRITE}(" in line)


def run_session(
    workdir: Path, syscall: str, strace: tuple[str, ...], timeout_s: float = 120.0
) -> tuple[Server, Rig, str | None, bool]:
    """A server (strace attached, tracing ``syscall`` with ``strace`` options) running one
    session with the rig until it finishes or the server dies; the server (stopped), the
    rig (still running), the session id (None if the server died before answering its
    creation) and whether the server died.

    ``pwrite64`` is traced from before the session's creation; ``fsync`` from just after
    it, on the session's journal only (other threads fsync too, the creation's among them,
    and strace counts each thread's calls apart: only then is the n-th the journal's n-th)."""
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    server = Server(data, zmq_port=free_port(), http_port=free_port())
    tracer = None if syscall == SYNC else attach_strace(server.process.pid, syscall, *strace)
    rig = Rig(server.zmq)
    rig.start()
    session_id = None
    deadline = time.monotonic() + timeout_s
    try:
        status, body = server.api("POST", "/api/sessions", SESSION)
        if status == 201:
            session_id = body["id"]
            if tracer is None:
                journal = journal_path(data / f"{session_id}.h5")
                tracer = attach_strace(server.process.pid, syscall, "-P", str(journal), *strace)
            server.api("POST", f"/api/sessions/{session_id}/start")
        while server.process.poll() is None and time.monotonic() < deadline:
            if session_id is not None:
                status, state = server.api("GET", f"/api/sessions/{session_id}")
                if status == 200 and state["state"] == "finished":
                    break
            time.sleep(0.1)
    except (OSError, http.client.HTTPException):  # the server died while answering
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(5)
    died = server.process.poll() is not None and server.process.returncode < 0  # a signal
    server.stop()
    if tracer is not None:
        tracer.wait(30)
    return server, rig, session_id, died


def _start_up_strace(*options: str, fast: bool = False) -> tuple[str, ...]:
    """strace running a server from its start, tracing its session-file writes. ``fast``:
    only those stop it (seccomp-bpf), for counting; an injection's count goes wrong with
    seccomp-bpf (strace 6.1: a kill at the 69th write never came), so kills go without it,
    at several times the start-up's length."""
    fast_option = ("--seccomp-bpf",) if fast else ()
    return (_strace(), "-f", "-qq", *fast_option, "-e", f"trace={WRITE}", *options)


def _killed_in_start_up(first: Server, write: int) -> bool:
    """Start a server on ``first``'s data with a SIGKILL at its ``write``-th session-file
    write; whether it died before it was ready (if not, it is killed once ready)."""
    wrapper = _start_up_strace(*kill_at(write, WRITE))
    try:
        server = Server(first.data, first.zmq_port, first.http_port, wrapper=wrapper)
    except ServerDidNotStart as exc:
        if exc.returncode == -signal.SIGKILL:  # strace ends as its tracee did
            return True
        raise  # a server that cannot start is what this must find
    server.kill()
    return False


def run_kill_point(
    workdir: Path,
    call: int,
    syscall: str = WRITE,
    start_up_write: int | None = None,
    timeout_s: float = 120.0,
) -> KillPoint:
    """Kill the server at its ``call``-th ``syscall``, optionally kill its restart at its
    ``start_up_write``-th write, restart it, finish."""
    result = KillPoint(call, syscall, start_up_write)
    first, rig, session_id, result.killed = run_session(
        workdir, syscall, kill_at(call, syscall), timeout_s
    )
    result.acknowledged = len(set(rig.acknowledged))  # before the kill; more come after
    try:
        if start_up_write is not None:
            result.killed_in_start_up = _killed_in_start_up(first, start_up_write)
        try:
            again = Server(first.data, zmq_port=first.zmq_port, http_port=first.http_port)
        except ServerDidNotStart as exc:  # what the suite is for: say why, and go on
            result.problems.append(f"the restart failed: {exc}: {exc.log_tail}")
            result.trials = rig.trials
            return result
        try:
            _, listing = again.api("GET", "/api/sessions")
            sessions = {s["id"]: s for s in listing["sessions"]}
            finished = {p["id"] for p in listing["past"] if p["state"] == "finished"}
            damaged = [p for p in listing["past"] if p["state"] == "damaged"]
            result.damaged = bool(damaged)
            result.problems += [p["problem"] for p in damaged]
            result.created = session_id is not None
            if session_id is not None and session_id in sessions:
                if sessions[session_id]["state"] == "created":  # the start was not answered:
                    again.api("POST", f"/api/sessions/{session_id}/start")  # press it again
                try:
                    state = again.wait_for(
                        session_id, lambda s: s["state"] == "finished", timeout_s
                    )
                    result.completed = True
                except AssertionError:  # it did not finish: say how it stands
                    now = again.session(session_id)
                    result.problems.append(f"stuck {now['state']}: {now.get('failure')}")
            elif session_id is not None and session_id in finished:  # ended before the kill
                state = again.session(session_id)
                result.completed = True
            elif session_id is not None:
                result.problems.append(f"session {session_id} was not resumed")
        finally:
            again.stop()
    finally:
        rig.close()
    if result.completed:  # read once the server has let go of the file
        _check_file(Path(state["data_file"]), rig.acknowledged, result)
    result.trials = rig.trials
    return result


def _check_file(path: Path, acknowledged: list[str], result: KillPoint) -> None:
    def read(store: SessionFile) -> tuple[list[str], list[int]]:
        ids = store.table("responses", columns=("presentation_id",)).get("presentation_id", [])
        index = store.table("generations", columns=("index",)).get("index", np.array([]))
        return list(ids), list(np.bincount(index.astype(int)))

    stored, per_generation = read_closed(path, read)
    counts = Counter(stored)
    result.acknowledged = len(set(acknowledged))  # in all
    result.lost = sum(1 for pid in set(acknowledged) if pid not in counts)
    result.stored_twice = sum(1 for n in counts.values() if n > 1)
    result.generations_twice = sum(1 for n in per_generation if n > POPULATION)
    if len(per_generation) != GENERATIONS:
        result.problems.append(f"generations stored: {per_generation}")
