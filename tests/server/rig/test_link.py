"""The ZeroMQ link's client table: who gets a block, and what a drop tells the rig server."""

from __future__ import annotations

import asyncio
import time

from protocol.codec import Message
from protocol.messages import Heartbeat, Hello, Role
from server.rig.link import RigLink


def test_blocks_go_to_the_newest_presenter_of_the_name_and_drops_are_queued():
    async def main():
        link = RigLink("tcp://127.0.0.1:*")
        link.bind()
        sent: list[bytes] = []
        link.send = lambda identity, message: sent.append(identity) or True  # type: ignore
        try:
            old = link.register(b"old", Hello(roles=[Role.presenter], name="rig-a"))
            new = link.register(b"new", Hello(roles=[Role.presenter], name="rig-a"))
            link.register(b"rec", Hello(roles=[Role.recorder], name="rig-a"))
            link.register(b"other", Hello(roles=[Role.presenter], name="rig-b"))
            old.last_heard, new.last_heard = time.monotonic() - 5, time.monotonic()
            message = Message(Heartbeat())
            assert link.deliver("s", "rig-a", message) == new.client_id
            assert link.deliver("s", "rig-c", message) is None  # no such presenter
            assert sent == [b"new"]
            assert {c["name"] for c in link.connected()} == {"rig-a", "rig-b"}
            link.drop(b"new", "said bye")
            link.drop(b"new", "again")  # already gone: nothing more to say
            again = link.register(b"old", Hello(roles=[Role.presenter], name="rig-a"))
            assert again.client_id not in (old.client_id, new.client_id)
            gone = [link.gone.get_nowait()[0].client_id for _ in range(link.gone.qsize())]
            assert gone == [new.client_id, old.client_id]  # re-registering drops the old
        finally:
            link.close()

    asyncio.run(main())


def test_an_unreachable_peer_is_dropped_when_sent_to():
    async def main():
        link = RigLink("tcp://127.0.0.1:*")
        link.bind()
        try:
            client = link.register(b"ghost", Hello(roles=[Role.presenter], name="screen"))
            # ROUTER_MANDATORY: no peer has that identity, so the send fails; on an asyncio
            # socket the failure arrives on the send's future, a moment later
            link.deliver("s", None, Message(Heartbeat()))
            for _ in range(100):
                if b"ghost" not in link.clients:
                    break
                await asyncio.sleep(0.01)
            assert b"ghost" not in link.clients
            assert link.gone.get_nowait()[0].client_id == client.client_id
        finally:
            link.close()

    asyncio.run(main())
