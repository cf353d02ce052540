"""A power cut, as opposed to a kill: what the disk holds afterwards is only what was
fsynced. Of the journal that is the prefix up to its last fsync; of the HDF5 file, which is
never fsynced while it is written, anything from all of it to nothing at all.

The test records, at every fsync of a journal, how long it was, and checks at every
acknowledgement that the journal's durable prefix already holds every acknowledged
response. Then it cuts the power right after the last acknowledgement: the data folder
is copied with each journal cut to its durable prefix and the session file as a kill left
it, cut short, emptied, or with its tail overwritten. In each case a restarted server has
every acknowledged response and carries on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from server.sessions.manager import SessionManager
from server.storage.journal import read_journal
from tests.server.sessions.doubles import (
    FakeTransport,
    answer,
    config,
    manager_in,
    responses_for,
    run,
)


@pytest.fixture
def durable(monkeypatch) -> dict[str, int]:
    """Bytes of each file known to be on the disk, by path, kept up by every fsync."""
    lengths: dict[str, int] = {}
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        lengths[os.readlink(f"/proc/self/fd/{fd}")] = os.fstat(fd).st_size

    monkeypatch.setattr(os, "fsync", fsync)
    return lengths


def journalled_ids(data: bytes, folder: Path) -> set[str]:
    """Presentation ids of the ``responses`` rows in journal bytes ``data``."""
    copy = folder / "prefix.journal"
    copy.write_bytes(data)
    records, _ = read_journal(copy)
    copy.unlink()
    return {
        str(i)
        for r in records
        if r.get("table") == "responses"
        for i in r["columns"]["presentation_id"]
    }


def cut(data: Path, out: Path, durable: dict[str, int], session_file: str) -> None:
    """``data`` as the disk holds it after the power went: journals cut to what was
    fsynced, the session file given by ``session_file``."""
    shutil.copytree(data, out)
    for journal in out.glob("*.journal"):
        original = data / journal.name
        os.truncate(journal, durable.get(str(original.resolve()), 0))
    for path in out.glob("*.h5"):
        size = path.stat().st_size
        if session_file == "empty":
            os.truncate(path, 0)
        elif session_file == "half":
            os.truncate(path, size // 2)
        elif session_file == "torn tail":
            with path.open("r+b") as f:
                f.seek(size - min(size // 3, 4096))
                f.write(np.random.default_rng(0).bytes(min(size // 3, 4096)))


@pytest.mark.parametrize("session_file", ["as killed", "half", "empty", "torn tail"])
def test_nothing_acknowledged_is_lost_to_a_power_cut(tmp_path, durable, session_file):
    data = tmp_path / "data"

    async def until_the_cut() -> tuple[str, set[str], dict[str, np.ndarray]]:
        transport = FakeTransport()
        manager = SessionManager(data, transport)
        session = await manager.create(config(generations=4))
        await session.start()
        acknowledged: set[str] = set()
        journal = str((data / f"{session.id}.journal").resolve())
        for n, only in enumerate([None, None, 2]):  # two generations and part of a third
            block = await transport.next(n)
            ids = [s.stimulus_id for s in block.content.stimuli]
            chosen = None if only is None else ids[:only]
            acked = await answer(session, block, only=chosen)
            assert acked.accepted > 0
            sent = responses_for(block, only=chosen).responses
            acknowledged |= {r.presentation_id for r in sent}
            prefix = Path(journal).read_bytes()[: durable[journal]]
            assert acknowledged <= journalled_ids(prefix, tmp_path), "acked before fsync"
        out = tmp_path / "after the cut"
        cut(data, out, durable, session_file)  # the power goes now, mid-generation
        await manager.close()  # (this run's own files do not matter any more)
        images = {s.stimulus_id: block.buffers[s.buffer] for s in block.content.stimuli}
        return session.id, acknowledged, images

    session_id, acknowledged, in_flight = run(until_the_cut())

    async def after_restart() -> None:
        transport = FakeTransport()
        async with manager_in(tmp_path / "after the cut", transport) as manager:
            assert await manager.restore() == [session_id]
            session = manager.sessions[session_id]
            stored = await session.read(
                lambda store: set(store.table("responses")["presentation_id"].astype(str))
            )
            assert acknowledged <= stored
            # and the session carries on where it was: the same generation, the same images
            # (the optimizer state is the one the journal holds), its unanswered stimuli only
            block = await transport.next(0)
            assert block.content.generation == 2
            shown = {s.stimulus_id: block.buffers[s.buffer] for s in block.content.stimuli}
            assert shown and set(shown) < set(in_flight)
            for stimulus_id, image in shown.items():
                np.testing.assert_array_equal(image, in_flight[stimulus_id])

    run(after_restart())
