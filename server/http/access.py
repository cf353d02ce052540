"""Who may use the HTTP side: anyone on this machine, or token holders when it is reachable
from the network.

The token is a shared secret set when the server starts (a file, or ``XDREAM_TOKEN``) and
never logged or printed. A program sends it as ``Authorization: Bearer <token>``; a browser
signs in once on ``/login`` and then carries it in an HttpOnly, SameSite=Strict cookie, so
pages, images, downloads and the live stream need nothing more, and other sites cannot
make the browser act on the server. Tokens never travel in URLs, where they would end up in
browser history and proxy logs.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from protocol.errors import ConfigError

COOKIE = "xdream_token"
#: Shorter tokens are refused: the token is all that guards the rig from the network.
MIN_TOKEN_CHARS = 16
LOGIN_PATH = "/login"
MAX_LOGIN_BYTES = 4096
FAILED_LOGIN_DELAY_S = 0.5


def create_token(path: str | Path) -> Path:
    """Write a random token to ``path``, readable by its owner only (never overwritten)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; remove it first to make a new token") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def _login_page(error: str = "") -> str:
    message = f'<p role="alert" class="error">{error}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xdream-rig: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}}
input,button{{font:inherit;padding:.4rem}}input{{width:100%;box-sizing:border-box}}
.error{{color:#b00020}}</style></head>
<body><main><h1>xdream-rig</h1>
<p>This server is reachable from the network. Enter its access token (the file given to
<code>xdream serve --token-file</code>).</p>{message}
<form method="post" action="{LOGIN_PATH}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<p><button type="submit">Sign in</button></p></form></main></body></html>"""


class TokenGuard:
    """ASGI middleware: every request but the sign-in page needs the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _valid(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    def allows(self, connection: HTTPConnection) -> bool:
        scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
        bearer = credentials.strip() if scheme.lower() == "bearer" else None
        return self._valid(bearer) or self._valid(connection.cookies.get(COOKIE))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # none today; refused without the token all the same
            if self.allows(HTTPConnection(scope)):
                await self.app(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        request = Request(scope, receive)
        if request.url.path == LOGIN_PATH:
            response = await self._login(request)
        elif self.allows(request):
            await self.app(scope, receive, send)
            return
        elif request.url.path.startswith("/api/"):
            response = JSONResponse(
                {"code": "Unauthorized", "message": "this server needs its access token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        else:
            response = RedirectResponse(LOGIN_PATH, status_code=303)
        await response(scope, receive, send)

    async def _login(self, request: Request) -> Response:
        if request.method != "POST":
            return HTMLResponse(_login_page())
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_LOGIN_BYTES:
            return HTMLResponse(_login_page("The sign-in form was malformed."), 400)
        body = await request.body()
        token = parse_qs(body.decode("utf-8", "replace")).get("token", [None])[0]
        if not self._valid(token):
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing
            return HTMLResponse(_login_page("That is not this server's token."), 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, str(token), httponly=True, samesite="strict")
        return response
