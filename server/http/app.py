"""The HTTP side (FastAPI): sessions, their controls, HTTP response ingestion, images, data,
the live stream and the dashboard.

Errors are JSON ``{"code": ..., "message": ...}`` with the same codes as PROTOCOL.md, so a
recording program that posts spike counts over HTTP handles the same errors as a ZeroMQ
client; errors about one setting of a new session add ``"fields": {name: message}`` for the
form. Everything that touches the HDF5 file runs on the session's I/O thread, and images
are encoded off the event loop.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
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
from server.engine.generators import available_generators, default_generator
from server.engine.optimizers import DEFAULT_OPTIMIZER, OPTIMIZERS
from server.engine.pictures import montage
from server.http import dashboard, live
from server.http.access import TokenGuard
from server.sessions.config import SessionConfig
from server.sessions.manager import SessionManager
from server.storage.session_file import SessionFile

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


#: Images finished generations are immutable: browsers may keep them.
IMAGE_CACHE = "private, max-age=86400"
#: Thumbnails are JPEG: a third of PNG's encoding time, for a picture only to look at.
THUMBNAIL_QUALITY = 90


def _error(
    status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JSONResponse(body, status_code=status)


def _encode(image: np.ndarray | Any, size: int | None = None, kind: str = "PNG") -> bytes:
    """PNG (lossless) or JPEG bytes of a uint8 image array or a PIL image, scaled to
    ``size`` px if given."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if size is not None and size != picture.width:
        picture = picture.resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format=kind, **({"quality": THUMBNAIL_QUALITY} if kind == "JPEG" else {}))
    return buffer.getvalue()


def _image_response(data: bytes, kind: str = "png", cache: bool = False) -> Response:
    headers = {"Cache-Control": IMAGE_CACHE} if cache else {"Cache-Control": "no-store"}
    return Response(data, media_type=f"image/{kind}", headers=headers)


def _field_errors(exc: RequestValidationError) -> dict[str, str]:
    """Messages per top-level field of the request body ("" for the body as a whole)."""
    fields: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        fields.setdefault(loc[0] if loc else "", message)
    return fields


def _options() -> dict[str, Any]:
    """What the new-session form offers: generators (and whether their weights are
    installed), optimizers with what each is, and the defaults of every setting."""
    default = default_generator()
    return {
        "generators": [
            {"name": name, "available": ok, "default": name == default}
            for name, ok in available_generators().items()
        ],
        "optimizers": [
            {
                "name": name,
                "description": (OPTIMIZERS.get(name).__doc__ or "").strip().splitlines()[0],
                "default": name == DEFAULT_OPTIMIZER,
            }
            for name in OPTIMIZERS.names()
        ],
        "defaults": SessionConfig().model_dump(mode="json"),
    }


def create_app(
    manager: SessionManager,
    clients: Callable[[], list[dict[str, Any]]] = list,
    token: str | None = None,
) -> FastAPI:
    """The FastAPI application for ``manager``'s sessions; ``clients`` lists the connected
    rig clients; with a ``token`` every request but the sign-in page needs it."""
    app = FastAPI(
        title="xdream-rig",
        version="0.1.0",
        description="Closed-loop image evolution for neurophysiology rigs.",
    )
    if token is not None:
        app.add_middleware(TokenGuard, token=token)

    @app.exception_handler(XDreamError)
    async def _xdream_error(request: Request, exc: XDreamError) -> JSONResponse:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        fields = {exc.field: str(exc)} if exc.field else None
        return _error(status, type(exc).__name__, str(exc), fields)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return _error(422, "MalformedMessage", f"{where}: {first.get('msg')}", _field_errors(exc))

    @app.middleware("http")
    async def _limit_size(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BUFFER_BYTES:
            return _error(413, "MessageTooLarge", f"{length} bytes; at most {MAX_BUFFER_BYTES}")
        return await call_next(request)

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "sessions": len(manager.sessions), "device": manager.device}

    @app.get("/api/options")
    async def options() -> dict[str, Any]:
        """Generators (and whether each can be built now), optimizers and defaults, for forms."""
        return await asyncio.to_thread(_options)

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
        """A session of this run or a past one: summary, config and per-generation history."""
        session = await manager.lookup(session_id)
        return {
            **session.summary(),
            "config": session.config.model_dump(mode="json"),
            "history": session.history.as_json(),
            "warnings": list(session.warnings),
        }

    @app.get("/api/live")
    async def live_updates(session: str | None = None) -> StreamingResponse:
        """Server-sent events: the sessions, the connected clients and, with ``session``,
        that session's progress; pushed on every change (see server/live.py)."""
        watched = manager.get(session) if session is not None else None
        view = live.View(manager, clients, watched)
        return StreamingResponse(
            live.stream(manager.changes, view.snapshot),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

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
        """An image exactly as the generator made it (lossless)."""
        found = await manager.read(session_id, lambda s: s.read_image(generation, position))
        return _image_response(await asyncio.to_thread(_encode, found), cache=True)

    @app.get("/api/sessions/{session_id}/generations/{generation}/thumbnails/{position}.jpg")
    async def thumbnail(
        session_id: str,
        generation: int,
        position: int,
        size: int = Query(112, ge=16, le=1024, description="side in px"),
    ) -> Response:
        """A small JPEG of an image, for overviews such as the dashboard's."""
        found = await manager.read(session_id, lambda s: s.read_image(generation, position))
        data = await asyncio.to_thread(_encode, found, size, "JPEG")
        return _image_response(data, "jpeg", cache=True)

    @app.get("/api/sessions/{session_id}/best.png")
    async def best(session_id: str) -> Response:
        """The best-scored image so far."""
        found = await manager.read(session_id, SessionFile.best)
        if found is None:
            raise ConfigError(f"session {session_id} has no scored image yet")
        return _image_response(await asyncio.to_thread(_encode, found[2]))

    @app.get("/api/sessions/{session_id}/montage.png")
    async def montage_png(session_id: str) -> Response:
        """The best image of every generation, captioned with generation and score."""
        rows = await manager.read(session_id, SessionFile.best_per_generation)
        if not rows:
            raise ConfigError(f"session {session_id} has no scored image yet")
        labels = [f"gen {g}: {score:.1f}" for g, score, _ in rows]

        def encode() -> bytes:
            return _encode(montage([image for _, _, image in rows], labels))

        return _image_response(await asyncio.to_thread(encode))

    @app.get("/api/sessions/{session_id}/data")
    async def data(session_id: str) -> FileResponse:
        """The session's HDF5 file, copied between writes so the download is consistent."""
        folder = Path(tempfile.mkdtemp(prefix="xdream-download-"))
        copy = folder / f"{session_id}.h5"

        def snapshot(store: SessionFile) -> None:
            if store.is_open:
                store.flush()
            shutil.copyfile(store.path, copy)

        try:
            await manager.read(session_id, snapshot)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(
            copy,
            media_type="application/x-hdf5",
            filename=copy.name,
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    dashboard.mount(app)
    return app
