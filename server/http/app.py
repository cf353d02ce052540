"""The HTTP side (FastAPI), assembled: one router per resource (``server/http/routes``), the
error answers (``errors.py``), the access guard (``access.py``) and the dashboard.

Routes find the session manager and the client list through dependencies (``deps.py``)
that read ``app.state``, so this module only wires; what each route answers is declared in
``schemas.py`` and shows in ``/openapi.json``.
"""

from __future__ import annotations

from fastapi import FastAPI

import server
from server.http import dashboard, errors
from server.http.access import TokenGuard
from server.http.deps import ClientsFn
from server.http.form_json import FormJson
from server.http.limits import BodyLimit
from server.http.routes import files, ingest, live, rig, sessions, system
from server.sessions.manager import SessionManager


def create_app(
    manager: SessionManager,
    clients: ClientsFn = list,
    token: str | None = None,
) -> FastAPI:
    """The FastAPI application for ``manager``'s sessions; ``clients`` lists the connected
    rig clients; with a ``token`` every request but the sign-in page needs it."""
    app = FastAPI(
        title="xdream-rig",
        version=server.__version__,
        description="Closed-loop image evolution for neurophysiology rigs.",
    )
    app.state.manager = manager
    app.state.clients = clients
    if token is not None:
        app.add_middleware(TokenGuard, token=token)
    errors.install(app)
    app.add_middleware(FormJson)  # Octave's form-encoded JSON, as JSON
    app.add_middleware(BodyLimit)  # outside the guard: an oversized body is 413 unread
    # ingest before sessions: its .../responses and .../presented must match before the
    # control route .../{action} does.
    for module in (system, ingest, sessions, files, live, rig):
        app.include_router(module.router)
    dashboard.mount(app)
    return app
