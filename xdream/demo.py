"""``xdream demo``: a server and a simulated rig on loopback, one session, start to finish.

The simulator runs in its own process (as a rig would) and talks to the server over real
ZeroMQ sockets. Without ``--generations`` the session runs its default budget and the server
stays up until Ctrl-C; with it, the demo ends after that many generations and prints a
summary (one JSON line with ``--json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.errors import XDreamError
from server.serve import serve
from server.sessions.config import SessionConfig, ThreadConfig
from server.sessions.manager import SessionManager
from server.sessions.session import Session
from server.sessions.states import SessionState
from server.settings import ServerSettings


class DemoFailed(XDreamError, RuntimeError):
    """The demo's simulator or session stopped before the run was over."""


@dataclass
class DemoConfig:
    generations: int | None = None
    target: str = "efficientnet-lite0:_fc:1"
    noise: str = "poisson:20"
    data: str | None = None
    zmq: str = "tcp://127.0.0.1:*"
    http: str = "127.0.0.1:0"
    references_per_generation: int = 4
    seed: int = 0
    json: bool = False
    #: 2: the default search and the paper's GA as two threads, interleaved on one unit.
    threads: int = 1


#: The demo's threads, in order: the default search, then the 2020 paper's GA beside it.
DEMO_THREADS = (
    ThreadConfig(name="default search"),
    ThreadConfig(name="paper's GA", optimizer="ga"),
)


def _simulator(endpoint: str, config: DemoConfig) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "xdream", "simulate", "--server", endpoint,
        "--target", config.target, "--noise", config.noise, "--seed", str(config.seed),
    ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def summary(session: Session) -> dict[str, Any]:
    return {
        "session_id": session.id,
        "state": str(session.state),
        "generations": session.done,
        **session.history.summary(),
        "threads": [t.summary(k) for k, t in enumerate(session.threads)],
        "data_file": str(session.store.path),
    }


async def _run_session(
    addresses: dict[str, Any], manager: SessionManager, config: DemoConfig
) -> dict[str, Any]:
    session = await manager.create(
        SessionConfig(
            name="demo",
            generations=config.generations,
            references_per_generation=config.references_per_generation,
            seed=config.seed,
            response_timeout_s=10.0,
            threads=list(DEMO_THREADS[: config.threads]) if config.threads > 1 else [],
        )
    )
    images = " + ".join(str(t.engine.optimizer.population) for t in session.threads)
    print(  # on stderr, so that --json keeps stdout to its one line
        f"xdream demo: session {session.id}, {session.generations} generations of "
        f"{images} images; watch it on the dashboard at "
        f"{addresses['http']}/#/session/{session.id} ; data {session.store.path}",
        file=sys.stderr,
        flush=True,
    )
    await session.start()
    simulator = _simulator(addresses["zmq"], config)
    try:
        while not session.state.final:
            if simulator.poll() is not None:
                raise DemoFailed(f"the simulator exited with status {simulator.returncode}")
            await asyncio.sleep(0.2)
            if session.state is SessionState.paused:  # an error paused it: the log says why
                raise DemoFailed(f"session {session.id} paused after an error; see the log")
    finally:
        simulator.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(simulator.wait, 10)
    return summary(session)


def run(config: DemoConfig) -> dict[str, Any]:
    """Run the demo; the summary of its session."""
    data = config.data or tempfile.mkdtemp(prefix="xdream-demo-")
    result: dict[str, Any] = {}

    async def job(addresses: dict[str, Any], manager: SessionManager) -> None:
        result.update(await _run_session(addresses, manager, config))
        if config.generations is None:  # the full budget ran: keep serving until Ctrl-C
            await asyncio.Event().wait()

    settings = ServerSettings.apart_from_environment(
        zmq=config.zmq, http=config.http, data=Path(data)
    )
    asyncio.run(serve(settings, job))
    return result


def main(config: DemoConfig) -> int:
    result = run(config)
    if config.json:
        print(json.dumps(result), flush=True)
    else:
        for thread in result["threads"]:
            print(
                f"{thread['name'] or 'best'}: best score {thread['best_score']}; mean first "
                f"generation {thread['first_generation_mean']}, last "
                f"{thread['last_generation_mean']}"
            )
        print(f"data in {result['data_file']}")
    return 0
