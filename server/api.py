"""The REST API (FastAPI): sessions, their controls, HTTP response ingestion, images and data.

Errors are JSON ``{"code": ..., "message": ...}`` with the same codes as PROTOCOL.md, so a
recording program that posts spike counts over HTTP handles the same errors as a ZeroMQ
client. Everything that touches the HDF5 file runs on the session's I/O thread.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from protocol.codec import MAX_BUFFER_BYTES
from protocol.errors import (
    ChannelMismatch,
    ConfigError,
    LateResponse,
    SessionStateError,
    UnknownSession,
    UnknownStimulus,
    WeightsError,
    XDreamError,
)
from protocol.messages import Presented, Responses, ResponsesAck
from server.generators import available_generators
from server.optimizers import OPTIMIZERS
from server.session_config import SessionConfig
from server.sessions import SessionManager
from server.storage import SessionFile

Action = Literal["start", "pause", "resume", "stop"]

#: HTTP status per error (anything else deliberate: 400).
STATUS = {
    UnknownSession: 404,
    SessionStateError: 409,
    LateResponse: 409,
    UnknownStimulus: 422,
    ChannelMismatch: 422,
    ConfigError: 422,
    WeightsError: 422,
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _png(image: np.ndarray) -> Response:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")


def create_app(manager: SessionManager) -> FastAPI:
    """The FastAPI application for ``manager``'s sessions."""
    app = FastAPI(
        title="xdream-rig",
        version="0.1.0",
        description="Closed-loop image evolution for neurophysiology rigs.",
    )

    @app.exception_handler(XDreamError)
    async def _xdream_error(request: Request, exc: XDreamError) -> JSONResponse:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        return _error(status, type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return _error(422, "MalformedMessage", f"{where}: {first.get('msg')}")

    @app.middleware("http")
    async def _limit_size(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BUFFER_BYTES:
            return _error(413, "MessageTooLarge", f"{length} bytes; at most {MAX_BUFFER_BYTES}")
        return await call_next(request)

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "sessions": len(manager.sessions)}

    @app.get("/api/options")
    async def options() -> dict[str, Any]:
        """Generators (and whether each can be built now) and optimizers, for forms."""
        return {"generators": available_generators(), "optimizers": OPTIMIZERS.names()}

    @app.post("/api/sessions", status_code=201)
    async def create_session(config: SessionConfig) -> dict[str, Any]:
        session = await manager.create(config)
        return session.summary()

    @app.get("/api/sessions")
    async def list_sessions() -> dict[str, Any]:
        return {
            "sessions": [s.summary() for s in manager.sessions.values()],
            "past": await asyncio.to_thread(manager.past),
        }

    @app.get("/api/sessions/{session_id}")
    async def get_session(session_id: str) -> dict[str, Any]:
        session = manager.get(session_id)
        h = session.history
        return {
            **session.summary(),
            "config": session.config.model_dump(mode="json"),
            "history": {
                "max": h.maxima,
                "mean": h.means,
                "reference_mean": h.reference_means,
                "loop_latency_s": h.loop_latency_s,
            },
        }

    @app.post("/api/sessions/{session_id}/responses")
    async def post_responses(session_id: str, body: Responses) -> ResponsesAck:
        """Spike counts from recording software that speaks HTTP (same rules as ZeroMQ)."""
        return await manager.get(session_id).ingest_responses(body, "http", "http")

    @app.post("/api/sessions/{session_id}/presented")
    async def post_presented(session_id: str, body: Presented) -> dict[str, int]:
        return {"accepted": await manager.get(session_id).ingest_presented(body, "http", "http")}

    # Declared after .../responses and .../presented, which must match first.
    @app.post("/api/sessions/{session_id}/{action}")
    async def control(session_id: str, action: Action) -> dict[str, Any]:
        """Start, pause (after the generation in flight), resume or stop (abort) a session."""
        session = manager.get(session_id)
        await getattr(session, action)()
        return session.summary()

    @app.get("/api/sessions/{session_id}/generations/{generation}/images/{position}.png")
    async def image(session_id: str, generation: int, position: int) -> Response:
        session = manager.get(session_id)
        return _png(await session.read(lambda s: s.read_image(generation, position)))

    @app.get("/api/sessions/{session_id}/best.png")
    async def best(session_id: str) -> Response:
        found = await manager.get(session_id).read(SessionFile.best)
        if found is None:
            raise ConfigError(f"session {session_id} has no scored image yet")
        return _png(found[2])

    @app.get("/api/sessions/{session_id}/data")
    async def data(session_id: str) -> FileResponse:
        """The session's HDF5 file, copied between writes so the download is consistent."""
        session = manager.get(session_id)
        folder = Path(tempfile.mkdtemp(prefix="xdream-download-"))
        copy = folder / f"{session_id}.h5"

        def snapshot(store: SessionFile) -> None:
            if store.is_open:
                store.flush()
            shutil.copyfile(store.path, copy)

        await session.read(snapshot)
        return FileResponse(
            copy,
            media_type="application/x-hdf5",
            filename=copy.name,
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    return app
