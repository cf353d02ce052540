"""The server's settings: one class, read from ``XDREAM_*`` environment variables and
overridden by what ``xdream serve`` is given on its command line.

Every variable is the field's name in capitals after ``XDREAM_``: ``XDREAM_DATA``,
``XDREAM_ZMQ``, ``XDREAM_HTTP``, ``XDREAM_DEVICE``, ``XDREAM_HEARTBEAT_S``,
``XDREAM_WEIGHTS_ROOTS``, ``XDREAM_REFERENCE_ROOTS`` (JSON lists),
``XDREAM_CURVE_SECRET``, ``XDREAM_CURVE_CLIENTS``, ``XDREAM_TOKEN_FILE`` and
``XDREAM_TOKEN`` (the HTTP access token itself; a token file wins over it). The token
is never printed: it is a secret string, masked in ``repr`` and logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.errors import ConfigError
from server.engine.device import DEVICE_PATTERN
from server.http.access import MIN_TOKEN_CHARS

#: The environment variable that holds the access token.
TOKEN_ENV = "XDREAM_TOKEN"


class ServerSettings(BaseSettings):
    """Where ``xdream serve`` listens, stores and computes, and who may use it."""

    model_config = SettingsConfigDict(env_prefix="XDREAM_", extra="forbid")

    zmq: str = "tcp://127.0.0.1:5555"
    http: str = "127.0.0.1:8000"
    data: Path = Path("data")
    heartbeat_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    #: Most sessions held live (created, running or paused) at once: each holds its
    #: optimizer and images in memory. Sessions found unfinished at start-up always resume.
    max_sessions: Annotated[int, Field(ge=1, le=1000)] = 8
    #: auto, cpu, cuda or cuda:N: where sessions run unless their config names a device.
    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] = "auto"
    #: The only folders a session's ``weights`` may name (default: the weights folder,
    #: $XDREAM_WEIGHTS_DIR or the per-user one) and its ``reference_folder`` (default:
    #: DATA/references). As variables: JSON lists, e.g. XDREAM_REFERENCE_ROOTS='["/photos"]'.
    weights_roots: list[Path] = []
    reference_roots: list[Path] = []
    curve_secret: Path | None = None
    curve_clients: Path | None = None
    token_file: Path | None = None
    #: The HTTP access token; required when ``http`` is not loopback (server/http/access.py).
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _read_token(self) -> ServerSettings:
        source = f"${TOKEN_ENV}"
        if self.token_file is not None:
            try:
                text = self.token_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the token file {self.token_file}: {exc.strerror}"
                ) from None
            self.token, source = SecretStr(text.strip()), f"token file {self.token_file}"
        if self.token is not None:
            token = self.token.get_secret_value().strip()
            if not token and self.token_file is None:  # XDREAM_TOKEN="" means no token
                self.token = None
            elif len(token) < MIN_TOKEN_CHARS:  # an empty file is a mistake, not "open"
                raise ConfigError(
                    f"the {source} holds {len(token)} characters; use at least "
                    f"{MIN_TOKEN_CHARS} (`xdream token FILE` writes a random one)"
                )
            else:
                self.token = SecretStr(token)
        return self

    @classmethod
    def apart_from_environment(cls, **values: Any) -> ServerSettings:
        """Settings from ``values`` and the defaults only, for a server that is not the
        operator's (``xdream demo``): a container's XDREAM_CURVE_* or token must not lock
        out the demo's own simulator. No token, so nothing is left to validate."""
        return cls.model_construct(**values)

    @property
    def secret_token(self) -> str | None:
        """The token as text, for the HTTP guard only."""
        return None if self.token is None else self.token.get_secret_value()


def load_settings(**given: object) -> ServerSettings:
    """The settings from the environment, with ``given`` values (None: not given) on top."""
    try:
        return ServerSettings(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:  # one line for the command line, naming the setting
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {message}" if where else message) from None
