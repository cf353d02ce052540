"""The live stream the dashboard listens to (the machinery is in ``server/http/live.py``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from server.http import live
from server.http.deps import Clients, Manager
from server.http.errors import documented

router = APIRouter(prefix="/api", tags=["live"])


@router.get(
    "/live",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **documented(404, 422)},
)
async def live_updates(
    manager: Manager, clients: Clients, session: str | None = None
) -> StreamingResponse:
    """Server-sent events: the live sessions, the connected clients and, with ``session``
    (one of this run's, live or ended), that session's progress; pushed on every change."""
    if session is not None:
        manager.watched(session)  # UnknownSession now, not once the stream has begun
    view = live.View(manager, clients, session)
    return StreamingResponse(
        live.stream(manager.changes, view.snapshot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
