"""What routes are given, declared once: ``def route(manager: Manager)`` instead of every
route closing over the objects ``create_app`` was called with, so routers are plain modules
that can be included in any app (and tested with a stand-in manager via
``app.dependency_overrides``).

``create_app`` stores the objects on ``app.state``; the functions here read them per request.
They are ``async`` because FastAPI runs a plain ``def`` dependency in a worker thread: a
hand-over per request that waits for the interpreter whenever the event loop is busy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Request

from server.sessions.manager import SessionManager

#: Lists the connected rig clients (``RigLink.connected``), as the live stream shows them.
ClientsFn = Callable[[], list[dict[str, Any]]]


async def get_manager(request: Request) -> SessionManager:
    """The server's sessions (shared with the ZeroMQ side)."""
    manager: SessionManager = request.app.state.manager
    return manager


async def get_clients(request: Request) -> ClientsFn:
    """The function that lists the connected rig clients."""
    clients: ClientsFn = request.app.state.clients
    return clients


Manager = Annotated[SessionManager, Depends(get_manager)]
Clients = Annotated[ClientsFn, Depends(get_clients)]
#: A session named in the path: one of this run's, or a past one's file in the data folder.
SessionId = Annotated[str, Path(description="the session's id, as listed by /api/sessions")]
