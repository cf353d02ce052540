"""Responses over HTTP, for recording software that speaks HTTP rather than ZeroMQ: the
same messages, checks and errors as the ZeroMQ side (PROTOCOL.md)."""

from __future__ import annotations

from fastapi import APIRouter

from protocol.messages import Presented, Responses, ResponsesAck
from server.http.deps import Manager, SessionId
from server.http.errors import documented
from server.http.schemas import Accepted

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["ingest"])

#: Unknown session; late or not allowed now; too large; malformed or not matching.
ERRORS = documented(404, 409, 413, 422)


@router.post("/responses", responses=ERRORS)
async def post_responses(manager: Manager, session_id: SessionId, body: Responses) -> ResponsesAck:
    """Spike counts per presentation, acknowledged once they are on disk (repeats of
    counts already taken are counted as duplicates, not stored twice)."""
    return await manager.ingest_responses(session_id, body, "http", "http")


@router.post("/presented", response_model=Accepted, responses=ERRORS)
async def post_presented(
    manager: Manager, session_id: SessionId, body: Presented
) -> dict[str, int]:
    """What was shown (or aborted), with onsets in the rig's clock; answers how many of
    the presentations were new and how many were repeats."""
    new = await manager.ingest_presented(session_id, body, "http", "http")
    return {"accepted": new, "duplicates": len(body.presentations) - new}
