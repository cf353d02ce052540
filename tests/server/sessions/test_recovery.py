"""When things go wrong around a session: a server restart resumes it without losing or
repeating anything, a failed write is not acknowledged, a failed generation pauses it and
says why, and a slow disk never shows a state the file does not have yet."""

from __future__ import annotations

import asyncio
import time

import h5py
import numpy as np
import pytest

from protocol.errors import (
    SessionStateError,
)
from server.sessions.manager import SessionManager
from server.storage.recovery import journal_path
from tests.server.sessions.doubles import (
    FakeTransport,
    answer,
    config,
    crashed_sessions,
    manager_in,
    run,
    wait_state,
)


def test_a_restarted_server_resumes_without_losing_or_repeating(tmp_path):
    ((session_id, gen1),) = crashed_sessions(tmp_path, answered=4)

    async def second_run():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            assert await manager.restore() == [session_id]
            session = manager.get(session_id)
            again = await transport.next(0)
            assert again.content.generation == 1
            ids = [s.stimulus_id for s in gen1.content.stimuli]
            assert [s.stimulus_id for s in again.content.stimuli] == ids[4:]
            for a, b in zip(again.buffers, gen1.buffers[4:], strict=True):
                np.testing.assert_array_equal(a, b)  # the same images, re-derived
            await answer(session, again)
            await answer(session, await transport.next(1))
            await wait_state(session, "finished")
            return session.store.path

    with h5py.File(run(second_run()), "r") as f:
        assert np.bincount(f["generations/index"][()]).tolist() == [6, 6, 6]
        assert len(f["responses/presentation_id"]) == 18
        assert "server_restarted" in list(f["events/kind"].asstr()[()])


def test_a_failed_write_is_not_acknowledged_and_the_resend_counts(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1))
            await session.start()
            block = await transport.next(0)
            real = session.store.append_rows
            calls = []

            def full_disk(table, columns):
                calls.append(table)
                if calls.count("responses") == 1 and table == "responses":
                    raise OSError("No space left on device")
                return real(table, columns)

            session.store.append_rows = full_disk
            with pytest.raises(OSError):
                await answer(session, block)
            ack = await answer(session, block)  # the rig resends: taken, not a duplicate
            assert (ack.accepted, ack.duplicates) == (6, 0)
            await wait_state(session, "finished")

    run(main())


def test_a_resumed_session_shows_its_stored_reference_images(tmp_path):
    from PIL import Image

    photos = tmp_path / "data" / "references" / "photos"  # inside the server's reference root
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(photos / name)
    cfg = config(references_per_generation=2, reference_folder=str(photos), generations=2)

    async def first_run():
        transport = FakeTransport()
        manager = SessionManager(tmp_path / "data", transport)
        session = await manager.create(cfg)
        await session.start()
        block = await transport.next(0)
        await manager.close()
        return [
            b
            for s, b in zip(block.content.stimuli, block.buffers, strict=True)
            if s.kind == "reference"
        ]

    shown = run(first_run())
    for name in ("a.png", "b.png"):  # the folder changes after the session was created
        Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(photos / name)

    async def second_run():
        transport = FakeTransport()
        async with manager_in(tmp_path / "data", transport) as manager:
            await manager.restore()
            block = await transport.next(0)
            return [
                b
                for s, b in zip(block.content.stimuli, block.buffers, strict=True)
                if s.kind == "reference"
            ]

    again = run(second_run())
    assert len(again) == 2
    for a, b in zip(shown, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_state_change_is_on_disk_before_anyone_sees_it(tmp_path):
    """A slow disk: the session reports a new state only once its file records it, so a
    close or an operator that reacts to the state never finds the file behind."""

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1))
            write = session.store.set_status

            def slow_write(status: str) -> None:
                time.sleep(0.3)
                write(status)

            session.store.set_status = slow_write  # type: ignore[method-assign]
            close = session.close

            async def keep_open() -> None:  # so the watcher can read the file at the end
                pass

            session.close = keep_open  # type: ignore[method-assign]
            seen = []

            async def watch() -> None:  # what an observer finds the moment a state shows
                last = session.state
                while not last.final:
                    await asyncio.sleep(0.005)
                    if session.state is not last:
                        last = session.state
                        seen.append((last.value, session.store.status))

            watcher = asyncio.create_task(watch())
            await session.start()
            await answer(session, await transport.next(0))
            await watcher
            await close()
            return seen

    assert run(main()) == [("running", "running"), ("finished", "finished")]


def test_a_failed_generation_pauses_the_session_logs_why_and_refuses_to_go_on(tmp_path):
    """A bug or a full disk in the middle of a generation: the session pauses in memory
    (its file still says running, so a restart resumes it), the error is in the file's
    event log and among the warnings, and neither resume nor start continues it."""

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=3))

            def broken(*args, **kwargs):
                raise OSError(28, "No space left on device")

            session.engine.complete = broken  # type: ignore[method-assign]
            await session.start()
            await answer(session, await transport.next(0))
            await wait_state(session, "paused")
            assert "No space left" in (session.failure or "")
            assert [w["kind"] for w in session.warnings] == ["error"]
            for refused in (session.resume, session.start):
                with pytest.raises(SessionStateError):
                    await refused()
            assert session.state == "paused"
            events = await session.read(lambda store: store.events())
            status = await session.read(lambda store: store.status)
            return events, status

    events, status = run(main())
    errors = [e for e in events if e.kind == "error"]
    assert len(errors) == 1 and "No space left" in errors[0].detail["message"]
    assert status == "running"  # a restart resumes it from the file


@pytest.mark.parametrize("journal", ["kept", "lost"])
def test_a_file_a_crash_left_mid_append_is_repaired_and_resumes(tmp_path, journal):
    """A kill between the columns of one append leaves some columns longer: the restart
    writes the file anew from its journal, or without one cuts the columns back to the rows
    that were acknowledged, and carries on."""
    ((session_id, _),) = crashed_sessions(tmp_path)
    path = tmp_path / f"{session_id}.h5"
    with h5py.File(path, "r+") as f:
        acknowledged = f["responses/presentation_id"].asstr()[()].tolist()
        for name, extra in (("responses/generation", 22), ("events/time", 1)):
            ds = f[name]
            ds.resize(ds.shape[0] + extra, axis=0)  # as if killed after this column
    if journal == "lost":
        journal_path(path).unlink()

    async def second_run():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            assert await manager.restore() == [session_id] and manager.damaged == {}
            session = manager.get(session_id)
            again = await transport.next(0)
            assert again.content.generation == 1 and len(again.content.stimuli) == 3
            await answer(session, again)
            await answer(session, await transport.next(1))
            await wait_state(session, "finished")
            return await session.read(lambda store: (store.table("responses"), store.events()))

    responses, events = run(second_run())
    lengths = {len(column) for column in responses.values()}
    assert lengths == {18}  # 6 per generation, each once
    assert responses["presentation_id"].tolist()[: len(acknowledged)] == acknowledged
    (repaired,) = [e for e in events if e.kind == "repaired"]
    if journal == "kept":
        assert repaired.detail["cut"] == [
            "rebuilt from the journal (it was left unclosed); images of 1 generations kept, "
            "0 made again"
        ]
        assert not list(tmp_path.glob("*.damaged"))  # only unclosed: nothing to keep
    else:
        n = len(acknowledged)
        assert f"responses/generation: {n + 22} -> {n} rows" in repaired.detail["cut"]
        assert any(c.startswith("events/time: ") for c in repaired.detail["cut"])


def test_a_torn_file_is_rebuilt_from_its_journal_and_one_without_is_listed_damaged(tmp_path):
    (good, _), (torn_id, _) = crashed_sessions(tmp_path, sessions=2)
    torn = tmp_path / f"{torn_id}.h5"
    with h5py.File(torn, "r") as f:
        before = {name: f[name][()] for name in ("responses/presentation_id", "generations/codes")}
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # a torn write
    (tmp_path / "cafe0001.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # no journal

    async def second_run():
        async with manager_in(tmp_path) as manager:
            resumed = await manager.restore()
            events = await manager.get(torn_id).read(lambda store: store.events())
            return resumed, dict(manager.damaged), manager.past(), events

    resumed, damaged, past, events = run(second_run())
    assert sorted(resumed) == sorted([good, torn_id])
    (repaired,) = [e for e in events if e.kind == "repaired"]
    assert repaired.detail["cut"][0].startswith("rebuilt from the journal")
    with h5py.File(torn, "r") as f:  # everything it held, again (images made anew)
        for name, values in before.items():
            np.testing.assert_array_equal(f[name][()], values)
        assert f["generations/images"].shape[0] == len(before["generations/codes"])
    assert list(tmp_path.glob(f"{torn_id}.h5.damaged")) != []  # kept for an expert
    assert set(damaged) == {"cafe0001"} and damaged["cafe0001"]
    listed = {item["id"]: item for item in past}
    assert listed["cafe0001"]["state"] == "damaged" and "cannot" in listed["cafe0001"]["problem"]


def test_ended_files_are_left_alone_unless_their_writer_never_closed_them(tmp_path):
    """A start-up reads every unfinished file, but a finished one only if a crash kept its
    writer from closing it (then it is repaired for its readers, not resumed)."""

    async def finish_one() -> str:
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1))
            await session.start()
            await answer(session, await transport.next(0))
            await wait_state(session, "finished")
            return session.id

    closed, crashed = run(finish_one()), run(finish_one())
    with h5py.File(tmp_path / f"{crashed}.h5", "r+") as f:
        f.attrs["closed"] = False  # killed after "finished" was written, before the close
        column = f["responses/counts"]
        column.resize(column.shape[0] + 2, axis=0)
    untouched = (tmp_path / f"{closed}.h5").stat().st_mtime_ns

    async def restart():
        async with manager_in(tmp_path) as manager:
            return await manager.restore(), manager.damaged

    assert run(restart()) == ([], {})
    assert (tmp_path / f"{closed}.h5").stat().st_mtime_ns == untouched
    with h5py.File(tmp_path / f"{crashed}.h5", "r") as f:
        lengths = {ds.shape[0] for ds in f["responses"].values()}
        assert len(lengths) == 1 and f.attrs["closed"]  # repaired, and closed again
        assert "repaired" in list(f["events/kind"].asstr()[()])


def test_a_resumed_session_still_says_it_started_from_images(tmp_path):
    from PIL import Image

    folder = tmp_path / "data" / "references" / "start"
    folder.mkdir(parents=True)
    for name, grey in (("a.png", 60), ("b.png", 180)):
        Image.new("RGB", (20, 20), (grey, grey, grey)).save(folder / name)
    cfg = config(init_images="start", generations=2)

    async def first_run():
        transport = FakeTransport()
        manager = SessionManager(tmp_path / "data", transport)
        session = await manager.create(cfg)
        await session.start()
        await answer(session, await transport.next(0))  # generation 0 stored
        await transport.next(1)
        said = session.summary()["start"]
        await manager.close()
        return said

    said = run(first_run())

    async def second_run():
        async with manager_in(tmp_path / "data", FakeTransport()) as manager:
            (session_id,) = await manager.restore()
            return manager.get(session_id).summary()["start"]

    assert said.startswith("started from 2 images") and run(second_run()) == said
