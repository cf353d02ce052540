"""``xdream serve``: the ZeroMQ rig server and the HTTP API in one asyncio event loop.

Both sides share one :class:`~server.sessions.manager.SessionManager`. On start-up, sessions left
unfinished in the data directory (by a crash or a restart) are resumed. SIGINT / SIGTERM
stop the server cleanly; running sessions stay ``running`` on disk and resume next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from protocol.errors import ConfigError
from protocol.security import is_loopback
from server.http.access import TOKEN_ENV
from server.http.app import create_app
from server.rig.server import RigServer
from server.sessions.manager import SessionManager

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    zmq: str = "tcp://127.0.0.1:5555"
    http: str = "127.0.0.1:8000"
    data: str = "data"
    heartbeat_s: float = 1.0
    #: auto, cpu, cuda or cuda:N: where sessions run unless their config names a device.
    device: str = "auto"
    curve_secret: str | None = None
    curve_clients: str | None = None
    #: The HTTP access token (see server/access.py); required when ``http`` is not loopback.
    token: str | None = dataclasses.field(default=None, repr=False)


def parse_http(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--http expects HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(
    config: ServeConfig,
    job: Callable[[dict[str, Any], SessionManager], Awaitable[None]] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, or until ``job`` (started once both sides listen, with
    the bound addresses) returns: that is how ``xdream demo`` ends its run."""
    host, port = parse_http(config.http)
    if not is_loopback(f"tcp://{host}:{port}") and config.token is None:
        raise ConfigError(
            f"--http {config.http} is reachable beyond this machine: give an access token "
            f"(--token-file FILE or ${TOKEN_ENV}; `xdream token FILE` makes one), or bind "
            "to 127.0.0.1"
        )
    rig = RigServer(
        config.zmq,
        config.heartbeat_s,
        curve_secret=config.curve_secret,
        curve_clients=config.curve_clients,
    )
    manager = SessionManager(Path(config.data), rig, config.device)
    rig.manager = manager
    endpoint = rig.bind()
    resumed = await manager.restore()
    app = create_app(manager, rig.connected, config.token)
    http = uvicorn.Server(
        uvicorn.Config(
            app,
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
                raise ConfigError(f"cannot serve HTTP on {config.http}")
            await asyncio.sleep(0.02)
        bound_port = http.servers[0].sockets[0].getsockname()[1]
        addresses = {
            "zmq": endpoint,
            "http": f"http://{host}:{bound_port}",
            "data": str(Path(config.data).resolve()),
            "access": "token" if config.token is not None else "open",
            "device": manager.device,
            "resumed": resumed,
        }
        tasks = {http_task, rig_task}  # uvicorn returns on SIGINT / SIGTERM
        if job is not None:
            tasks.add(asyncio.create_task(job(addresses, manager), name="job"))
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
        rig.close()


async def announce(addresses: dict[str, Any], manager: SessionManager) -> None:
    """One JSON line on stdout once both sides listen (scripts and tests wait for it); the
    dashboard is at the ``http`` address. The token is never printed."""
    print(json.dumps({"event": "ready", **addresses}), flush=True)
    await asyncio.Event().wait()  # serve until a signal


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(config: ServeConfig) -> int:
    configure_logging()
    asyncio.run(serve(config, announce))
    return 0
