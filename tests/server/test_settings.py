"""The server's one settings class: XDREAM_* variables, overridden by what the command line
gives, each bad value a one-line error naming the setting. (The token's rules are tested
with the access token in tests/server/http/test_access.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import ConfigError
from server.settings import ServerSettings, load_settings
from xdream.main import build_parser


@pytest.fixture(autouse=True)
def no_xdream_variables(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("XDREAM_"):
            monkeypatch.delenv(name)


def test_defaults_are_those_the_command_documents():
    settings = load_settings()
    assert settings.zmq == "tcp://127.0.0.1:5555" and settings.http == "127.0.0.1:8000"
    assert settings.data == Path("data") and settings.heartbeat_s == 1.0
    assert settings.device == "auto" and settings.token is None


def test_the_environment_sets_and_the_command_line_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("XDREAM_DATA", str(tmp_path / "env-data"))
    monkeypatch.setenv("XDREAM_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("XDREAM_HTTP", "127.0.0.1:9001")
    settings = load_settings(http=None, data=str(tmp_path / "cli-data"))
    assert settings.data == tmp_path / "cli-data"  # given: wins over the environment
    assert settings.heartbeat_s == 0.5 and settings.http == "127.0.0.1:9001"  # not given


def test_xdream_serve_passes_only_what_it_was_given():
    args = build_parser().parse_args(["serve", "--data", "d"])
    assert (args.data, args.http, args.zmq, args.heartbeat, args.device) == (
        "d", None, None, None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("given", "named"),
    [({"heartbeat_s": "-1"}, "heartbeat_s"), ({"heartbeat_s": "often"}, "heartbeat_s"),
     ({"colour": "red"}, "colour")],
)  # fmt: skip
def test_a_bad_setting_is_one_error_naming_it(given, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(**given)


def test_a_bad_variable_is_named_too(monkeypatch):
    monkeypatch.setenv("XDREAM_HEARTBEAT_S", "never")
    with pytest.raises(ConfigError, match="heartbeat_s"):
        load_settings()


def test_the_token_is_never_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("XDREAM_TOKEN", "s" * 24)
    settings = ServerSettings()
    assert settings.secret_token == "s" * 24
    assert "s" * 24 not in repr(settings) and "s" * 24 not in str(settings.model_dump())


def test_other_xdream_variables_are_not_settings(monkeypatch):
    monkeypatch.setenv("XDREAM_CHROMIUM", "/usr/bin/chromium")  # the browser test's, say
    assert load_settings().data == Path("data")


def test_an_empty_token_file_is_an_error_not_an_open_server(tmp_path, monkeypatch):
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="holds 0 characters"):
        load_settings(token_file=str(empty))
    monkeypatch.setenv("XDREAM_TOKEN", "")  # an unset-looking variable: no token
    assert load_settings().token is None


def test_the_demo_server_reads_no_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XDREAM_CURVE_SECRET", str(tmp_path / "server.key_secret"))
    monkeypatch.setenv("XDREAM_DATA", str(tmp_path / "operator-data"))
    settings = ServerSettings.apart_from_environment(data=tmp_path / "demo")
    assert settings.data == tmp_path / "demo" and settings.curve_secret is None
    assert settings.heartbeat_s == 1.0 and settings.token is None
