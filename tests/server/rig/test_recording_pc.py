"""A separate recording PC: a recorder-only client that asks for presentations in its
``hello`` learns each new presentation of its rig's sessions (session, generation,
stimulus and presentation ids, onsets) from the server, and answers with counts."""

from __future__ import annotations

import time

import pytest

from protocol.codec import Message
from protocol.messages import Presentation, Presented, PresentedAck, Response, Responses, Role
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from xdream.testing.servers import create_session, running_server

pytestmark = pytest.mark.slow


def recorder_pc(endpoint: str, name: str, follow: bool) -> Connection:
    connection = Connection(endpoint, [Role.recorder], name)
    connection.hello = connection.hello.model_copy(update={"presentations": follow})
    connection.connect(timeout_s=20)
    return connection


def test_a_recorder_that_follows_its_rig_learns_every_presentation(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(
            server, generator="pixel", image_size=16, population=3, generations=2,
            rig="rig-a", response_timeout_s=600,
        )  # fmt: skip
        screen = Connection(server.zmq, [Role.presenter], "rig-a")
        follower = recorder_pc(server.zmq, "rig-a", follow=True)
        other_rig = recorder_pc(server.zmq, "rig-b", follow=True)
        silent = recorder_pc(server.zmq, "rig-a", follow=False)
        try:
            screen.connect(timeout_s=20)
            presenter = Presenter(screen)
            block = presenter.next_block(timeout_s=30)
            shown = [
                Presentation(presentation_id=block.presentation_id(s.stimulus_id, 0),
                             stimulus_id=s.stimulus_id, onset=100.0 + i, outcome="ok")
                for i, s in enumerate(block.stimuli)
            ]  # fmt: skip
            presenter.report(block, shown)
            told = follower.poll(10.0)
            while told is not None and not isinstance(told.content, Presented):
                told = follower.poll(10.0)
            assert told is not None and told.session == session_id
            assert told.content.generation == 0
            assert list(told.content.presentations) == shown  # ids and onsets, as shown
            for connection in (other_rig, silent):  # another rig's, and one that did not ask
                message = connection.poll(1.0)
                assert message is None or not isinstance(message.content, Presented)
            counts = Responses(generation=0, responses=[
                Response(presentation_id=p.presentation_id, stimulus_id=p.stimulus_id,
                         counts=[float(i)])
                for i, p in enumerate(told.content.presentations)
            ])  # fmt: skip
            ack = Recorder(follower).send(session_id, 0, counts.responses)
            assert (ack.accepted, ack.duplicates) == (3, 0)
        finally:
            for connection in (screen, follower, other_rig, silent):
                connection.close()


def test_presented_is_acknowledged_to_clients_of_protocol_1_1_only(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(
            server, generator="pixel", image_size=16, population=3, generations=2,
            response_timeout_s=600,
        )  # fmt: skip
        new = Connection(server.zmq, [Role.presenter], "rig")
        new.hello = new.hello.model_copy(update={"protocol": "1.1"})
        old = Connection(server.zmq, [Role.presenter], "rig")
        try:
            new.connect(timeout_s=20)
            block = Presenter(new).next_block(timeout_s=30)

            def shown(prefix: str) -> Presented:
                return Presented(generation=0, presentations=[
                    Presentation(presentation_id=f"{prefix}-{s.stimulus_id}",
                                 stimulus_id=s.stimulus_id, onset=1.0, outcome="ok")
                    for s in block.stimuli
                ])  # fmt: skip

            for expected in ((3, 0), (0, 3)):  # then the same again: duplicates
                reply = new.request(shown("a"), PresentedAck, session=session_id, timeout_s=10)
                assert (reply.content.accepted, reply.content.duplicates) == expected
            old.connect(timeout_s=20)
            old.send(Message(shown("b"), session=session_id))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:  # a 1.0 client gets no reply it cannot read
                message = old.poll(0.2)
                assert message is None or not isinstance(message.content, PresentedAck)
            assert server.session(session_id)["current"]["presented"] == 6
        finally:
            new.close()
            old.close()
