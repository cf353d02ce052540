"""HTTP access: open on loopback; bound beyond it, every API and dashboard request needs the
token (a Bearer header, or the cookie set by signing in), and the token is never logged."""

from __future__ import annotations

import http.client
import stat
import subprocess
import urllib.parse

import pytest

from protocol.errors import ConfigError
from server.http.access import COOKIE, create_token
from server.settings import TOKEN_ENV, ServerSettings, load_settings
from xdream.testing.servers import free_port, running_server, xdream


def test_token_comes_from_a_file_or_the_environment_and_must_be_long(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("XDREAM_TOKEN_FILE", raising=False)
    assert ServerSettings().secret_token is None
    path = create_token(tmp_path / "keys" / "token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = load_settings(token_file=str(path)).secret_token
    assert token is not None and len(token) >= 32
    with pytest.raises(ConfigError, match="exists"):
        create_token(path)  # never overwritten
    monkeypatch.setenv(TOKEN_ENV, "x" * 20)
    assert ServerSettings().secret_token == "x" * 20
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(ConfigError, match="at least 16"):
        load_settings()
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match="cannot read") as error:
        load_settings(token_file=str(missing))
    assert str(missing) in str(error.value)


def request(port: int, method: str, path: str, headers=None, body: str | None = None):
    """(status, headers, body) without following redirects."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        streaming = reply.getheader("content-type", "").startswith("text/event-stream")
        data = reply.readline() if streaming else reply.read()  # a stream never ends
        return reply.status, dict(reply.getheaders()), data
    finally:
        connection.close()


@pytest.mark.slow
def test_beyond_loopback_every_request_needs_the_token(tmp_path):
    token_file = create_token(tmp_path / "token")
    token = token_file.read_text().strip()
    with running_server(
        tmp_path / "data", http_host="0.0.0.0", options=("--token-file", str(token_file))
    ) as server:
        port = server.http_port
        assert server.ready["access"] == "token"
        paths = [
            ("GET", "/"),
            ("GET", "/static/app.js"),
            ("GET", "/api/health"),
            ("GET", "/api/sessions"),
            ("GET", "/api/options"),
            ("GET", "/api/live"),
            ("GET", "/openapi.json"),
            ("POST", "/api/sessions"),
            ("POST", "/api/sessions/x/start"),
            ("POST", "/api/sessions/x/responses"),
        ]
        wrong = {"Authorization": "Bearer " + "y" * len(token)}
        for method, path in paths:
            for headers in ({}, wrong, {"Cookie": f"{COOKIE}=nope"}):
                status, got, _ = request(port, method, path, headers)
                if path.startswith("/api/"):
                    assert status == 401, (method, path, headers)
                else:  # pages send the browser to sign in
                    assert status == 303 and got["location"] == "/login", (method, path)
        bearer = {"Authorization": f"Bearer {token}"}
        assert request(port, "GET", "/api/sessions", bearer)[0] == 200
        assert request(port, "GET", "/api/live", bearer)[0] == 200
        assert request(port, "GET", "/", bearer)[0] == 200

        # A browser signs in once; the cookie then opens pages, the API and the stream.
        assert request(port, "GET", "/login")[0] == 200
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, page = request(port, "POST", "/login", form, "token=guess-guess-guess")
        assert status == 401 and b"not this server's token" in page
        status, _, page = request(port, "POST", "/login", form, "token=" + "x" * 5000)
        assert status == 400 and b"malformed" in page  # bodies are bounded before reading
        body = urllib.parse.urlencode({"token": token})
        status, got, _ = request(port, "POST", "/login", form, body)
        assert status == 303 and got["location"] == "/"
        cookie = got["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        jar = {"Cookie": cookie.split(";")[0]}
        for path in ("/", "/static/app.js", "/api/sessions", "/api/live"):
            assert request(port, "GET", path, jar)[0] == 200, path
    log = (tmp_path / f"server-{server.zmq_port}.log").read_text()
    assert token not in log and token not in str(server.ready)


@pytest.mark.slow
def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path):
    process = xdream(
        "serve", "--zmq", f"tcp://127.0.0.1:{free_port()}", "--http", f"0.0.0.0:{free_port()}",
        "--data", str(tmp_path / "data"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={TOKEN_ENV: ""},
    )  # fmt: skip
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == ""
    assert "access token" in err and "xdream token" in err


@pytest.mark.slow
def test_loopback_needs_no_token(tmp_path):
    with running_server(tmp_path / "data") as server:
        assert server.ready["access"] == "open"
        assert server.api("GET", "/api/sessions")[0] == 200
        status, _, page = request(server.http_port, "GET", "/")
        assert status == 200 and b"New session" in page
