"""Alarms and auto-pause, in process: a stalled rig, a mostly unanswered generation,
refused responses, a lost client and a missing presenter each raise an alarm with a cause
and an action, pause the session (when it auto-pauses) before the optimizer sees bad
scores, clear when the cause is gone, and are stored with the session.

The browser's view of the same alarms is tests/server/http/test_dashboard_alarms.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from protocol.errors import ChannelMismatch, ConfigError, NotFound, UnknownStimulus
from protocol.messages import GenerationAck, Presentation, Presented, Response, Responses
from server.sessions import rounds, safety
from server.sessions.alarms import Alarms
from server.sessions.manager import SessionManager
from server.sessions.stored import StoredSession
from server.storage.records import Event
from server.storage.session_file import SessionFile
from tests.server.sessions.doubles import (
    FakeTransport,
    answer,
    config,
    manager_in,
    responses_for,
    run,
    started,
    wait_state,
)


def active(session) -> dict[str, dict]:
    return {a["kind"]: a for a in session.summary()["alarms"]}


async def wait_alarm(session, kind: str, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while kind not in active(session):
            await asyncio.sleep(0.01)
    return active(session)[kind]


def ack(session, message) -> None:
    content = message.content
    session.on_ack(GenerationAck(generation=content.generation, block=content.block), "c1")


def presented(message) -> Presented:
    content = message.content
    return Presented(
        generation=content.generation,
        presentations=[
            Presentation(
                presentation_id=f"{s.stimulus_id}-b{content.block}-r0",
                stimulus_id=s.stimulus_id,
                onset=float(i),
                outcome="ok",
            )
            for i, s in enumerate(content.stimuli)
        ],
    )


def test_a_stalled_rig_pauses_the_session_and_holds_its_generation(tmp_path):
    async def main():
        async with started(tmp_path, stall_timeout_s=0.3) as (session, transport):
            block0 = await transport.next(0)
            ack(session, block0)  # on the rig ... and then nothing more from it
            alarm = await wait_alarm(session, "stall")
            assert (
                alarm["severity"] == "critical" and "No trial reported by the rig" in alarm["cause"]
            )
            assert "presenter and the recorder" in alarm["action"]
            await wait_state(session, "paused")
            assert session.pause_reason == "stall" and session.summary()["pause_reason"] == "stall"
            await asyncio.sleep(0.5)  # held: neither shown again nor given to the optimizer
            assert len(transport.sent) == 1 and session.done == 0

            # The rig answers at last: the stall clears, the generation completes, the
            # session stays paused until the operator resumes it.
            await answer(session, block0, only=[s.stimulus_id for s in block0.content.stimuli[:2]])
            assert "stall" not in active(session)
            await session.resume()
            block1 = await transport.next(1)  # the rest of generation 0, not generation 1
            assert (block1.content.generation, block1.content.block) == (0, 1)
            assert len(block1.content.stimuli) == 4
            await answer(session, block1)
            gen1 = await transport.next(2)
            assert gen1.content.generation == 1 and session.done == 1
            await session.stop()
            return session.store.path

    path = run(main())
    log = StoredSession(path).alarms.as_json()
    assert [a["kind"] for a in log] == ["stall"] and not log[0]["active"]
    assert log[0]["cleared"] >= log[0]["raised"]


def test_a_rig_that_hung_before_taking_its_block_and_came_back_is_not_stalled(tmp_path):
    """The rig PC froze with the block unread in its socket; when it thaws it registers on
    a new socket (the old one, block and all, is gone). Paused, the block waits for the
    operator's resume: the stall is over, and no stall is raised again meanwhile."""

    async def main():
        async with started(tmp_path, stall_timeout_s=0.2) as (session, transport):
            await transport.next(0)  # delivered, never acknowledged
            await wait_alarm(session, "stall")
            await wait_state(session, "paused")
            session.on_presenter_ready()  # the rig registered again
            assert "stall" not in active(session)
            await asyncio.sleep(0.5)  # longer than the stall limit: held, nothing out
            assert "stall" not in active(session) and len(transport.sent) == 1
            await session.resume()
            again = await transport.next(1)
            assert (again.content.generation, again.content.block) == (0, 1)
            await session.stop()

    run(main())


def test_without_auto_pause_a_stall_only_alarms(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(
                config(stall_timeout_s=0.2, response_timeout_s=0.5, auto_pause=False)
            )
            await session.start()
            ack(session, await transport.next(0))
            alarm = await wait_alarm(session, "stall")
            assert "Auto-pause is off" in alarm["action"]
            block1 = await transport.next(1, timeout=5)  # re-presented on the timeout
            assert session.state == "running" and block1.content.block == 1
            await session.stop()
            assert session.summary()["alarms"] == []  # a stopped session wastes nothing

    run(main())


def test_a_mostly_unanswered_generation_is_held_not_given_to_the_optimizer(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(
                config(max_represent=1, response_timeout_s=0.2, stall_timeout_s=30)
            )
            await session.start()
            for n in range(2):  # block 0 and its one re-presentation: 2 of 6 answered
                block = await transport.next(n)
                ids = [s.stimulus_id for s in block.content.stimuli]
                await answer(session, block, only=ids[:1])
            alarm = await wait_alarm(session, "nan_generation")
            assert alarm["cause"].startswith("4 of 6 images of generation 0")
            await wait_state(session, "paused")
            assert session.pause_reason == "nan_generation"
            assert session.done == 0 and session.history.maxima == []
            await session.resume()
            block = await transport.next(2)
            assert (block.content.generation, len(block.content.stimuli)) == (0, 4)
            await answer(session, block)
            await transport.next(3)  # generation 1: generation 0 was complete
            assert "nan_generation" not in active(session)
            assert session.history.last_scores and all(s == s for s in session.history.last_scores)
            await session.stop()

    run(main())


def test_without_auto_pause_a_mostly_unanswered_generation_is_shown_again(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(
                config(
                    max_represent=0, response_timeout_s=0.2, stall_timeout_s=30, auto_pause=False
                )
            )
            await session.start()
            ack(session, await transport.next(0))
            again = await transport.next(1, timeout=5)
            await wait_alarm(session, "nan_generation")
            assert again.content.generation == 0 and session.state == "running"
            assert session.done == 0  # never told to the optimizer
            await session.stop()

    run(main())


def test_a_few_missing_images_still_complete_the_generation(tmp_path):
    async def main():
        async with started(tmp_path, max_represent=0, response_timeout_s=0.2) as (
            session,
            transport,
        ):
            block = await transport.next(0)
            await answer(session, block, only=[s.stimulus_id for s in block.content.stimuli[:5]])
            gen1 = await transport.next(1)
            assert gen1.content.generation == 1 and active(session) == {}
            await session.stop()

    run(main())


def test_refused_responses_alarm_with_their_reason_and_pause_after_the_block(tmp_path):
    async def main():
        async with started(tmp_path, rig="rig-A", channels=[3], stall_timeout_s=30) as (
            session,
            transport,
        ):
            block = await transport.next(0)
            ack(session, block)
            with pytest.raises(ChannelMismatch):  # another rig's recorder: its own trouble
                await session.ingest_responses(responses_for(block), "zmq", "rig-B")
            assert active(session) == {}
            for _ in range(safety.REFUSED_TO_PAUSE):
                assert session.state == "running"  # a garbled message or two only alarm
                with pytest.raises(ChannelMismatch):
                    await session.ingest_responses(responses_for(block), "zmq", "rig-A")
            alarm = active(session)["responses_refused"]
            assert "3 response message(s) from rig-A: ChannelMismatch" in alarm["cause"]
            assert session.state == "pausing"  # the block is still on the rig
            await session.ingest_presented(presented(block), "zmq", "rig-A")
            await wait_state(session, "paused")
            assert session.pause_reason == "responses_refused" and session.done == 0
            ok = await session.ingest_responses(responses_for(block, channels=4), "zmq", "rig-A")
            assert ok.accepted == 6 and "responses_refused" not in active(session)
            await session.stop()

    run(main())


def test_a_lost_rig_client_alarms_until_it_is_back_and_alarms_can_be_acknowledged(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(rig="rig-A"))
            other = await manager.create(config(rig="rig-B"))
            await session.start()
            await transport.next(0)
            manager.on_client_lost("c7", "rig-A", ["presenter", "recorder"],
                                   "silent: counted as gone", True)  # fmt: skip
            alarm = active(session)["client_lost"]
            assert alarm["severity"] == "warning" and alarm["acknowledged"] is None
            assert "rig-A (presenter and recorder) stopped answering" in alarm["cause"]
            assert active(other) == {}  # another rig's session is not concerned
            seen = session.acknowledge(alarm["id"])
            assert seen["acknowledged"] is not None and seen["active"]
            with pytest.raises(NotFound):
                session.acknowledge(99)
            # A recorder PC of the same rig says bye; one that is back already raises none.
            manager.on_client_lost("c8", "rig-A", ["recorder"], "said bye", True)
            manager.on_client_lost("c9", "rig-A", ["presenter"], "registered again", False)
            lost = [a for a in session.summary()["alarms"] if a["kind"] == "client_lost"]
            assert [a["key"] for a in lost] == [
                "client_lost:rig-A:recorder",
                "client_lost:rig-A:presenter+recorder",
            ]
            assert "rig-A (recorder) said bye" in lost[0]["cause"]
            manager.on_client_back("rig-A", ["presenter"])  # covers neither alarm's roles
            assert len(session.summary()["alarms"]) == 2
            manager.on_client_back("rig-A", ["presenter", "recorder"])
            assert active(session) == {}
            await session.stop()
            return session.store.path

    log = StoredSession(run(main())).alarms.as_json()
    assert [(a["kind"], a["active"]) for a in log] == [("client_lost", False)] * 2
    assert log[1]["acknowledged"] is not None


def test_a_block_no_presenter_takes_raises_an_alarm_naming_the_connected_ones(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(rounds, "RESEND_S", 0.05)
    monkeypatch.setattr(safety, "NO_PRESENTER_S", 0.1)

    async def main():
        transport = FakeTransport()
        transport.connected = False
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(rig="rig-A"))
            await session.start()
            alarm = await wait_alarm(session, "no_presenter")
            assert "No presenter named rig-A is connected" in alarm["cause"]
            assert "Connected presenters: none" in alarm["cause"]
            assert session.state == "running"  # nothing is wasted: no pause
            transport.connected = True
            session.on_presenter_ready()
            await transport.next(0)
            assert "no_presenter" not in active(session)
            await session.stop()

    run(main())


def test_one_condition_is_one_alarm_and_the_log_replays_it():
    alarms = Alarms()
    lost = dict(roles="presenter", why="said bye")
    first = alarms.raise_("client_lost", "client_lost:a", 0, name="a", **lost)
    again = alarms.raise_("client_lost", "client_lost:a", 2, name="a", **lost)
    assert first is again and again.count == 2 and again.generation == 2
    alarms.raise_("client_lost", "client_lost:b", 2, name="b", **lost)
    events = [Alarms.event(first, "raised")]
    alarms.acknowledge(first.id)
    events.append(Alarms.event(first, "acknowledged"))
    assert [a.key for a in alarms.clear("client_lost:a")] == ["client_lost:a"]
    events.append(Alarms.event(first, "cleared"))
    assert [a["key"] for a in alarms.as_json()] == ["client_lost:b", "client_lost:a"]
    assert [a["key"] for a in alarms.as_json(active_only=True)] == ["client_lost:b"]

    replayed = Alarms.replay(Event(10.0 + i, 2, kind, detail) for i, (kind, detail) in
                             enumerate(events))  # fmt: skip
    (alarm,) = replayed.as_json()
    assert (alarm["count"], alarm["acknowledged"], alarm["cleared"]) == (2, 11.0, 12.0)


def test_channels_the_rig_does_not_record_are_refused_when_the_session_is_made(tmp_path):
    async def main():
        transport = FakeTransport()
        transport.channels = 4  # what the rig's recorder sent last
        async with manager_in(tmp_path, transport) as manager:
            with pytest.raises(ConfigError, match="records 4 channels") as refused:
                await manager.create(config(rig="rig-A", channels=[1, 7]))
            assert refused.value.field == "channels"
            assert list(tmp_path.glob("*.h5")) == []
            session = await manager.create(config(rig="rig-A", channels=[3]))
            assert session.state == "created"

    run(main())


def test_a_block_whose_counts_were_refused_is_not_shown_again_for_nothing(tmp_path):
    """Issue: channel 7 on a 4-channel rig re-presented every image 4 times. One refused
    message, then the rig reports the block shown: paused, not shown again."""

    async def main():
        async with started(tmp_path, rig="rig-A", channels=[7], stall_timeout_s=60) as (
            session,
            transport,
        ):
            block = await transport.next(0)
            ack(session, block)
            with pytest.raises(ChannelMismatch):
                await session.ingest_responses(responses_for(block, channels=4), "zmq", "rig-A")
            assert session.state == "running"
            await session.ingest_presented(presented(block), "zmq", "rig-A")
            await wait_state(session, "paused", timeout=5)
            assert session.pause_reason == "responses_refused"
            assert len(transport.sent) == 1 and "stall" not in active(session)
            await session.stop()

    run(main())


def test_a_session_pausing_when_the_server_stopped_comes_back_paused_for_its_reason(tmp_path):
    async def first_run():
        transport = FakeTransport()
        manager = SessionManager(tmp_path, transport)
        session = await manager.create(config())
        await session.start()
        await transport.next(0)
        await session.pause()  # generation 0 is still on the rig ...
        assert session.state == "pausing"
        await manager.close()  # ... when the server stops
        return session.id

    async def second_run(session_id):
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            await manager.restore()
            session = manager.sessions[session_id]
            await wait_state(session, "paused")  # nothing is on the rig any more
            assert session.pause_reason == "operator"
            assert session.summary()["progress"]["eta_s"] is None
            with pytest.raises(UnknownStimulus):  # counts from before: no generation is out
                await session.ingest_responses(
                    Responses(generation=0, responses=[Response(
                        presentation_id="x", stimulus_id="g0-e0", counts=[1.0])]),
                    "zmq", "rig")  # fmt: skip
            assert active(session) == {}  # not the rig's fault: no alarm
            await session.resume()
            block = await transport.next(0)
            assert (block.content.generation, block.content.block) == (0, 1)

    run(second_run(run(first_run())))


def test_dropped_frames_warn_the_operator_and_are_stored(tmp_path):
    """A window presenter that missed frames says so in ``presented``: the operator gets a
    warning naming the block and how many frames, and the file keeps them per trial."""

    async def main():
        async with started(tmp_path) as (session, transport):
            block = await transport.next(0)
            ack(session, block)
            report = presented(block)
            timed = [
                p.model_copy(update={"frames": 6, "dropped_frames": dropped})
                for p, dropped in zip(report.presentations[:2], [0, 2], strict=True)
            ]
            report = report.model_copy(
                update={"presentations": timed + report.presentations[2:]}
            )
            assert await session.ingest_presented(report, "zmq", "rig") == len(
                report.presentations
            )
            warnings = [w for w in session.warnings if w["kind"] == "dropped_frames"]
            assert len(warnings) == 1 and warnings[0]["severity"] == "warning"
            assert "dropped 2 frames in 1 trials of block 0" in warnings[0]["message"]
            # A window presenter reports each trial as it ends: more drops in the same
            # block are logged, not warned of again.
            again = presented(block).presentations[0].model_copy(
                update={"presentation_id": "again", "dropped_frames": 1}
            )
            await session.ingest_presented(Presented(generation=0, presentations=[again]),
                                           "zmq", "rig")  # fmt: skip
            assert [w["kind"] for w in session.warnings].count("dropped_frames") == 1
            await session.stop()
            return session.store.path

    stored = StoredSession(run(main()))
    assert [w["kind"] for w in stored.warnings].count("dropped_frames") == 1
    store = SessionFile.reopen(stored.path, mode="r")
    frames = store.table("presentations")["dropped_frames"]
    logged = [e.detail["first"] for e in store.events() if e.kind == "dropped_frames"]
    store.close()
    assert frames[:2].tolist() == [0.0, 2.0] and np.isnan(frames[2:-1]).all()
    assert frames[-1] == 1.0 and logged == [True, False]
