"""Sessions: create them, list them (this run's and past ones), read one, and control it.

Summaries are built by the session layer (``Session.summary()``, shared with the live
stream); the response models check and document them, and ``exclude_unset`` keeps each
answer's keys exactly those the session layer gave.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from server.http.deps import Manager, SessionId
from server.http.errors import documented
from server.http.schemas import (
    SessionAlarm,
    SessionDetail,
    SessionList,
    SessionNote,
    SessionSummary,
)
from server.sessions.config import SessionConfig
from server.sessions.replay import MAX_NOTE

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

Action = Literal["start", "pause", "resume", "stop"]


@router.post(
    "",
    status_code=201,
    response_model=SessionSummary,
    response_model_exclude_unset=True,
    responses=documented(409, 413, 422),
)
async def create_session(manager: Manager, config: SessionConfig) -> dict[str, Any]:
    """A new session, in state ``created``: its generator is built, nothing is shown yet.
    Refused (409 SessionLimit) while the server holds as many live sessions as it may."""
    session = await manager.create(config)
    return session.summary()


@router.get("", response_model=SessionList, response_model_exclude_unset=True)
async def list_sessions(manager: Manager) -> dict[str, Any]:
    """This run's live sessions, and the other session files in the data folder (ended in
    this run or an earlier one, newest first)."""
    return {
        "sessions": [s.summary() for s in manager.sessions.values()],
        "past": await asyncio.to_thread(manager.past),  # opens every file: off the loop
    }


@router.get(
    "/{session_id}",
    response_model=SessionDetail,
    response_model_exclude_unset=True,
    responses=documented(404, 422),
)
async def get_session(manager: Manager, session_id: SessionId) -> dict[str, Any]:
    """A session of this run or a past one: summary, config and per-generation history."""
    session = await manager.lookup(session_id)
    return {
        **session.summary(),
        "config": session.config.model_dump(mode="json"),
        "history": session.history.as_json(),
        **(
            {"thread_histories": [h.as_json() for h in session.histories]}
            if len(session.histories) > 1
            else {}
        ),
        "warnings": list(session.warnings),
        "alarm_log": session.alarms.as_json(),
        "notes": session.notes,
    }


@router.post(
    "/{session_id}/alarms/{alarm_id}/acknowledge",
    response_model=SessionAlarm,
    responses=documented(404, 409, 422),
)
async def acknowledge_alarm(
    manager: Manager, session_id: SessionId, alarm_id: Annotated[int, Path(ge=1)]
) -> dict[str, Any]:
    """An operator has seen this alarm: the page stops sounding it. It stays active (and
    shown) until its cause is gone; the acknowledgement is stored with the session."""
    return manager.get(session_id).acknowledge(alarm_id)


@router.post(
    "/{session_id}/archive",
    status_code=204,
    response_class=Response,
    responses=documented(404, 409, 422),
)
async def archive_session(manager: Manager, session_id: SessionId) -> Response:
    """Move an ended (or damaged) session's files to the data folder's ``archive/``, out of
    the list; moving them back lists the session again. A live session: stop it first."""
    await manager.archive(session_id)
    return Response(status_code=204)


class NewNote(BaseModel):
    """An operator's note: free text, stored with the time and the generation."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(min_length=1, max_length=MAX_NOTE)]


@router.post(
    "/{session_id}/notes",
    status_code=201,
    response_model=SessionNote,
    responses=documented(404, 409, 422),
)
async def add_note(manager: Manager, session_id: SessionId, body: NewNote) -> dict[str, Any]:
    """Keep a timestamped note in a live session's file ("unit lost its isolation at
    generation 40"); answered once it is on disk. An ended session takes none (409)."""
    return await manager.get(session_id).add_note(body.text)


# Declared after the routes above, which it would shadow.
# Matches any POST /api/sessions/{id}/{word}: create_app includes the ingest router first,
# so .../responses and .../presented reach their own routes.
@router.post(
    "/{session_id}/{action}",
    response_model=SessionSummary,
    response_model_exclude_unset=True,
    responses=documented(404, 409, 422),
)
async def control(manager: Manager, session_id: SessionId, action: Action) -> dict[str, Any]:
    """Start, pause (after the generation in flight), resume or stop (abort) a session."""
    session = manager.get(session_id)
    await getattr(session, action)()
    return session.summary()
