"""What the manager does with sessions that end: lets go of them (their memory with them),
keeps answering for them, caps how many are live, and archives them on request."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from protocol.errors import SessionLimit, SessionStateError, UnknownSession
from protocol.messages import Response, Responses
from server.sessions.manager import ARCHIVE, SessionManager
from server.sessions.stored import EndedSession
from tests.server.sessions.doubles import (
    FakeTransport,
    answer,
    config,
    manager_in,
    responses_for,
    run,
    wait_state,
)


def test_an_ended_session_is_let_go_with_its_engine_and_still_answered_for(tmp_path):
    async def scenario():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1))
            await session.start()
            await answer(session, await transport.next(0))
            while session.state != "finished":
                await session._task  # the loop ends once the last generation is stored
            engine = weakref.ref(session.engine)
            optimizer = weakref.ref(session.engine.optimizer)
            session_id = session.id
            del session
            gc.collect()
            # nothing of this run holds the engine or the optimizer any more
            assert engine() is None and optimizer() is None
            assert session_id not in manager.sessions
            ended = manager.watched(session_id)
            assert isinstance(ended, EndedSession) and ended.state == "finished"
            assert ended.summary()["generations_done"] == 1
            assert len(ended.history.maxima) == 1
            looked_up = await manager.lookup(session_id)
            assert looked_up is ended
            with pytest.raises(SessionStateError, match="finished"):
                manager.get(session_id)  # controls and counts get a clear refusal
            assert [p["id"] for p in manager.past()] == [session_id]  # listed from its file
            assert await manager.read(session_id, lambda store: store.generations_done()) == 1

    run(scenario())


def test_a_stopped_session_is_let_go_too(tmp_path):
    async def scenario():
        async with manager_in(tmp_path) as manager:
            session = await manager.create(config())
            await session.start()
            await session.stop()
            assert session.id not in manager.sessions
            assert manager.watched(session.id).state == "aborted"

    run(scenario())


def test_an_ended_session_answers_a_resend_as_duplicates_and_new_counts_with_its_state(
    tmp_path,
):
    """Over ZeroMQ and HTTP alike (both go through the manager): a rig whose ack was lost
    stops resending; counts the session never took are refused, naming its state, in this
    server run and in the next."""
    new = Responses(generation=0, responses=[
        Response(presentation_id="new", stimulus_id="g0-e0", counts=[1.0])
    ])  # fmt: skip

    async def scenario():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            finished = await manager.create(config(generations=1))
            await finished.start()
            block = await transport.next(0)
            await answer(finished, block)
            await wait_state(finished, "finished")
            await finished.retired()
            stopped = await manager.create(config())
            await stopped.start()
            await stopped.stop()
            await check(manager, finished.id, stopped.id, responses_for(block))
            return finished.id, stopped.id, responses_for(block)

    async def check(manager, finished, stopped, resent):
        ack = await manager.ingest_responses(finished, resent, "test", "rig")
        assert (ack.accepted, ack.duplicates) == (0, len(resent.responses))
        with pytest.raises(SessionStateError, match=r"finished: .*\(1 of these 1 responses"):
            await manager.ingest_responses(finished, new, "test", "rig")
        with pytest.raises(SessionStateError, match="aborted"):
            await manager.ingest_responses(stopped, new, "test", "rig")
        with pytest.raises(UnknownSession):
            await manager.ingest_responses("deadbeef", new, "test", "rig")

    finished, stopped, resent = run(scenario())

    async def next_run():
        async with manager_in(tmp_path) as manager:
            await manager.restore()
            await check(manager, finished, stopped, resent)

    run(next_run())


def test_live_sessions_are_capped_and_an_ended_one_frees_a_place(tmp_path):
    async def scenario():
        manager = SessionManager(tmp_path, FakeTransport(), max_sessions=2)
        try:
            first = await manager.create(config())
            await manager.create(config())
            with pytest.raises(SessionLimit, match="max-sessions 2"):
                await manager.create(config())
            assert len(list(tmp_path.glob("*.h5"))) == 2  # the refused one wrote nothing
            await first.stop()
            await manager.create(config())
        finally:
            await manager.close()

    run(scenario())


def test_archiving_a_session_that_has_just_finished_waits_for_its_file(tmp_path):
    async def scenario():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1))
            await session.start()
            await answer(session, await transport.next(0))
            while session.state != "finished":
                await asyncio.sleep(0)
            assert session.id in manager.sessions  # shown as finished, its file still open
            await manager.archive(session.id)
            assert (tmp_path / ARCHIVE / f"{session.id}.h5").exists()
            assert not list(tmp_path.glob(f"{session.id}.*"))

    run(scenario())


def test_archiving_moves_every_file_of_an_ended_session_and_nothing_else(tmp_path):
    async def scenario():
        async with manager_in(tmp_path) as manager:
            kept = await manager.create(config())
            gone = await manager.create(config())
            with pytest.raises(SessionStateError, match="stop it first"):
                await manager.archive(gone.id)
            await gone.stop()
            (tmp_path / f"{gone.id}.h5.damaged").write_bytes(b"a damaged copy")
            await manager.archive(gone.id)
            archive = tmp_path / ARCHIVE
            assert sorted(p.name for p in archive.iterdir()) == [
                f"{gone.id}.h5", f"{gone.id}.h5.damaged", f"{gone.id}.journal"
            ]  # fmt: skip
            assert not list(tmp_path.glob(f"{gone.id}.*"))
            assert (tmp_path / f"{kept.id}.h5").exists()
            assert gone.id not in {p["id"] for p in manager.past()}
            with pytest.raises(UnknownSession):
                await manager.lookup(gone.id)
            with pytest.raises(UnknownSession):
                await manager.archive("deadbeef")
            return gone.id

    archived = run(scenario())

    async def restart():  # an archived session is neither listed nor resumed
        async with manager_in(tmp_path) as manager:
            resumed = await manager.restore()
            assert len(resumed) == 1 and archived not in resumed
            assert archived not in {p["id"] for p in manager.past()}

    run(restart())
