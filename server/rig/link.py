"""The server's ZeroMQ socket and the rig clients registered on it.

:class:`RigLink` owns the ROUTER socket (with CURVE beyond loopback), the table of
registered clients and sending. It is the sessions' :class:`~server.sessions.session.Transport`
(:meth:`RigLink.deliver`), and it knows nothing of sessions: a client it drops (gone
silent, said bye, unreachable) is put on :attr:`RigLink.gone` for the rig server to pass on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from protocol import security
from protocol.codec import Message, encode
from protocol.errors import ConfigError
from protocol.messages import Hello, Role

log = logging.getLogger(__name__)


@dataclass
class Client:
    client_id: str
    identity: bytes
    name: str
    roles: list[Role]
    last_heard: float
    last_sent: float
    #: A recorder that asked for every new presentation of its rig's sessions.
    follows: bool = False
    #: The minor protocol version it speaks (``hello.protocol`` 1.1: 1).
    minor: int = 0
    #: Channels a recorder sent in its last ``responses`` (None: none sent yet).
    channels: int | None = None


class RigLink:
    """One ROUTER socket on ``endpoint`` and the clients registered on it."""

    def __init__(
        self,
        endpoint: str,
        curve_secret: str | Path | None = None,
        curve_clients: str | Path | None = None,
    ) -> None:
        if not security.is_loopback(endpoint) and (curve_secret is None or curve_clients is None):
            raise ConfigError(
                f"{endpoint} is reachable beyond this machine: give the server's CURVE secret "
                "key and the folder of authorised client keys (--curve-secret, --curve-clients)"
            )
        self.requested_endpoint = endpoint
        self.endpoint = endpoint
        self._curve = (curve_secret, curve_clients)
        self.clients: dict[bytes, Client] = {}
        #: Ids of clients dropped since the rig server last looked.
        self.gone: asyncio.Queue[tuple[Client, str]] = asyncio.Queue()
        self._ids = itertools.count(1)
        #: Ends every client id of this server run: an id a client names after a restart
        #: (from the run before) is then unknown, never another client's.
        self._run = secrets.token_hex(3)
        self._context = zmq.asyncio.Context()
        self.socket: zmq.asyncio.Socket | None = None
        self._auth: Any = None

    def bind(self) -> str:
        """Bind the ROUTER socket; returns the endpoint actually bound (port ``*`` resolved)."""
        sock = self._context.socket(zmq.ROUTER)
        self.socket = sock
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.LINGER, 0)
        secret, clients = self._curve
        if secret is not None and clients is not None:
            from zmq.auth.asyncio import AsyncioAuthenticator

            if not Path(clients).is_dir():
                raise ConfigError(f"authorised client keys folder {clients} does not exist")
            security.configure_server(sock, secret)
            self._auth = AsyncioAuthenticator(self._context)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(clients))
        try:
            sock.bind(self.requested_endpoint)
        except zmq.ZMQError as exc:
            raise ConfigError(f"cannot bind {self.requested_endpoint}: {exc}") from None
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
        self._context.destroy(linger=0)  # closes the socket too, even after a failed bind

    # -- clients -----------------------------------------------------------------------------
    def register(self, identity: bytes, hello: Hello) -> Client:
        """The client for ``identity``. One that names the ``client_id`` it was given (a
        reconnect, on a new socket or the same) keeps it and is not dropped: nothing of
        what it was sent is lost with it. Any other is new (one that registers again
        without its id is dropped first)."""
        known = self._known(hello.client_id)
        now = time.monotonic()
        if known is not None:
            del self.clients[known.identity]
            if known.identity != identity:  # whatever else held this socket is gone
                self.drop(identity, "registered again")
            client = Client(known.client_id, identity, hello.name, hello.roles, now, now,
                        channels=known.channels)  # fmt: skip
            log.info("client %s (%s) reconnected", client.client_id, hello.name)
        else:
            self.drop(identity, "registered again")
            client_id = f"c{next(self._ids)}-{self._run}"
            client = Client(client_id, identity, hello.name, hello.roles, now, now)
            log.info("client %s registered as %s %s", hello.name, client.client_id, hello.roles)
        client.follows = hello.presentations and Role.recorder in hello.roles
        client.minor = int(hello.protocol.split(".")[1])
        self.clients[identity] = client
        return client

    def _known(self, client_id: str | None) -> Client | None:
        """The registered client of ``client_id`` (None: none, e.g. after a restart)."""
        if client_id is None:
            return None
        return next((c for c in self.clients.values() if c.client_id == client_id), None)

    def drop(self, identity: bytes, why: str) -> None:
        client = self.clients.pop(identity, None)
        if client is not None:
            log.info("client %s (%s) %s", client.client_id, client.name, why)
            self.gone.put_nowait((client, why))

    def connected(self) -> list[dict[str, Any]]:
        """The registered clients, for the dashboard: who, in which roles, heard how long ago."""
        now = time.monotonic()
        return [
            {
                "client_id": c.client_id,
                "name": c.name,
                "roles": [role.value for role in c.roles],
                "heard_s_ago": round(now - c.last_heard, 2),
                "channels": c.channels,
            }
            for c in self.clients.values()
        ]

    # -- sending -------------------------------------------------------------------------------
    def send(self, identity: bytes, message: Message) -> bool:
        """Send to one peer; False (and the client dropped) when it is known to be gone."""
        assert self.socket is not None, "bind() first"
        try:
            sent: Any = self.socket.send_multipart([identity, *encode(message)], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH with ROUTER_MANDATORY: peer gone
            self._unreachable(identity, exc)
            return False
        # On an asyncio socket the error may come later, on the returned future.
        sent.add_done_callback(lambda f: self._check_sent(identity, f))
        client = self.clients.get(identity)
        if client is not None:
            client.last_sent = time.monotonic()
        return True

    def _check_sent(self, identity: bytes, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._unreachable(identity, future.exception())

    def _unreachable(self, identity: bytes, exc: BaseException | None) -> None:
        log.info("peer %r unreachable: %s", identity, exc)
        self.drop(identity, "unreachable")

    def tell_recorders(self, rig: str | None, message: Message) -> None:
        """Send ``message`` to every recorder of rig ``rig`` (None: any) that asked for
        presentations in its ``hello``."""
        for client in list(self.clients.values()):
            if client.follows and (rig is None or client.name == rig):
                self.send(client.identity, message)

    def replaced(self, client: Client) -> bool:
        """Whether a client of the same name and roles is registered now (e.g. the rig's
        program restarted on a new socket before the old one counted as gone)."""
        return any(c.name == client.name and set(c.roles) == set(client.roles)
                   for c in self.clients.values())  # fmt: skip

    def presenters(self) -> list[str]:
        return sorted({c.name for c in self.clients.values() if Role.presenter in c.roles})

    def recorded_channels(self, rig: str | None) -> int | None:
        known = [c.channels for c in self.clients.values()
                 if c.channels is not None and rig in (None, c.name)]  # fmt: skip
        return min(known) if known else None

    def deliver(self, session_id: str, rig: str | None, message: Message) -> str | None:
        """Send a generation block to the session's presenter (the newest of that name); its
        client id, or None if none is connected."""
        candidates = [
            c
            for c in self.clients.values()
            if Role.presenter in c.roles and (rig is None or c.name == rig)
        ]
        for client in sorted(candidates, key=lambda c: -c.last_heard):
            if self.send(client.identity, message):
                return client.client_id
        return None
