"""How big an HTTP request may be, enforced while the body arrives.

Every HTTP request is parsed on the server's one event loop, which also answers the rig's
ZeroMQ messages and heartbeats; JSON parsing and validation hold the interpreter for about
65 ms per MB, in a thread as much as on the loop. So bodies are kept small enough that the
largest parses in a few milliseconds (docs/RELIABILITY.md, "Large requests"), and the limit
is counted on the bytes that arrive, not on ``Content-Length`` alone, so a chunked body or
a body longer than declared is cut off at the limit too. A rig posts a large generation's
counts in several ``responses`` bodies; each is acknowledged on its own.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.errors import MessageTooLarge
from server.http.errors import error_response, status_of

#: Largest HTTP request body accepted, in bytes: a session of 1024 weighted channels, or
#: about 170 responses of 96 channels, fits.
MAX_BODY_BYTES = 64 << 10


def _too_large(detail: str) -> MessageTooLarge:
    return MessageTooLarge(
        f"request body {detail}; at most {MAX_BODY_BYTES} bytes (post responses in several bodies)"
    )


class BodyLimit:
    """ASGI middleware: reads each body up to :data:`MAX_BODY_BYTES` and answers 413 past it,
    without reading further; the application then reads the body from memory."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(_too_large(f"of {int(declared)} bytes"), scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(_too_large("longer than that"), scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, replay(bytes(body), receive), send)

    @staticmethod
    async def _refuse(exc: MessageTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(status_of(exc), exc.code, str(exc))
        response.headers["connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then waits on the real one (for the
    disconnect a streaming answer listens for)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
