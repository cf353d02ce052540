"""The operator's dashboard: one HTML page, one script and one style sheet, served as they
are by the API's own app (nothing to build, no front-end packages to fetch or pin).

The page reads the same REST API as any program and is pushed updates over the
server-sent-event stream ``/api/live`` (server/http/live.py).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
#: Revalidate on every load, so a server upgrade never leaves an old script in a browser.
NO_CACHE = {"Cache-Control": "no-cache"}


def mount(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` and its files under ``/static``."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=NO_CACHE)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
