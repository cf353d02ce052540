"""Rigs beyond loopback: the server insists on CURVE, and only authorised keys get in."""

from __future__ import annotations

import pytest

from protocol.errors import ConfigError
from protocol.messages import Role
from protocol.security import configure_client, create_keys, is_loopback
from rig_clients.connection import Connection, ServerUnavailable
from server.rig.link import RigLink
from xdream.testing.servers import running_server


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://localhost:*", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/x", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://10.1.2.3:5555", False),
    ],
)
def test_loopback_detection(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_binding_beyond_loopback_needs_keys(tmp_path):
    with pytest.raises(ConfigError, match="CURVE"):
        RigLink("tcp://0.0.0.0:5555")
    with pytest.raises(ConfigError, match="cannot read CURVE key"):
        server = RigLink("tcp://0.0.0.0:0", curve_secret=tmp_path / "none", curve_clients=tmp_path)
        try:
            server.bind()
        finally:
            server.close()


@pytest.mark.slow
def test_only_authorised_clients_get_in(tmp_path):
    keys, clients, strangers = tmp_path / "server", tmp_path / "clients", tmp_path / "strangers"
    _, server_secret = create_keys(keys, "server")
    create_keys(clients, "rig1")
    create_keys(strangers, "intruder")
    options = ("--curve-secret", str(server_secret), "--curve-clients", str(clients))
    with running_server(tmp_path / "data", zmq_host="0.0.0.0", options=options) as server:
        endpoint = f"tcp://127.0.0.1:{server.zmq_port}"

        def connect(secret=None) -> Connection:
            configure = None
            if secret is not None:

                def configure(sock):
                    configure_client(sock, keys / "server.key", secret)

            connection = Connection(endpoint, [Role.recorder], "rig", configure=configure)
            connection.connect(timeout_s=3)
            return connection

        authorised = connect(clients / "rig1.key_secret")
        assert authorised.welcome is not None
        authorised.close()
        with pytest.raises(ServerUnavailable):
            connect(strangers / "intruder.key_secret")
        with pytest.raises(ServerUnavailable):
            connect()  # plain text to a CURVE server
