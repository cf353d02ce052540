"""A presenter over HTTP alone, for rigs without ZeroMQ (MATLAB, MonkeyLogic): wait for the
next block, fetch its images, then post ``presented`` and ``responses`` as any recording
software does (routes/ingest.py). PROTOCOL.md, section 10; the long poll is in
``server/sessions/polling.py``."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from protocol.errors import NotFound
from protocol.messages import Generation
from server.http.deps import Manager, SessionId
from server.http.errors import documented
from server.http.images import binary, respond
from server.sessions.polling import MAX_WAIT_S, block_key, next_block

router = APIRouter(tags=["rig"])


@router.get("/api/rig/{rig}/next", responses={204: {"description": "no block came"}})
async def wait_for_block(
    manager: Manager,
    rig: str,
    after: Annotated[str | None, Query(max_length=300)] = None,
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 20.0,
) -> Any:
    """The next block in flight for the presenter of rig ``rig`` (sessions of that rig or of
    none) other than the one named ``after`` (a block's ``key``), acknowledged by this
    answer; waits up to ``wait_s`` for one, then answers 204. Each stimulus names its
    image's URLs: PNG, and raw bytes (height x width x 3, row-major, ``uint8``)."""
    found = await next_block(manager, rig, after, wait_s)
    if found is None:
        return Response(status_code=204)
    session, message = found
    content = message.content
    assert isinstance(content, Generation)
    base = f"/api/sessions/{session.id}/stimuli"
    return {
        "session": session.id,
        "generation": content.generation,
        "block": content.block,
        "key": block_key(session.id, content.generation, content.block),
        "params": content.params.model_dump(mode="json"),
        "stimuli": [
            {"stimulus_id": s.stimulus_id, "kind": s.kind, "repeats": s.repeats,
             "shape": list(message.buffers[s.buffer].shape),
             "png": f"{base}/{s.stimulus_id}.png", "raw": f"{base}/{s.stimulus_id}.raw"}
            for s in content.stimuli
        ],
    }  # fmt: skip


def _in_flight(manager: Manager, session_id: str, stimulus_id: str) -> np.ndarray:
    """The image of ``stimulus_id`` of the session's generation in flight (NotFound else:
    stored generations' images are under .../generations/)."""
    rnd = manager.get(session_id).round
    image = None if rnd is None else rnd.image(stimulus_id)
    if image is None:
        raise NotFound(f"stimulus {stimulus_id} is not in the generation in flight")
    return image


@router.get(
    "/api/sessions/{session_id}/stimuli/{stimulus_id}.png",
    response_class=Response,
    responses={**binary("image/png"), **documented(404, 409)},
)
async def stimulus_png(manager: Manager, session_id: SessionId, stimulus_id: str) -> Response:
    """A stimulus of the generation in flight, as a lossless PNG."""
    return await respond(_in_flight(manager, session_id, stimulus_id))


@router.get(
    "/api/sessions/{session_id}/stimuli/{stimulus_id}.raw",
    response_class=Response,
    responses={**binary("application/octet-stream"), **documented(404, 409)},
)
async def stimulus_raw(manager: Manager, session_id: SessionId, stimulus_id: str) -> Response:
    """A stimulus of the generation in flight as raw bytes: height x width x channels,
    row-major ``uint8`` (its shape is in the block), the bytes a ZeroMQ frame holds."""
    image = _in_flight(manager, session_id, stimulus_id)
    return Response(np.ascontiguousarray(image).tobytes(), media_type="application/octet-stream",
                    headers={"Cache-Control": "no-store"})  # fmt: skip
