"""``xdream serve``: the composition root. It builds the parts from the settings and wires
them one way: the ZeroMQ link and the session manager first, then the rig server (which
dispatches to the manager) and the HTTP app (which is handed the manager), all in one
asyncio event loop.

On start-up, sessions left unfinished in the data directory (by a crash or a restart) are
resumed. SIGINT / SIGTERM stop the server cleanly; running sessions stay ``running`` on
disk and resume next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from protocol.errors import ConfigError
from protocol.security import is_loopback
from server.http.app import create_app
from server.rig.link import RigLink
from server.rig.server import RigServer
from server.sessions.manager import SessionManager
from server.settings import TOKEN_ENV, ServerSettings

log = logging.getLogger(__name__)

#: What ``serve`` hands a job: the bound addresses, and the manager of the sessions.
Job = Callable[[dict[str, Any], SessionManager], Awaitable[None]]


def parse_http(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--http expects HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(settings: ServerSettings, job: Job | None = None) -> None:
    """Serve until SIGINT/SIGTERM, or until ``job`` (started once both sides listen, with
    the bound addresses) returns: that is how ``xdream demo`` ends its run."""
    host, port = parse_http(settings.http)
    token = settings.secret_token
    if not is_loopback(f"tcp://{host}:{port}") and token is None:
        raise ConfigError(
            f"--http {settings.http} is reachable beyond this machine: give an access token "
            f"(--token-file FILE or ${TOKEN_ENV}; `xdream token FILE` makes one), or bind "
            "to 127.0.0.1"
        )
    link = RigLink(settings.zmq, settings.curve_secret, settings.curve_clients)
    manager = SessionManager(
        settings.data,
        link,
        settings.device,
        settings.weights_roots,
        settings.reference_roots,
        settings.max_sessions,
    )
    rig = RigServer(link, manager, settings.heartbeat_s)
    try:
        endpoint = link.bind()
        # What is loaded by now (modules, torch) lives as long as the server: keep it out
        # of the collector's full passes, which otherwise walk every object (100+ ms with
        # torch) in the middle of a message. Sessions come after: they end and are freed.
        gc.freeze()
        resumed = await manager.restore()
        http = uvicorn.Server(
            uvicorn.Config(
                create_app(manager, link.connected, token),
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                # Dashboards hold live streams open; do not wait for them to end on shutdown.
                timeout_graceful_shutdown=1,
            )
        )
        rig_task = asyncio.create_task(rig.run(), name="rig-server")
        http_task = asyncio.create_task(http.serve(), name="http")
        try:
            while not http.started:
                if http_task.done():  # e.g. the port is taken
                    await http_task
                    raise ConfigError(f"cannot serve HTTP on {settings.http}")
                await asyncio.sleep(0.02)
            bound_port = http.servers[0].sockets[0].getsockname()[1]
            addresses = {
                "zmq": endpoint,
                "http": f"http://{host}:{bound_port}",
                "data": str(settings.data.resolve()),
                "access": "token" if token is not None else "open",
                "device": manager.device,
                "resumed": resumed,
            }
            tasks: set[asyncio.Task[Any]] = {http_task, rig_task}  # uvicorn returns on signals
            if job is not None:
                tasks.add(asyncio.create_task(_run(job, addresses, manager), name="job"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failed job fails the command
        finally:
            http.should_exit = True
            rig_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rig_task
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await http_task
            await manager.close()
    finally:
        link.close()


async def _run(job: Job, addresses: dict[str, Any], manager: SessionManager) -> None:
    await job(addresses, manager)


async def announce(addresses: dict[str, Any], manager: SessionManager) -> None:
    """One JSON line on stdout once both sides listen (scripts and tests wait for it); the
    dashboard is at the ``http`` address. The token is never printed."""
    print(json.dumps({"event": "ready", **addresses}), flush=True)
    await asyncio.Event().wait()  # serve until a signal


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(settings: ServerSettings) -> int:
    configure_logging()
    asyncio.run(serve(settings, announce))
    return 0
