"""Errors over HTTP: the same codes as over ZeroMQ (PROTOCOL.md, "Error codes"), so a
recording program that posts spike counts over HTTP handles the same errors as a ZeroMQ
client.

Every error answer is JSON ``{"code", "message"}``; errors about one setting of a new
session add ``"fields": {name: message}`` so the form can show each next to its field.
The HTTP status comes from :data:`STATUS`, one table for every route, and
:func:`documented` declares the same answers in ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.responses import Response

from protocol.errors import (
    ChannelMismatch,
    ConfigError,
    LateResponse,
    MessageTooLarge,
    NotFound,
    SessionLimit,
    SessionStateError,
    UnknownSession,
    UnknownStimulus,
    WeightsError,
    XDreamError,
)
from protocol.replies import MAX_ERROR_CHARS
from server.http.schemas import ErrorBody

#: HTTP status per error class; any other deliberate error is 400.
STATUS: dict[type[XDreamError], int] = {
    UnknownSession: 404,
    NotFound: 404,
    SessionStateError: 409,
    SessionLimit: 409,
    LateResponse: 409,
    UnknownStimulus: 422,
    ChannelMismatch: 422,
    ConfigError: 422,
    WeightsError: 422,
    MessageTooLarge: 413,
}
DEFAULT_STATUS = 400
#: Most fields an error answer names.
MAX_FIELDS = 50

#: What each status means in this API, for the OpenAPI description of a route.
MEANING = {
    400: "Another deliberate error",
    404: "UnknownSession (no such session) or NotFound (no such stored item)",
    409: "SessionStateError (not allowed in the session's state), SessionLimit (as many "
    "live sessions as the server may hold) or LateResponse",
    413: "MessageTooLarge: the request body exceeds the limit",
    422: "MalformedMessage (invalid request), ConfigError, WeightsError, UnknownStimulus "
    "or ChannelMismatch",
}


def status_of(exc: XDreamError) -> int:
    """The HTTP status of ``exc``: its own class's, else its nearest listed ancestor's."""
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), DEFAULT_STATUS)


def error_response(
    status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> JSONResponse:
    """An error answer; ``fields`` only when some setting is to blame. Texts are cut to
    :data:`~protocol.replies.MAX_ERROR_CHARS`, as over ZeroMQ, and at most
    :data:`MAX_FIELDS` fields are named: a huge request never gets a huge answer."""
    body: dict[str, Any] = {"code": code, "message": message[:MAX_ERROR_CHARS]}
    if fields:
        named = list(fields.items())[:MAX_FIELDS]
        body["fields"] = {name[:200]: text[:MAX_ERROR_CHARS] for name, text in named}
    return JSONResponse(body, status_code=status)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer ``statuses`` with an error body."""
    return {s: {"model": ErrorBody, "description": MEANING[s]} for s in statuses}


def field_errors(exc: RequestValidationError) -> dict[str, str]:
    """Messages per top-level field of the request body ("" for the body as a whole)."""
    fields: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        fields.setdefault(loc[0] if loc else "", message)
    return fields


async def on_xdream_error(request: Request, exc: XDreamError) -> Response:
    """A deliberate error: its code, message and (if it names one) the field to blame."""
    fields = {exc.field: str(exc)} if exc.field else None
    return error_response(status_of(exc), exc.code, str(exc), fields)


async def on_invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """A request FastAPI could not validate: MalformedMessage, naming the first problem in
    the message and every field's in ``fields``."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return error_response(
        422, "MalformedMessage", f"{where}: {first.get('msg')}", field_errors(exc)
    )


def install(app: FastAPI) -> None:
    """Answer errors as JSON error bodies."""
    app.exception_handler(XDreamError)(on_xdream_error)
    app.exception_handler(RequestValidationError)(on_invalid_request)
