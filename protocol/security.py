"""CURVE keys for rigs beyond loopback: who may connect, and encryption on the wire.

ZeroMQ's CURVE (``zmq.auth``) authenticates both ends with key pairs and encrypts every
frame. The server holds a secret key and a folder of the public keys it accepts; each
client holds its own key pair and the server's public key. Key files are the ones
``zmq.auth.create_certificates`` writes (``NAME.key`` public, ``NAME.key_secret`` secret).
See README, "Rigs on a lab network".
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlparse

import zmq
import zmq.auth

from protocol.errors import ConfigError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(endpoint: str) -> bool:
    """True for ``tcp://127.0.0.1:5555``, ``tcp://localhost:*``, ``ipc://`` and ``inproc://``."""
    parsed = urlparse(endpoint)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    host = (parsed.hostname or "").strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_keys(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write a key pair ``folder/NAME.key`` and ``folder/NAME.key_secret``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(folder, name)
    return Path(public), Path(secret)


def _load(path: str | Path, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read CURVE key file {path}: {exc}") from None
    if secret and secret_key is None:
        raise ConfigError(f"{path} holds no secret key (use the NAME.key_secret file)")
    return public, secret_key


def configure_server(socket: zmq.Socket, secret_key_file: str | Path) -> None:
    """Make ``socket`` a CURVE server (before bind)."""
    public, secret = _load(secret_key_file, secret=True)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def configure_client(
    socket: zmq.Socket, server_key_file: str | Path, client_secret_file: str | Path
) -> None:
    """Make ``socket`` a CURVE client of the server whose public key is in the file."""
    server_public, _ = _load(server_key_file, secret=False)
    public, secret = _load(client_secret_file, secret=True)
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret
