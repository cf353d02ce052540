"""A client's connection to the server: register, heartbeat, reconnect, resend until acked.

This follows the "Paranoid Pirate" pattern (ZeroMQ guide) that PROTOCOL.md section 6
specifies: a DEALER socket that says ``hello`` and waits for ``welcome``; a heartbeat
whenever nothing else was sent for ``heartbeat_s``; after ``liveness`` silent intervals the
server counts as gone, and the client closes its socket, waits (1, 2, 4 ... 32 s), opens a
new one and says ``hello`` again, for as long as it takes (a server restart, an outage)
unless ``give_up_s`` says otherwise; so does a client the server answers with
``NotRegistered`` (the server restarted). :meth:`Connection.request` resends the same message (same
``id``, so the server can ignore repeats) until its acknowledgement arrives.
"""

from __future__ import annotations

import collections
import contextlib
import math
import time
from collections.abc import Callable

import zmq

from protocol.codec import Message, decode, encode
from protocol.errors import ProtocolError, XDreamError
from protocol.messages import Bye, Content, Error, Heartbeat, Hello, Role, Welcome


class ServerUnavailable(XDreamError, ConnectionError):
    """The server did not answer within the allowed time."""


class RequestFailed(XDreamError, RuntimeError):
    """The server answered a request with an ``error`` message."""

    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class Connection:
    """One DEALER connection to the server's ROUTER socket."""

    def __init__(
        self,
        endpoint: str,
        roles: list[Role],
        name: str,
        heartbeat_s: float = 1.0,
        liveness: int = 3,
        backoff_s: tuple[float, float] = (1.0, 32.0),
        context: zmq.Context | None = None,
        configure: Callable[[zmq.Socket], None] | None = None,
        give_up_s: float | None = None,
        presentations: bool = False,
    ) -> None:
        self.endpoint = endpoint
        #: ``presentations``: a recorder that does not present asks for its rig's
        #: presentations (PROTOCOL.md, ``hello``).
        self.hello = Hello(
            roles=roles, name=name, software="xdream-rig rig_clients", presentations=presentations
        )
        self.heartbeat_s = heartbeat_s
        self.liveness = liveness
        self.backoff_s = backoff_s
        #: How long to try to (re)register before :class:`ServerUnavailable`; None: forever.
        self.give_up_s = give_up_s
        self._context = context or zmq.Context.instance()
        self._configure = configure  # e.g. CURVE keys, before connect
        self._clock = time.monotonic
        self._socket: zmq.Socket | None = None
        self._inbox: collections.deque[Message] = collections.deque()
        self.welcome: Welcome | None = None
        #: The id the server gave this client (kept across reconnects).
        self.client_id: str | None = None
        self.reconnects = 0
        self._last_sent = self._last_heard = 0.0

    # -- socket lifecycle -----------------------------------------------------------------
    def _open(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self._configure is not None:
            self._configure(sock)
        sock.connect(self.endpoint)
        self._socket = sock

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _deadline(self, timeout_s: float | None) -> float:
        """When to give up: after ``timeout_s``, or ``give_up_s`` if None (inf: never)."""
        limit = self.give_up_s if timeout_s is None else timeout_s
        return math.inf if limit is None else self._clock() + limit

    def connect(self, timeout_s: float | None = None) -> Welcome:
        """Register with the server, retrying with backoff until ``timeout_s`` has passed
        (None: ``give_up_s``, by default never)."""
        deadline = self._deadline(timeout_s)
        delay = self.backoff_s[0]
        self.welcome = None
        while True:
            self._close_socket()
            self._open()
            # Once welcomed, every reconnect names the id the server gave: the same client.
            hello = Message(self.hello.model_copy(update={"client_id": self.client_id}))
            self._send(hello)
            wait = min(max(self.liveness * self.heartbeat_s, delay), deadline - self._clock())
            reply = self._wait_for(lambda m: isinstance(m.content, Welcome), wait)
            if reply is not None and isinstance(reply.content, Welcome):
                self.welcome = reply.content
                self.client_id = reply.content.client_id
                self.heartbeat_s = reply.content.heartbeat_s
                return reply.content
            if self._clock() >= deadline:
                self._close_socket()
                waited = timeout_s if timeout_s is not None else self.give_up_s
                raise ServerUnavailable(f"no welcome from {self.endpoint} in {waited:.0f} s")
            delay = min(delay * 2, self.backoff_s[1])

    def close(self) -> None:
        """Say ``bye`` (best effort) and close the socket."""
        if self._socket is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._send(Message(Bye()))
        self._close_socket()

    # -- sending and receiving ------------------------------------------------------------
    def _send(self, message: Message) -> None:
        assert self._socket is not None, "connect() first"
        self._socket.send_multipart(encode(message), copy=False)
        self._last_sent = self._clock()

    def send(self, message: Message) -> None:
        """Send without waiting for an answer."""
        self._send(message)

    def _receive(self, timeout_s: float) -> Message | None:
        """One decoded message, or None on timeout; heartbeats are absorbed here."""
        assert self._socket is not None
        if not self._socket.poll(max(0, int(timeout_s * 1000))):
            return None
        frames = self._socket.recv_multipart(copy=False)
        self._last_heard = self._clock()
        try:
            message = decode(frames)
        except ProtocolError:
            return None  # undecodable (e.g. another protocol version): nothing to act on
        return None if isinstance(message.content, Heartbeat) else message

    def _wait_for(self, match: Callable[[Message], bool], timeout_s: float) -> Message | None:
        """Wait for a matching message; others are kept for :meth:`poll`."""
        deadline = self._clock() + timeout_s
        while (left := deadline - self._clock()) > 0:
            message = self._receive(min(left, self.heartbeat_s))
            if message is not None:
                if match(message):
                    return message
                self._inbox.append(message)
            self._keep_alive()
        return None

    def _keep_alive(self) -> None:
        """Heartbeat when idle, only once registered (before ``welcome`` only ``hello``)."""
        if self.welcome is None:
            return
        now = self._clock()
        if now - self._last_sent >= self.heartbeat_s:
            self._send(Message(Heartbeat()))

    def _server_lost(self) -> bool:
        return self._clock() - self._last_heard > self.liveness * self.heartbeat_s

    def _reconnect(self, deadline: float = math.inf) -> None:
        """The server went silent: count it and register again on a fresh socket, until
        ``deadline`` or ``give_up_s`` from now, whichever comes first."""
        self.reconnects += 1
        left = min(deadline, self._deadline(None)) - self._clock()
        self.connect(timeout_s=None if math.isinf(left) else max(left, 0.1))

    def _pump(self, timeout_s: float) -> Message | None:
        """Receive once, heartbeat if due, and register again if the server lost us."""
        message = self._receive(timeout_s)
        self._keep_alive()
        if (message is None and self._server_lost()) or _not_registered(message):
            self._reconnect()
            return None
        return message

    def poll(self, timeout_s: float = 0.1) -> Message | None:
        """The next message from the server, heartbeating and reconnecting as needed."""
        if self._inbox:
            return self._inbox.popleft()
        return self._pump(timeout_s)

    def wait(self, done: Callable[[], bool], step_s: float = 0.01) -> None:
        """Keep the connection alive until ``done()``: for front ends that work longer than
        a heartbeat interval (computing, presenting a block) in another thread. Messages
        arriving meanwhile are kept for :meth:`poll`."""
        while not done():
            message = self._pump(min(step_s, self.heartbeat_s / 2))
            if message is not None:
                self._inbox.append(message)

    def keep_alive(self) -> None:
        """Heartbeat if due and keep what has arrived for :meth:`poll`, without waiting and
        without reconnecting: for a front end in the middle of something that must not
        stall (a trial on screen). A lost server is found at the next :meth:`poll`."""
        while (message := self._receive(0)) is not None:
            self._inbox.append(message)
        self._keep_alive()

    def request(
        self,
        content: Content,
        ack: type[Content],
        session: str | None = None,
        resend_s: float = 2.0,
        timeout_s: float | None = None,
    ) -> Message:
        """Send and wait for the ``ack`` reply, resending the same message every ``resend_s``
        (and registering again whenever the server lost us).

        Raises :class:`RequestFailed` when the server answers with ``error``, and
        :class:`ServerUnavailable` after ``timeout_s`` (None: ``give_up_s``, by default
        never) without an answer.
        """
        message = Message(content, session=session)
        deadline = self._deadline(timeout_s)
        while self._clock() < deadline:
            self._send(message)
            reply = self._wait_for(
                lambda m: m.reply_to == message.id and isinstance(m.content, (ack, Error)),
                min(resend_s, deadline - self._clock()),
            )
            if _not_registered(reply):  # e.g. the server restarted: register, then resend
                self._reconnect(deadline)
                continue
            if reply is not None:
                if isinstance(reply.content, Error):
                    raise RequestFailed(reply.content)
                return reply
            if self._server_lost():
                self._reconnect(deadline)
        waited = timeout_s if timeout_s is not None else self.give_up_s
        raise ServerUnavailable(f"no {ack.__name__} for {message.type} in {waited:.0f} s")


def _not_registered(message: Message | None) -> bool:
    """The server does not know us (it restarted): we must say hello again."""
    return (
        message is not None
        and isinstance(message.content, Error)
        and message.content.code == "NotRegistered"
    )
