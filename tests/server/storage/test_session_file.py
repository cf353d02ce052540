"""The session file on disk: what the rig reported, read back as written; late responses
apart; files that are not session files refused; missing images not found."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from protocol.errors import ConfigError, NotFound
from protocol.messages import Presentation, Response
from server.storage.catalog import stored_status
from server.storage.records import SessionFileError
from server.storage.session_file import SessionFile


def test_existing_file_is_not_overwritten(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists"):
        SessionFile(path, {})
    assert path.read_bytes() == b"precious"


def _response(pid: str, sid: str, counts: list[float], **kw) -> Response:
    return Response(presentation_id=pid, stimulus_id=sid, counts=counts, **kw)


def test_what_the_rig_reported_reads_back_as_it_was_written(tmp_path):
    store = SessionFile(tmp_path / "s.h5", {"session_id": "s"}, status="running")
    shown = [
        Presentation(presentation_id="p0", stimulus_id="g0-e0", onset=1.5, outcome="ok"),
        Presentation(presentation_id="p1", stimulus_id="g0-e1", onset=1.7, outcome="aborted"),
    ]
    store.append_presentations(0, 0, shown, "zmq:rig-a")
    store.append_responses(
        0, 0, [_response("p0", "g0-e0", [3.0, 1.0], baseline_counts=[0.5, 0.0])], "zmq:rig-a"
    )
    store.append_responses(0, 1, [_response("p2", "g0-e1", [4.0, 2.0])], "http:http")
    store.log_event("block_sent", 0, block=0)
    store.log_event("block_sent", 0, block=1)
    store.log_event("block_sent", 1, block=0)
    stored = store.stored_round(0)
    assert stored.presentations == shown and stored.blocks == 2
    assert [(r.presentation_id, list(r.counts)) for r in stored.responses] == [
        ("p0", [3.0, 1.0]), ("p2", [4.0, 2.0]),
    ]  # fmt: skip
    rows = store.table("responses")
    assert rows["source"].tolist() == ["zmq:rig-a", "http:http"]
    assert rows["block"].tolist() == [0, 1]
    np.testing.assert_array_equal(rows["baseline_counts"], [[0.5, 0.0], [np.nan, np.nan]])
    np.testing.assert_array_equal(rows["baseline_window_ms"][1], [np.nan, np.nan])
    assert [e.detail for e in store.events()] == [{"block": 0}, {"block": 1}, {"block": 0}]
    store.close()


def test_a_resumed_round_gets_back_baselines_windows_and_frame_timing(tmp_path):
    """What a resumed generation re-scores must be what the rig sent: baselines and their
    windows (the score may subtract them), and a window presenter's frame counts."""
    store = SessionFile(tmp_path / "s.h5", {"session_id": "s"}, status="running")
    shown = [
        Presentation(presentation_id="p0", stimulus_id="g0-e0", onset=2.0, outcome="ok",
                     offset=2.1, frames=6, dropped_frames=1),
        Presentation(presentation_id="p1", stimulus_id="g0-e1", onset=2.5, outcome="ok"),
    ]  # fmt: skip
    sent = [
        _response("p0", "g0-e0", [3.0], evoked_window_ms=(60.0, 210.0), baseline_counts=[1.0],
                  baseline_window_ms=(0.0, 45.0)),
        _response("p1", "g0-e1", [2.0], baseline_counts=[0.0]),
        _response("p2", "g0-e1", [4.0]),
    ]  # fmt: skip
    store.append_presentations(0, 0, shown, "zmq:rig")
    store.append_responses(0, 0, sent, "zmq:rig")
    stored = store.stored_round(0)
    assert stored.presentations == shown
    assert stored.responses == sent
    store.close()


def test_presentations_of_a_file_from_before_frame_timing_get_nan_for_it(tmp_path):
    """A session file written before protocol 1.2 has no frame columns: its next
    presentation adds them, NaN for the rows before, so the table stays one length."""
    store = SessionFile(tmp_path / "s.h5", {"session_id": "s"}, status="running")
    old = Presentation(presentation_id="p0", stimulus_id="g0-e0", onset=1.0, outcome="ok")
    store.append_presentations(0, 0, [old], "zmq:rig")
    group = store._file["presentations"]
    for name in ("offset", "frames", "dropped_frames"):
        del group[name]  # as an older server wrote it
    new = Presentation(presentation_id="p1", stimulus_id="g0-e1", onset=2.0, outcome="ok",
                       frames=6, dropped_frames=0)  # fmt: skip
    store.append_presentations(0, 0, [new], "zmq:rig")
    rows = store.table("presentations")
    assert {len(v) for v in rows.values()} == {2}
    np.testing.assert_array_equal(rows["frames"], [np.nan, 6.0])
    assert store.stored_round(0).presentations == [old, new]
    store.close()


def test_late_responses_are_kept_apart_and_count_as_seen_on_resume(tmp_path):
    store = SessionFile(tmp_path / "s.h5", {"session_id": "s"})
    store.append_responses(0, 0, [_response("p0", "g0-e0", [1.0])], "zmq:a")
    store.append_responses(0, -1, [_response("late", "g0-e1", [2.0])], "zmq:a", late=True)
    late = store.table("late_responses")
    assert late["block"].tolist() == [-1] and late["presentation_id"].tolist() == ["late"]
    assert store.table("responses")["presentation_id"].tolist() == ["p0"]
    point = store.resume_point()
    # nothing complete yet: only the late one counts as answered; one channel recorded
    assert (point.done, point.seen, point.n_channels) == (0, {"late"}, 1)
    store.close()


def test_a_file_that_is_not_a_session_file_is_refused_clearly(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(SessionFileError, match="cannot be opened as a session file"):
        SessionFile.reopen(junk)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "someone else's"
    with pytest.raises(SessionFileError, match="not an xdream-rig session file"):
        SessionFile.reopen(tmp_path / "other.h5")
    assert stored_status(tmp_path / "other.h5") is None


def test_missing_images_are_not_found(tmp_path):
    store = SessionFile(tmp_path / "s.h5", {})
    with pytest.raises(NotFound, match="generation 0 is not stored"):
        store.read_image(0, 0)
    assert store.best() is None and store.best_per_generation() == [] and store.timings() == {}
    store.close()
