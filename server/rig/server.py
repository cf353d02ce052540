"""The server's ZeroMQ side: one ROUTER socket, registered clients, heartbeats, dispatch.

Every frame that arrives is decoded by ``protocol.codec``; anything that cannot be taken
gets an ``error`` reply naming the problem, and the loop goes on. Messages that need the
disk (presentations, responses) are handled in their own tasks so the socket keeps being
read while they are written; a response is acknowledged only once it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from protocol import security
from protocol.codec import (
    Message,
    ProtocolError,
    UnknownMessageType,
    decode,
    encode,
    error_reply,
)
from protocol.errors import ConfigError, NotRegistered, XDreamError
from protocol.messages import (
    Bye,
    Error,
    GenerationAck,
    Heartbeat,
    Hello,
    Presented,
    Responses,
    Role,
    Welcome,
)
from server.sessions.manager import SessionManager

log = logging.getLogger(__name__)
SERVER_NAME = "xdream-rig 0.1"


@dataclass
class Client:
    client_id: str
    identity: bytes
    name: str
    roles: list[Role]
    last_heard: float
    last_sent: float


class RigServer:
    """Serves rig clients on ``endpoint``; implements the sessions' :class:`Transport`."""

    def __init__(
        self,
        endpoint: str,
        heartbeat_s: float = 1.0,
        liveness: int = 3,
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
        self.heartbeat_s = heartbeat_s
        self.liveness = liveness
        self._curve = (curve_secret, curve_clients)
        self.manager: SessionManager | None = None
        self.clients: dict[bytes, Client] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._context = zmq.asyncio.Context()
        self._socket: zmq.asyncio.Socket | None = None
        self._auth = None

    # -- socket ----------------------------------------------------------------------------
    def bind(self) -> str:
        """Bind the ROUTER socket; returns the endpoint actually bound (port ``*`` resolved)."""
        sock = self._context.socket(zmq.ROUTER)
        self._socket = sock
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
        for task in self._tasks:
            task.cancel()
        if self._auth is not None:
            self._auth.stop()
        self._context.destroy(linger=0)  # closes the socket too, even after a failed bind

    def _send(self, identity: bytes, message: Message) -> bool:
        """Send to one peer; False (and the client dropped) when it is known to be gone."""
        assert self._socket is not None
        try:
            sent = self._socket.send_multipart([identity, *encode(message)], copy=False)
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
        self._drop(identity, "unreachable")

    def deliver(self, session_id: str, rig: str | None, message: Message) -> str | None:
        """Send a generation block to the session's presenter (the newest of that name)."""
        candidates = [
            c
            for c in self.clients.values()
            if Role.presenter in c.roles and (rig is None or c.name == rig)
        ]
        for client in sorted(candidates, key=lambda c: -c.last_heard):
            if self._send(client.identity, message):
                return client.client_id
        return None

    def _drop(self, identity: bytes, why: str) -> None:
        client = self.clients.pop(identity, None)
        if client is not None:
            log.info("client %s (%s) %s", client.client_id, client.name, why)
            if self.manager is not None:
                self.manager.on_client_lost(client.client_id)
                self.manager.changes.bump()

    def connected(self) -> list[dict[str, Any]]:
        """The registered clients, for the dashboard: who, in which roles, heard how long ago."""
        now = time.monotonic()
        return [
            {
                "client_id": c.client_id,
                "name": c.name,
                "roles": [role.value for role in c.roles],
                "heard_s_ago": round(now - c.last_heard, 2),
            }
            for c in self.clients.values()
        ]

    # -- loops -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Receive and dispatch until cancelled, heartbeating alongside."""
        assert self._socket is not None, "bind() first"
        beat = asyncio.create_task(self._heartbeats())
        try:
            while True:
                frames = await self._socket.recv_multipart(copy=False)
                try:
                    self._receive(frames[0].bytes, frames[1:])
                except Exception:  # a bug must not end the rig side for every session
                    log.exception("while handling a message")
        finally:
            beat.cancel()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s / 2)
            now = time.monotonic()
            for identity, client in list(self.clients.items()):
                try:
                    if now - client.last_heard > self.liveness * self.heartbeat_s:
                        self._drop(identity, "silent: counted as gone")
                    elif now - client.last_sent >= self.heartbeat_s:
                        self._send(identity, Message(Heartbeat()))
                except Exception:  # keep heartbeating the others
                    log.exception("heartbeat for %s", client.name)

    def _receive(self, identity: bytes, frames: list[zmq.Frame]) -> None:
        try:
            message = decode(frames)
        except ProtocolError as exc:
            self._send(identity, error_reply(exc))
            return
        client = self.clients.get(identity)
        if client is not None:
            client.last_heard = time.monotonic()
        content = message.content
        if isinstance(content, Hello):
            self._register(identity, message)
        elif client is None:
            if not isinstance(content, (Bye, Error)):
                self._send(identity, error_reply(NotRegistered("say hello first"), message))
        elif isinstance(content, Heartbeat):
            pass
        elif isinstance(content, Bye):
            self._drop(identity, "said bye")
        elif isinstance(content, Error):
            log.warning("client %s reports %s: %s", client.name, content.code, content.message)
        elif isinstance(content, (GenerationAck, Presented, Responses)):
            task = asyncio.create_task(self._handle(client, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            error = UnknownMessageType(f"the server does not take {message.type!r} messages")
            self._send(identity, error_reply(error, message))

    def _register(self, identity: bytes, message: Message) -> None:
        hello: Hello = message.content  # type: ignore[assignment]
        self._drop(identity, "registered again")
        now = time.monotonic()
        client = Client(f"c{next(self._ids)}", identity, hello.name, hello.roles, now, now)
        self.clients[identity] = client
        welcome = Welcome(
            client_id=client.client_id, heartbeat_s=self.heartbeat_s, server=SERVER_NAME
        )
        self._send(identity, Message(welcome, reply_to=message.id))
        log.info("client %s registered as %s %s", hello.name, client.client_id, hello.roles)
        if self.manager is not None:
            if Role.presenter in hello.roles:
                self.manager.on_presenter_ready()
            self.manager.changes.bump()

    async def _handle(self, client: Client, message: Message) -> None:
        assert self.manager is not None
        content = message.content
        try:
            session = self.manager.get(message.session)
            if isinstance(content, GenerationAck):
                session.on_ack(content, client.client_id)
                return
            if isinstance(content, Presented):
                await session.ingest_presented(content, "zmq", client.name)
                return
            assert isinstance(content, Responses)
            ack = await session.ingest_responses(content, "zmq", client.name)
            reply = Message(ack, session=message.session, reply_to=message.id)
        except XDreamError as exc:
            reply = error_reply(exc, message)
        except Exception as exc:  # never let one message take the server down
            log.exception("handling %s from %s", message.type, client.name)
            reply = error_reply(XDreamError(f"internal error: {exc!r}"), message)
        with contextlib.suppress(KeyError):
            self._send(client.identity, reply)
