"""JSON bodies from clients that can only post forms: GNU Octave's ``webwrite`` form-encodes
every body it sends (``key=value&...``), so an Octave rig posts its JSON document as the one
form field ``json``. This middleware hands such a request on as that JSON document, so every
route takes it as it takes ``application/json`` (MATLAB's ``webwrite`` sends that directly).
"""

from __future__ import annotations

import urllib.parse

from starlette.types import ASGIApp, Receive, Scope, Send

from server.http.limits import replay

FORM = b"application/x-www-form-urlencoded"
#: The form field that carries the JSON document.
FIELD = "json"


class FormJson:
    """ASGI middleware: a POST whose form body is exactly one ``json`` field becomes a POST
    of that field's text as ``application/json``; anything else passes unchanged. Inside
    :class:`~server.http.limits.BodyLimit`, so the body it reads is already bounded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if (
            scope["type"] != "http" or scope.get("method") != "POST"
            or not headers.get(b"content-type", b"").startswith(FORM)
        ):  # fmt: skip
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        fields = urllib.parse.parse_qs(body.decode("ascii", "replace"), keep_blank_values=True)
        if list(fields) == [FIELD] and len(fields[FIELD]) == 1:
            body = bytearray(fields[FIELD][0].encode())
            headers[b"content-type"] = b"application/json"
            headers[b"content-length"] = str(len(body)).encode()
            scope = {**scope, "headers": list(headers.items())}
        await self.app(scope, replay(bytes(body), receive), send)
