"""A rig client that reconnects names the id its first welcome gave it (PROTOCOL.md,
``hello.client_id``): the server keeps it as the same client, so nothing it was sent counts
as lost. Without the id it is a new client, and its old self a lost presenter."""

from __future__ import annotations

import asyncio

import pytest

from protocol.messages import Hello, Role
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from server.rig.link import RigLink
from xdream.testing.servers import create_session, running_server


def test_the_link_keeps_a_client_that_names_its_id_and_drops_nobody():
    async def main():
        link = RigLink("tcp://127.0.0.1:*")
        link.bind()
        try:
            first = link.register(b"socket-1", Hello(roles=[Role.presenter], name="rig"))
            hello = Hello(roles=[Role.presenter], name="rig", client_id=first.client_id)
            moved = link.register(b"socket-2", hello)  # a reconnect on a new socket
            assert moved.client_id == first.client_id and list(link.clients) == [b"socket-2"]
            assert link.register(b"socket-2", hello).client_id == first.client_id  # same socket
            assert link.gone.empty()
            stale = Hello(roles=[Role.presenter], name="rig", client_id="c999")  # a restart ago
            assert link.register(b"socket-3", stale).client_id not in ("c999", first.client_id)
            after_restart = RigLink("tcp://127.0.0.1:*")  # the next server run counts anew,
            try:  # but its ids are not this run's: an old id is never another client's
                assert after_restart._known(first.client_id) is None
                after_restart.bind()
                again = after_restart.register(b"socket-1", Hello(roles=[Role.recorder],
                                                                  name="rec"))  # fmt: skip
                assert again.client_id != first.client_id
            finally:
                after_restart.close()
        finally:
            link.close()

    asyncio.run(main())


@pytest.mark.slow
def test_a_reconnect_with_the_clients_id_loses_nothing_and_one_without_does(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(
            server, generator="pixel", image_size=16, population=4, generations=2,
            response_timeout_s=600,
        )  # fmt: skip
        connection = Connection(server.zmq, [Role.presenter, Role.recorder], "rig")
        try:
            connection.connect(timeout_s=20)
            presenter = Presenter(connection)
            assert presenter.next_block(timeout_s=30).block == 0
            given = connection.client_id
            connection.connect(timeout_s=20)  # e.g. it missed heartbeats: a new socket
            assert connection.client_id == given
            assert presenter.next_block(timeout_s=3) is None  # nothing sent again
            kinds = [w["kind"] for w in server.session(session_id)["warnings"]]
            assert "presenter_lost" not in kinds
            connection.client_id = None  # a client that does not say who it was
            connection.connect(timeout_s=20)
            assert connection.client_id != given
            again = presenter.next_block(timeout_s=30)  # its old self is a lost presenter
            assert again is not None and again.block == 1
            kinds = [w["kind"] for w in server.session(session_id)["warnings"]]
            assert "presenter_lost" in kinds
        finally:
            connection.close()
