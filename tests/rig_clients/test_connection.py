"""The rig clients' connection against a scripted server on real loopback sockets."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import zmq

from protocol.codec import Message, decode, encode
from protocol.messages import (
    Error,
    GenerationAck,
    Heartbeat,
    Hello,
    Response,
    Responses,
    ResponsesAck,
    Role,
    Welcome,
)
from rig_clients.connection import Connection, RequestFailed, ServerUnavailable

HEARTBEAT = 0.05


class ScriptedServer:
    """A ROUTER socket in a thread that records what arrives and answers via ``script``."""

    def __init__(self, script, port: int | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if port is None:
            self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.sock.bind(f"tcp://127.0.0.1:{port}")
            self.port = port
        self.script = script
        self.received: list[Message] = []
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(10):
                continue
            identity, *frames = self.sock.recv_multipart()
            try:
                message = decode(frames)
            except Exception as exc:  # keep serving; the test sees it in self.errors
                self.errors.append(exc)
                continue
            self.received.append(message)
            for reply in self.script(self, message) or []:
                self.sock.send_multipart([identity, *encode(reply)])

    def types(self) -> list[str]:
        return [m.type for m in self.received]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
        self.ctx.term()


def welcoming(server, message):
    if isinstance(message.content, Hello):
        return [Message(Welcome(client_id="c1", heartbeat_s=HEARTBEAT), reply_to=message.id)]
    if isinstance(message.content, Heartbeat):
        return [Message(Heartbeat())]
    return []


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@contextlib.contextmanager
def running(script, context):
    """A scripted server and a connection to it (not yet registered), both closed after."""
    server = ScriptedServer(script)
    conn = connection(server.port, context)
    try:
        yield server, conn
    finally:
        conn.close()
        server.close()


def connection(port: int, context, **kwargs) -> Connection:
    return Connection(
        f"tcp://127.0.0.1:{port}",
        [Role.recorder],
        "test-rig",
        heartbeat_s=HEARTBEAT,
        backoff_s=(0.05, 0.2),
        context=context,
        **kwargs,
    )


RESPONSES = Responses(
    generation=0, responses=[Response(presentation_id="p1", stimulus_id="s1", counts=[4.0])]
)


def test_registers_and_heartbeats_when_idle(context):
    with running(welcoming, context) as (server, conn):
        welcome = conn.connect(timeout_s=5)
        assert welcome.client_id == "c1"
        assert server.received[0].content == Hello(
            roles=[Role.recorder], name="test-rig", software="xdream-rig rig_clients"
        )
        end = time.monotonic() + 10 * HEARTBEAT
        while time.monotonic() < end:
            assert conn.poll(HEARTBEAT / 2) is None  # server heartbeats are absorbed
        assert server.types().count("heartbeat") >= 5
        assert conn.reconnects == 0
        conn.close()
        end = time.monotonic() + 5
        while "bye" not in server.types() and time.monotonic() < end:
            time.sleep(0.01)
        assert server.types()[-1] == "bye"


def test_request_is_resent_with_the_same_id_until_acknowledged(context):
    def ack_on_third(server, message):
        if isinstance(message.content, Responses):
            if sum(m.type == "responses" for m in server.received) < 3:
                return []  # "lost" acknowledgements
            return [Message(ResponsesAck(accepted=1, duplicates=0), reply_to=message.id)]
        return welcoming(server, message)

    with running(ack_on_third, context) as (server, conn):
        conn.connect(timeout_s=5)
        reply = conn.request(RESPONSES, ResponsesAck, session="s1", resend_s=0.1, timeout_s=5)
        assert reply.content == ResponsesAck(accepted=1, duplicates=0)
        sent = [m for m in server.received if m.type == "responses"]
        assert len(sent) == 3 and len({m.id for m in sent}) == 1
        assert all(m.content == RESPONSES and m.session == "s1" for m in sent)


def test_error_reply_raises_with_the_servers_code(context):
    def refuse(server, message):
        if isinstance(message.content, Responses):
            return [
                Message(Error(code="UnknownSession", message="no session s9"), reply_to=message.id)
            ]
        return welcoming(server, message)

    with running(refuse, context) as (_server, conn):
        conn.connect(timeout_s=5)
        with pytest.raises(RequestFailed, match="UnknownSession: no session s9"):
            conn.request(RESPONSES, ResponsesAck, session="s9", timeout_s=5)


def test_messages_arriving_during_a_request_are_kept_for_poll(context):
    def push_then_ack(server, message):
        if isinstance(message.content, Responses):
            return [
                Message(GenerationAck(generation=7)),
                Message(ResponsesAck(accepted=1, duplicates=0), reply_to=message.id),
            ]
        return welcoming(server, message)

    with running(push_then_ack, context) as (_server, conn):
        conn.connect(timeout_s=5)
        conn.request(RESPONSES, ResponsesAck, timeout_s=5)
        assert conn.poll(0.01).content == GenerationAck(generation=7)


def test_reconnects_and_says_hello_again_when_the_server_goes_silent(context):
    silent = threading.Event()

    def go_silent(server, message):
        return (
            []
            if silent.is_set() and isinstance(message.content, Heartbeat)
            else welcoming(server, message)
        )

    with running(go_silent, context) as (server, conn):
        conn.connect(timeout_s=5)
        silent.set()
        end = time.monotonic() + 40 * HEARTBEAT
        while time.monotonic() < end and conn.reconnects == 0:
            conn.poll(HEARTBEAT / 2)
        assert conn.reconnects >= 1
        assert server.types().count("hello") >= 2


def test_gives_up_with_a_clear_error_when_nobody_answers(context):
    probe = context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)  # a free port with nobody behind it
    conn = connection(port, context)
    with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{port}"):
        conn.connect(timeout_s=0.5)
    conn.close()


def test_nothing_but_hello_before_welcome(context):
    def welcome_second_hello(server, message):
        if isinstance(message.content, Hello) and server.types().count("hello") < 2:
            return []  # the first hello gets no answer
        return welcoming(server, message)

    with running(welcome_second_hello, context) as (server, conn):
        conn.connect(timeout_s=5)
        first_heartbeat = (
            server.types().index("heartbeat")
            if "heartbeat" in server.types()
            else len(server.types())
        )
        assert server.types()[:2] == ["hello", "hello"]
        assert first_heartbeat >= 2 and not server.errors


def test_wait_keeps_heartbeating_and_keeps_messages(context):
    """A front end busy longer than the liveness window stays registered through wait()."""

    def script(server, message):
        replies = welcoming(server, message)
        if isinstance(message.content, Heartbeat) and len(server.received) == 3:
            replies.append(Message(Error(code="Note", message="kept for poll")))
        return replies

    with running(script, context) as (server, conn):
        conn.connect(timeout_s=5)
        until = time.monotonic() + 20 * HEARTBEAT  # far beyond 3 heartbeat intervals
        conn.wait(lambda: time.monotonic() >= until)
        assert conn.reconnects == 0
        assert server.types().count("heartbeat") >= 10
        kept = conn.poll(0)
        assert kept is not None and kept.content.code == "Note"


def test_not_registered_makes_the_client_say_hello_again(context):
    """A restarted server does not know the client: it answers NotRegistered."""

    def script(server, message):
        if isinstance(message.content, Heartbeat) and server.types().count("hello") == 1:
            return [Message(Error(code="NotRegistered", message="say hello first"))]
        return welcoming(server, message)

    with running(script, context) as (server, conn):
        conn.connect(timeout_s=5)
        end = time.monotonic() + 20 * HEARTBEAT
        while time.monotonic() < end and conn.reconnects == 0:
            conn.poll(HEARTBEAT)
        assert conn.reconnects == 1 and server.types().count("hello") == 2


@pytest.mark.slow
def test_an_idle_client_waits_out_a_long_outage_and_registers_again(context):
    """A server restart can take longer than any fixed limit: by default the client keeps
    trying (with backoff) until the server is back, here after 12 s of silence."""
    server = ScriptedServer(welcoming)
    port = server.port
    conn = connection(port, context)
    reborn: list[ScriptedServer] = []
    comeback = threading.Timer(12.0, lambda: reborn.append(ScriptedServer(welcoming, port=port)))
    try:
        conn.connect()
        server.close()  # the server dies, and comes back 12 s later
        died = time.monotonic()
        comeback.start()
        while conn.reconnects == 0 or not reborn:
            conn.poll(HEARTBEAT / 2)  # notices the silence, then says hello until welcomed
        assert time.monotonic() - died >= 12.0 and conn.welcome is not None
        assert "hello" in reborn[0].types()
    finally:
        comeback.join()
        conn.close()
        for again in reborn:
            again.close()


def test_a_client_told_to_give_up_does_so_after_that_long(context):
    server = ScriptedServer(welcoming)
    conn = connection(server.port, context, give_up_s=0.5)
    try:
        conn.connect()
        server.close()
        started = time.monotonic()
        with pytest.raises(ServerUnavailable, match=r"no welcome from .* in [01] s"):
            while True:
                conn.poll(HEARTBEAT / 2)
        assert time.monotonic() - started < 3
    finally:
        conn.close()
