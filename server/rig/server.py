"""The server's ZeroMQ side: receive, heartbeat, and dispatch to the sessions.

Every frame that arrives is decoded by ``protocol.codec``; anything that cannot be taken
gets an ``error`` reply naming the problem, and the loop goes on. Messages that need the
disk (presentations, responses) are handled in their own tasks so the socket keeps being
read while they are written; a response is acknowledged only once it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import zmq

from protocol.codec import MAX_SERVER_HEADER_BYTES, Message, decode
from protocol.errors import (
    InternalError,
    NotRegistered,
    ProtocolError,
    UnknownMessageType,
    WrongRole,
    XDreamError,
)
from protocol.messages import (
    Bye,
    Error,
    GenerationAck,
    Heartbeat,
    Hello,
    Presented,
    PresentedAck,
    Responses,
    Role,
    Welcome,
)
from protocol.replies import error_reply, reply
from server import __version__
from server.rig.link import Client, RigLink
from server.sessions.manager import SessionManager

log = logging.getLogger(__name__)
SERVER_NAME = f"xdream-rig {__version__}"


class RigServer:
    """Serves the rig clients of ``link`` for the sessions of ``sessions``."""

    def __init__(
        self,
        link: RigLink,
        sessions: SessionManager,
        heartbeat_s: float = 1.0,
        liveness: int = 3,
    ) -> None:
        self.link = link
        self.sessions = sessions
        self.heartbeat_s = heartbeat_s
        self.liveness = liveness
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Receive and dispatch until cancelled, heartbeating alongside."""
        socket = self.link.socket
        assert socket is not None, "bind the link first"
        helpers = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._losses())]
        try:
            while True:
                frames = await socket.recv_multipart(copy=False)
                try:
                    self._receive(frames[0].bytes, frames[1:])
                except Exception:  # a bug must not end the rig side for every session
                    log.exception("while handling a message")
                # A message already queued is returned without yielding: let HTTP requests
                # and the other tasks have their turn between two messages.
                await asyncio.sleep(0)
        finally:
            for task in [*helpers, *self._tasks]:
                task.cancel()

    async def _losses(self) -> None:
        """Tell the sessions about every client the link dropped."""
        while True:
            client, why = await self.link.gone.get()
            try:
                roles = [role.value for role in client.roles]
                # Back already (handled after its new hello): no alarm for it.
                alarm = why != "registered again" and not self.link.replaced(client)
                self.sessions.on_client_lost(client.client_id, client.name, roles, why, alarm)
                self.sessions.changes.bump()
            except Exception:  # a bug must not stop the next losses from being passed on
                log.exception("passing on the loss of client %s", client.client_id)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s / 2)
            now = time.monotonic()
            for identity, client in list(self.link.clients.items()):
                try:
                    if now - client.last_heard > self.liveness * self.heartbeat_s:
                        self.link.drop(identity, "silent: counted as gone")
                    elif now - client.last_sent >= self.heartbeat_s:
                        self.link.send(identity, Message(Heartbeat()))
                except Exception:  # keep heartbeating the others
                    log.exception("heartbeat for %s", client.name)

    def _receive(self, identity: bytes, frames: list[zmq.Frame]) -> None:
        try:
            message = decode(frames, MAX_SERVER_HEADER_BYTES)
        except ProtocolError as exc:
            self.link.send(identity, error_reply(exc))
            return
        client = self.link.clients.get(identity)
        if client is not None:
            client.last_heard = time.monotonic()
        content = message.content
        if isinstance(content, Hello):
            self._register(identity, message, content)
        elif client is None:
            if not isinstance(content, Error):  # an error is never answered with one
                self.link.send(identity, error_reply(NotRegistered("say hello first"), message))
        elif isinstance(content, Heartbeat):
            pass
        elif isinstance(content, Bye):
            self.link.drop(identity, "said bye")
        elif isinstance(content, Error):
            log.warning("client %s reports %s: %s", client.name, content.code, content.message)
        elif isinstance(content, (GenerationAck, Presented, Responses)):
            wrong = _wrong_role(client, message)
            if wrong is not None:
                self.link.send(identity, error_reply(wrong, message))
                return
            task = asyncio.create_task(self._handle(client, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            error = UnknownMessageType(f"the server does not take {message.type!r} messages")
            self.link.send(identity, error_reply(error, message))

    def _register(self, identity: bytes, message: Message, hello: Hello) -> None:
        client = self.link.register(identity, hello)
        welcome = Welcome(
            client_id=client.client_id, heartbeat_s=self.heartbeat_s, server=SERVER_NAME
        )
        self.link.send(identity, reply(message, welcome))
        self.sessions.on_client_back(client.name, [role.value for role in client.roles])
        if Role.presenter in hello.roles:
            self.sessions.on_presenter_ready()
        self.sessions.changes.bump()

    async def _handle(self, client: Client, message: Message) -> None:
        try:
            answer = await self._answer(client, message)
        except XDreamError as exc:
            answer = error_reply(exc, message)
        except Exception as exc:  # never let one message take the server down
            log.exception("handling %s from %s", message.type, client.name)
            answer = error_reply(InternalError(f"internal error: {exc!r}"), message)
        if answer is not None:
            with contextlib.suppress(KeyError):
                self.link.send(client.identity, answer)

    async def _answer(self, client: Client, message: Message) -> Message | None:
        """Take an acknowledgement, presentations or counts; the reply, if any."""
        content, sessions = message.content, self.sessions
        if isinstance(content, GenerationAck):
            sessions.get(message.session).on_ack(content, client.client_id)
            return None
        if isinstance(content, Presented):
            new = await sessions.ingest_presented(message.session, content, "zmq", client.name)
            if client.minor < 1:  # protocol 1.0 has no presented_ack
                return None
            return reply(
                message, PresentedAck(accepted=new, duplicates=len(content.presentations) - new)
            )
        assert isinstance(content, Responses)
        client.channels = len(content.responses[0].counts)  # what the form checks against
        ack = await sessions.ingest_responses(message.session, content, "zmq", client.name)
        return reply(message, ack)


def _wrong_role(client: Client, message: Message) -> WrongRole | None:
    """The error for a message that ``client``'s roles do not cover (None: they do):
    ``responses`` come from a recorder, ``generation_ack`` and ``presented`` a presenter."""
    needed = Role.recorder if isinstance(message.content, Responses) else Role.presenter
    if needed in client.roles:
        return None
    said = " and ".join(role.value for role in client.roles)
    return WrongRole(f"{message.type} comes from a {needed.value}; this client is a {said}")
