"""The session journal: records read back as written, a torn or damaged tail cut off, and
the rig's tables of a session file brought back to it."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from protocol.messages import Presentation, Response
from server.engine.loop import GenerationResult
from server.storage import rows
from server.storage.journal import Journal, read_journal
from server.storage.rebuild import _written, rebuild_from_journal
from server.storage.recovery import journal_path
from server.storage.rows import response_rows
from server.storage.session_file import SessionFile


def test_records_read_back_as_written_arrays_and_text_included(tmp_path):
    journal = Journal(tmp_path / "s.journal")
    columns = {"id": ["a", "b"], "counts": np.arange(6.0).reshape(2, 3),
               "generation": np.array([1, 2], dtype=np.int32)}  # fmt: skip
    journal.append({"table": "responses", "columns": columns})
    journal.append({"status": "running"}, sync=False)
    journal.close()
    (first, second), size = read_journal(tmp_path / "s.journal")
    assert size == (tmp_path / "s.journal").stat().st_size
    assert first["columns"]["id"] == ["a", "b"]
    np.testing.assert_array_equal(first["columns"]["counts"], columns["counts"])
    assert first["columns"]["generation"].dtype == np.int32
    assert second == {"status": "running"}


def _three_records(path):
    journal = Journal(path)
    for i in range(3):
        journal.append({"i": i})
    journal.close()


def test_a_torn_last_record_is_cut_off_and_writing_goes_on_after_the_last_good_one(tmp_path):
    path = tmp_path / "s.journal"
    _three_records(path)
    whole = path.stat().st_size
    os.truncate(path, whole - 3)  # killed in the middle of the third record
    records, good = read_journal(path)
    assert [r["i"] for r in records] == [0, 1] and good < whole - 3
    again = Journal(path)  # cuts the torn tail, then appends
    again.append({"i": 9})
    again.close()
    assert [r["i"] for r in read_journal(path)[0]] == [0, 1, 9]


def test_nothing_after_a_damaged_record_is_trusted(tmp_path):
    path = tmp_path / "s.journal"
    _three_records(path)
    data = bytearray(path.read_bytes())
    second = len(data) // 3  # three records of one size: where the second begins
    data[second + 12] ^= 0xFF  # a flipped byte inside the second record's payload
    path.write_bytes(bytes(data))
    assert [r["i"] for r in read_journal(path)[0]] == [0]


def test_only_what_the_rig_is_acknowledged_waits_for_the_disk(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    store = SessionFile(tmp_path / "s.h5", {}, journal=journal_path(tmp_path / "s.h5"))
    synced.clear()
    store.log_event("block_sent", 0)
    assert synced == []  # events: written, not waited for
    store.append_responses(0, 0, [Response(presentation_id="p", stimulus_id="s", counts=[1])], "x")
    assert len(synced) == 1  # responses: on the disk before the write returns
    store.close()


def _store_with_rows(tmp_path, n: int = 5) -> SessionFile:
    path = tmp_path / "s.h5"
    store = SessionFile(path, {}, journal=journal_path(path))
    for i in range(n):
        store.append_responses(
            0, 0, [Response(presentation_id=f"p{i}", stimulus_id="s", counts=[float(i)])], "x"
        )
    return store


@pytest.mark.parametrize("damage", ["group gone", "rows lost", "rows differ"])
def test_the_rigs_tables_come_back_from_the_journal(tmp_path, damage):
    store = _store_with_rows(tmp_path)
    store.close()
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        if damage == "group gone":  # as when a kill left it unreadable and it was dropped
            del f["responses"]
        elif damage == "rows lost":  # a power cut took the last pages
            for ds in f["responses"].values():
                ds.resize(2, axis=0)
        else:
            f["responses/presentation_id"][1] = "someone else's"
    again = SessionFile.reopen(tmp_path / "s.h5", journal=journal_path(tmp_path / "s.h5"))
    notes = again.repair()
    assert notes and "responses" in notes[0]
    rows = again.table("responses")
    assert rows["presentation_id"].tolist() == [f"p{i}" for i in range(5)]
    np.testing.assert_array_equal(rows["counts"][:, 0], np.arange(5.0))
    assert again.repair() == []  # whole again: nothing more to do
    again.close()


def _journal_across_the_frame_timing_upgrade(tmp_path, monkeypatch) -> Path:
    """A session begun by a server from before protocol 1.2 (its journal's presentation
    records have no frame columns) and resumed by one after it."""
    path = tmp_path / "s.h5"
    store = SessionFile(path, {"session_id": "s"}, status="running", journal=journal_path(path))
    with monkeypatch.context() as old_server:
        old_server.setattr(rows, "FRAME_COLUMNS", ())
        for i in range(2):
            shown = Presentation(presentation_id=f"p{i}", stimulus_id="s", onset=i, outcome="ok")
            store.append_presentations(0, 0, [shown], "x")
    new = Presentation(presentation_id="p2", stimulus_id="s", onset=2.0, outcome="ok",
                       frames=6, dropped_frames=1)  # fmt: skip
    store.append_presentations(0, 0, [new], "x")
    store.close()
    return path


@pytest.mark.parametrize("damage", ["group gone", "rows lost", "beyond repair"])
def test_a_journal_from_before_frame_timing_still_restores_its_rows(
    tmp_path, monkeypatch, damage
):
    path = _journal_across_the_frame_timing_upgrade(tmp_path, monkeypatch)
    if damage == "beyond repair":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        rebuild_from_journal(path, journal_path(path), _by_thread)
        again = SessionFile.reopen(path, journal=journal_path(path))
    else:
        with h5py.File(path, "r+") as f:
            if damage == "group gone":
                del f["presentations"]
            else:  # the last row lost; the two left are the old server's
                for ds in f["presentations"].values():
                    ds.resize(2, axis=0)
        again = SessionFile.reopen(path, journal=journal_path(path))
        assert again.repair()
    table = again.table("presentations")
    assert table["presentation_id"].tolist() == ["p0", "p1", "p2"]
    np.testing.assert_array_equal(table["frames"], [np.nan, np.nan, 6.0])
    np.testing.assert_array_equal(table["dropped_frames"], [np.nan, np.nan, 1.0])
    assert again.repair() == []
    again.close()


def test_a_file_beyond_repair_is_written_anew_from_its_journal(tmp_path):
    """Everything comes back but the images, which the generator makes again from the codes
    (here a stand-in); a generation completed again after a restart is stored once."""
    path = tmp_path / "s.h5"
    store = SessionFile(path, {"session_id": "s"}, status="created", journal=journal_path(path))
    store.write_references(np.full((2, 4, 4, 3), 7, dtype=np.uint8))
    store.set_status("running")
    store.append_responses(0, 0, [Response(presentation_id="p", stimulus_id="s", counts=[2])], "x")
    codes = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = GenerationResult(0, codes, _render(codes), np.array([1.0, 2.0, 3.0]), {"ask_s": 0.1})
    for _ in range(2):  # completed, killed before HDF5 took it, completed again on resume
        store.write_generation(result, {"generation": 1, "mean": np.ones(4)}, [(0, 5.0)])
    store.close()
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # beyond repair
    done = rebuild_from_journal(path, journal_path(path), _by_thread)
    assert done.aside.name == "s.h5.damaged" and done.aside.read_bytes().startswith(b"\x89HDF")
    assert (done.reused, done.rendered) == (0, 1)
    again = SessionFile.reopen(path, mode="r")
    assert again.status == "running" and again.config == {"session_id": "s"}
    np.testing.assert_array_equal(again.references(), np.full((2, 4, 4, 3), 7))
    generations = again.table("generations")
    np.testing.assert_array_equal(generations["codes"], codes)
    np.testing.assert_array_equal(generations["images"], _render(codes))
    assert generations["index"].tolist() == [0, 0, 0]  # once
    assert again.generations_done() == 1 and again.optimizer_state()["mean"].tolist() == [1] * 4
    assert again.table("responses")["presentation_id"].tolist() == ["p"]
    assert again.table("references")["score"].tolist() == [5.0]
    again.close()


def test_an_unclosed_file_is_rewritten_with_its_own_images(tmp_path):
    """The usual case after a kill: the old file is read, never written; its images are kept
    where its codes are the journal's. Only an old file that proves damaged is kept."""
    path = tmp_path / "s.h5"
    store = SessionFile(path, {"session_id": "s"}, status="running", journal=journal_path(path))
    codes = np.arange(12, dtype=np.float32).reshape(3, 4)
    own = np.full((3, 4, 4, 3), 9, dtype=np.uint8)  # not what _render would make
    for index in range(2):
        result = GenerationResult(index, codes + index, own, np.ones(3), {})
        store.write_generation(result, {"generation": index + 1, "mean": np.ones(4)})
    store.close()

    def no_render(thread, codes):
        raise AssertionError("the images were all in the old file")

    before = path.stat().st_ino
    done = rebuild_from_journal(path, journal_path(path), no_render, keep_old=False)
    assert (done.aside, done.reused, done.rendered) == (None, 2, 0)
    assert path.stat().st_ino != before  # a new file took the old one's place
    assert sorted(tmp_path.iterdir()) == sorted([path, journal_path(path)])
    with h5py.File(path, "r+") as f:  # now generation 1's stored codes are not the journal's
        f["generations/codes"][3] = -1
    done = rebuild_from_journal(path, journal_path(path), _by_thread, keep_old=False)
    assert (done.aside.name, done.reused, done.rendered) == ("s.h5.damaged", 1, 1)
    again = SessionFile.reopen(path, mode="r")
    generations = again.table("generations")
    np.testing.assert_array_equal(generations["images"][:3], own)
    np.testing.assert_array_equal(generations["images"][3:], _render(codes + 1))
    np.testing.assert_array_equal(generations["codes"][3], codes[0] + 1)
    again.close()


def test_images_a_kill_left_unwritten_are_not_taken_for_written(tmp_path):
    """HDF5 reads an unallocated chunk back as zeros without an error: the rebuild checks
    that a generation's image chunks are on the disk before it keeps them."""
    with h5py.File(tmp_path / "f.h5", "w") as f:
        images = f.create_dataset("images", shape=(3, 4, 4, 3), maxshape=(None, 4, 4, 3),
                                  chunks=(1, 4, 4, 3), dtype="u1", compression="gzip")  # fmt: skip
        images[0:3] = 7
        images.resize(6, axis=0)  # rows 3-5 announced, never written
        assert _written(images, 0, 2) and not _written(images, 3, 5)
        assert not np.any(images[3:6])  # what a reader would have kept: zeros


def _render(codes: np.ndarray) -> np.ndarray:
    """A stand-in generator: an image per code, from its first value."""
    return np.repeat(codes[:, :1, None, None], 3, axis=3).astype(np.uint8) * np.ones(
        (1, 4, 4, 3), dtype=np.uint8
    )


@pytest.mark.parametrize("killed", ["writing the new state", "before the rename"])
def test_an_interrupted_swap_of_the_optimizer_state_is_settled(tmp_path, killed):
    path = tmp_path / "s.h5"
    store = SessionFile(path, {})
    result = GenerationResult(0, np.zeros((2, 3)), np.zeros((2, 4, 4, 3), np.uint8),
                              np.ones(2), {})  # fmt: skip
    store.write_generation(result, {"generation": 1, "mean": np.zeros(3)})
    store.close()
    with h5py.File(path, "r+") as f:  # the next swap, interrupted
        f.create_group("optimizer.new").attrs["generation"] = 2
        if killed == "before the rename":  # old state deleted, new one complete
            del f["optimizer"]
    again = SessionFile.reopen(path)
    (note,) = again.repair()
    done = again.generations_done()
    again.close()
    if killed == "writing the new state":
        assert "removed" in note and done == 1
    else:
        assert "renamed" in note and done == 2
    with h5py.File(path, "r") as f:
        assert "optimizer.new" not in f


def test_a_write_that_failed_after_its_journal_record_is_not_stored_twice(tmp_path):
    """The journal took the rows, the HDF5 write failed (not acknowledged), the rig sent them
    again: repair and rebuild keep each presentation once."""
    store = _store_with_rows(tmp_path, n=2)
    resent = [Response(presentation_id="p1", stimulus_id="s", counts=[1.0])]
    store._journal.append({"table": "responses", "columns": response_rows(0, 0, resent, "x")})
    store.close()  # the file holds p0, p1 once; the journal p0, p1, p1
    again = SessionFile.reopen(tmp_path / "s.h5", journal=journal_path(tmp_path / "s.h5"))
    assert again.repair() == []
    again.close()
    (tmp_path / "s.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    rebuild_from_journal(tmp_path / "s.h5", journal_path(tmp_path / "s.h5"), _render)
    rebuilt = SessionFile.reopen(tmp_path / "s.h5", mode="r")
    assert rebuilt.table("responses")["presentation_id"].tolist() == ["p0", "p1"]
    rebuilt.close()


def _by_thread(thread: int, codes: np.ndarray) -> np.ndarray:
    """:func:`_render` as a rebuild calls it, for thread 0 of a one-thread session."""
    assert thread == 0
    return _render(codes)
