"""NWB export of a session file: nwbinspector finds nothing critical, and pynwb reads back
every image, count, code and score of the HDF5 file, the trials in the order shown, on the
session's clock (docs/nwb.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from nwbinspector import Importance, inspect_nwbfile
from pynwb import NWBHDF5IO

from protocol.errors import ConfigError
from protocol.messages import Presentation, PresentationParams, Presented, Response
from server.engine.loop import GenerationResult
from server.engine.optimizers.cmaes import SepCMAES
from server.sessions.config import SessionConfig
from server.storage import export_contents, nwb_export
from server.storage.export_contents import SubjectInfo, clock_shift
from server.storage.nwb_export import NwbUnavailable, export_nwb
from server.storage.records import SessionFileError
from server.storage.session_file import SessionFile
from xdream.testing.servers import ROOT, xdream

#: The server's clock when the session was created (the tests set time.time()).
CREATED = 1_790_000_000.0
CHANNELS = 3
SIZE = 16
ANIMAL = SubjectInfo(species="Macaca mulatta", sex="M", age="P6Y")


class Clock:
    """time.time() for the writes, so that the rig's reports arrive when a rig's would."""

    def __init__(self) -> None:
        self.now = CREATED

    def at(self, seconds: float) -> None:
        self.now = CREATED + seconds

    def __call__(self) -> float:
        return self.now


def _shown(pid, sid, onset, outcome="ok", **frames) -> Presentation:
    return Presentation(presentation_id=pid, stimulus_id=sid, onset=onset, outcome=outcome,
                        **frames)  # fmt: skip


def _answer(pid, sid, rng, baseline=False) -> Response:
    counts = rng.integers(0, 30, CHANNELS).astype(float).tolist()
    return Response(
        presentation_id=pid, stimulus_id=sid, counts=counts,
        baseline_counts=[float(c // 3) for c in counts] if baseline else None,
        baseline_window_ms=(0.0, 50.0) if baseline else None,
    )  # fmt: skip


def write_session(path: Path, clock: Clock) -> None:
    """A server's session file of two complete generations (4 evolved images and 2 of 3
    reference images each) and one in flight when it was stopped: 3-channel counts, with
    baselines in generation 0; an aborted trial shown again in block 1; frame timing from
    the first presenter only; a second presenter (its own clock, from 3 s) from generation
    1; a late response and one whose presentation was never reported; a trial with no
    response; an operator's note."""
    rng = np.random.default_rng(7)
    config = SessionConfig(
        name="unit 12, V4", subject="M42", experimenter="Doe, Jane", rig="rig-a",
        generator="pixel", image_size=SIZE, population=4, generations=3, channels=[1],
        references_per_generation=2, params=PresentationParams(on_ms=200.0),
    )  # fmt: skip
    optimizer = SepCMAES(5, seed=3, population=4)
    record = {"session_id": "abc123", "config": config.model_dump(mode="json"),
              "generator": "pixel", "optimizer": "cmaes", "population": 4, "generations": 3,
              "image_size": SIZE, "device": "cpu"}  # fmt: skip
    store = SessionFile(path, record, status="created")
    store.write_references(rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8))
    store.log_event("created")
    clock.at(1.0)
    store.set_status("running")
    store.log_event("running", by="operator")
    store.log_event("block_sent", 0, block=0, stimuli=6, reason="first")

    def generation(index: int, scores: list[float], references: list[tuple[int, float]]):
        codes = optimizer.ask()
        images = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
        optimizer.tell(codes, np.array(scores))
        result = GenerationResult(index, codes, images, np.array(scores), {"tell_s": 0.01})
        store.write_generation(result, optimizer.state_dict(), references)

    ids0 = ["g0-e0", "g0-e1", "g0-e2", "g0-e3", "g0-r0", "g0-r1"]
    clock.at(10.0)  # block 0 reported at its end, each trial 0.5 s on the rig's clock
    store.append_presentations(0, 0, [
        _shown(f"{sid}-b0", sid, 5000.0 + 0.5 * k, "aborted" if sid == "g0-e2" else "ok",
               offset=5000.2 + 0.5 * k, frames=12, dropped_frames=int(k == 3))
        for k, sid in enumerate(ids0)
    ], "zmq:rig-a-1")  # fmt: skip
    clock.at(10.5)
    store.append_responses(0, 0, [_answer(f"{s}-b0", s, rng, baseline=True) for s in ids0],
                           "zmq:recorder")  # fmt: skip
    clock.at(16.0)  # the aborted one again
    store.append_presentations(
        0,
        1,
        [_shown("g0-e2-b1", "g0-e2", 5010.0, offset=5010.2, frames=12, dropped_frames=0)],
        "zmq:rig-a-1",
    )
    store.append_responses(0, 1, [_answer("g0-e2-b1", "g0-e2", rng, baseline=True)],
                           "zmq:recorder")  # fmt: skip
    clock.at(17.0)
    generation(0, [3.0, 7.5, 1.0, 4.0], [(0, 2.5), (1, 6.0)])
    clock.at(18.0)
    store.append_responses(0, -1, [_answer("late-1", "g0-e1", rng)], "http:http", late=True)
    store.log_event("late_responses", 0, count=1)
    store.log_event("alarm", 1, alarm={"kind": "no_presenter", "severity": "warning"})

    ids1 = ["g1-e0", "g1-e1", "g1-e2", "g1-e3", "g1-r0", "g1-r1"]
    clock.at(40.0)  # another presenter, its clock from 3 s, no frame timing
    store.append_presentations(1, 0, [_shown(f"{s}-b0", s, 3.0 + 0.5 * k)
                                      for k, s in enumerate(ids1)], "zmq:rig-b-2")  # fmt: skip
    answered = [s for s in ids1 if s != "g1-e3"]  # g1-e3's trial got no response ...
    store.append_responses(1, 0, [_answer(f"{s}-b0", s, rng) for s in answered] +
                           [_answer("folder-7", "g1-e3", rng)], "zmq:recorder")  # fmt: skip
    clock.at(41.0)  # ... but a presentation never reported did
    store.log_event("note", 1, text="unit well isolated")
    clock.at(45.0)
    generation(1, [2.0, np.nan, 9.0, 5.0], [(2, 1.5), (0, 3.5)])
    clock.at(70.0)  # generation 2 was on the rig when the session was stopped
    store.append_presentations(2, 0, [_shown("g2-e0-b0", "g2-e0", 30.0)], "zmq:rig-b-2")
    store.append_responses(2, 0, [_answer("g2-e0-b0", "g2-e0", rng)], "zmq:recorder")
    clock.at(75.0)
    store.log_event("aborted", 2, by="operator")
    store.close("aborted")


@pytest.fixture()
def session(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "abc123.h5"
    clock = Clock()
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", clock)
        write_session(path, clock)
    return path


def _serious(path: Path) -> tuple[list, list]:
    """nwbinspector's messages at CRITICAL or above (schema validation, check errors), and
    the rest."""
    messages = list(inspect_nwbfile(nwbfile_path=path))
    worst = [m for m in messages if m.importance.value >= Importance.CRITICAL.value]
    return worst, [m for m in messages if m not in worst]


def _shown_text(messages) -> str:
    return "\n".join(f"{m.importance.name} {m.check_function_name} {m.location}: {m.message}"
                     for m in messages)  # fmt: skip


def test_nwbinspector_finds_nothing_critical(session, tmp_path):
    out = tmp_path / "out.nwb"
    export_nwb(session, out, ANIMAL)
    worst, rest = _serious(out)
    assert not worst, _shown_text(worst) + "\n-- and --\n" + _shown_text(rest)
    # Nor any best-practice violation; suggestions remain (docs/nwb.md, "nwbinspector").
    violations = [m for m in rest if m.importance is Importance.BEST_PRACTICE_VIOLATION]
    assert not violations, _shown_text(violations)


def test_without_the_animals_details_the_inspector_asks_for_its_age(session, tmp_path):
    """The settings name the subject, not its age: NWB's Subject gets sex U (unknown) and
    no age, which nwbinspector reports as critical (DANDI requires it)."""
    out = tmp_path / "out.nwb"
    export_nwb(session, out)
    worst, _ = _serious(out)
    assert [m.check_function_name for m in worst] == ["check_subject_age"], _shown_text(worst)
    with NWBHDF5IO(out, "r") as io:
        subject = io.read().subject
        assert (subject.subject_id, subject.sex, subject.species) == ("M42", "U", None)


def test_everything_reads_back_from_the_nwb_file(session, tmp_path):
    out = tmp_path / "out.nwb"
    summary = export_nwb(session, out, ANIMAL)
    with h5py.File(session, "r") as f:
        h5 = {name: f[name][()] for name in (
            "generations/images", "generations/codes", "generations/scores",
            "generations/index", "references/images", "references/score",
        )}  # fmt: skip
        rows = {t: {c: ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
                    for c, ds in f[t].items()}
                for t in ("presentations", "responses", "late_responses")}  # fmt: skip
    evolved, refs = len(h5["generations/images"]), len(h5["references/images"])
    assert (summary.images, summary.trials, summary.responses) == (evolved + refs, 14, 15)
    with NWBHDF5IO(out, "r") as io:
        nwb = io.read()
        # -- every image, in the order the indices count them
        images = nwb.stimulus_template["images"]
        ordered = list(images.order_of_images.data)
        assert len(ordered) == evolved + refs == 11
        for i in range(evolved):
            np.testing.assert_array_equal(ordered[i].data[()], h5["generations/images"][i])
        for k in range(refs):
            np.testing.assert_array_equal(ordered[evolved + k].data[()], h5["references/images"][k])
        assert [im.name for im in ordered[:5]] == ["g0-e0", "g0-e1", "g0-e2", "g0-e3", "g1-e0"]
        assert ordered[-1].name == "reference-2"
        # -- the trials, in the order shown, on the session's clock
        trials = nwb.trials.to_dataframe()
        assert trials["presentation_id"].tolist() == [
            "g0-e0-b0", "g0-e1-b0", "g0-e2-b0", "g0-e3-b0", "g0-r0-b0", "g0-r1-b0", "g0-e2-b1",
            "g1-e0-b0", "g1-e1-b0", "g1-e2-b0", "g1-e3-b0", "g1-r0-b0", "g1-r1-b0", "g2-e0-b0",
        ]  # fmt: skip
        # First presenter: the block reported at 10 s, its re-presentation (onset 5010)
        # at 16 s: the latter is the tighter bound, so onset 5010 -> 16 s.
        np.testing.assert_allclose(trials["start_time"][:7],
                                   [6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 16.0])  # fmt: skip
        np.testing.assert_allclose(trials["stop_time"][:7], trials["start_time"][:7] + 0.2)
        # Second presenter: its block reported at 40 s, the last trial 2.5 s after the first.
        np.testing.assert_allclose(trials["start_time"][7:], [37.5, 38, 38.5, 39, 39.5, 40, 64.5])
        np.testing.assert_allclose(trials["stop_time"][7:], trials["start_time"][7:] + 0.2)
        assert trials["rig_onset"].tolist() == [
            *sorted(rows["presentations"]["onset"][:7]),
            3.0,
            3.5,
            4.0,
            4.5,
            5.0,
            5.5,
            30.0,
        ]
        assert trials["generation"].tolist() == [0] * 7 + [1] * 6 + [2]
        assert trials["block"].tolist() == [0] * 6 + [1] + [0] * 7
        assert set(trials["thread"]) == {0}
        assert trials["outcome"].tolist().count("aborted") == 1
        assert trials["is_reference"].tolist() == [False] * 4 + [True] * 2 + [False] * 5 + [
            True, True, False]  # fmt: skip
        assert trials["frames"][:7].tolist() == [12.0] * 7
        assert np.isnan(trials["frames"][7:].astype(float)).all()
        assert trials["dropped_frames"][:7].tolist() == [0, 0, 0, 1, 0, 0, 0]
        # -- which image each trial showed, and its score
        index = trials["image_index"].tolist()
        assert index[:6] == [0, 1, 2, 3, 8, 9] and index[6] == 2  # references 0, 1
        assert index[7:] == [4, 5, 6, 7, 10, 8, -1]  # references 2, 0; g2 never completed
        # evolved images: their generation's scores; references: their showing's score
        assert h5["generations/scores"][[0, 1, 2, 3, 4, 6, 7]].tolist() == [
            3.0, 7.5, 1.0, 4.0, 2.0, 9.0, 5.0]  # fmt: skip
        nan = np.nan
        np.testing.assert_array_equal(
            trials["score"], [3.0, 7.5, 1.0, 4.0, 2.5, 6.0, 1.0, 2.0, nan, 9.0, 5.0, 1.5, 3.5, nan]
        )
        presentations = nwb.stimulus["presentations"]
        assert presentations.indexed_images.name == "images"
        assert presentations.data[:].tolist() == [i for i in index if i >= 0]
        np.testing.assert_array_equal(presentations.timestamps[:], trials["start_time"][:13])
        # -- every count: per trial, and every response as stored
        counts = np.stack(trials["counts"])
        answered = {**dict(zip(rows["responses"]["presentation_id"], rows["responses"]["counts"],
                               strict=True)),
                    **dict(zip(rows["late_responses"]["presentation_id"],
                               rows["late_responses"]["counts"], strict=True))}  # fmt: skip
        for pid, got in zip(trials["presentation_id"], counts, strict=True):
            if pid in answered:
                np.testing.assert_array_equal(got, answered[pid])
            else:
                assert pid == "g1-e3-b0" and np.isnan(got).all()
        base = np.stack(trials["baseline_counts"])
        assert not np.isnan(base[:7]).any() and np.isnan(base[7:]).all()
        xdream_records = nwb.processing["xdream"]
        responses = xdream_records["responses"].to_dataframe()
        stored = np.concatenate([rows["responses"]["counts"], rows["late_responses"]["counts"]])
        np.testing.assert_array_equal(np.stack(responses["counts"]), stored)
        np.testing.assert_array_equal(
            np.stack(responses["baseline_counts"]),
            np.concatenate([rows["responses"]["baseline_counts"],
                            rows["late_responses"]["baseline_counts"]]),
        )  # fmt: skip
        assert responses["late"].tolist() == [False] * 14 + [True]
        assert "folder-7" in set(responses["presentation_id"])
        # -- codes and scores per image
        table = xdream_records["evolved_images"].to_dataframe()
        np.testing.assert_array_equal(np.stack(table["code"]), h5["generations/codes"])
        np.testing.assert_array_equal(table["score"], h5["generations/scores"])
        assert table["generation"].tolist() == h5["generations/index"].tolist()
        shown_refs = xdream_records["reference_showings"].to_dataframe()
        assert shown_refs["reference"].tolist() == [0, 1, 2, 0]
        assert shown_refs["image_index"].tolist() == [8, 9, 10, 8]


def test_metadata_notes_events_and_settings(session, tmp_path):
    out = tmp_path / "out.nwb"
    export_nwb(session, out, ANIMAL)
    with NWBHDF5IO(out, "r") as io:
        nwb = io.read()
        assert nwb.identifier == nwb.session_id == "abc123"
        assert nwb.session_description == "unit 12, V4"
        assert nwb.session_start_time.timestamp() == CREATED
        assert nwb.session_start_time.utcoffset() is not None
        assert nwb.timestamps_reference_time == nwb.session_start_time
        assert list(nwb.experimenter) == ["Doe, Jane"]
        s = nwb.subject
        assert (s.subject_id, s.species, s.sex, s.age) == ("M42", "Macaca mulatta", "M", "P6Y")
        assert list(nwb.devices) == ["rig-a"]
        noted = dt.datetime.fromtimestamp(CREATED + 41, dt.timezone.utc)
        assert nwb.notes == f"generation 1, {noted:%Y-%m-%d %H:%M:%S} UTC: unit well isolated"
        records = nwb.processing["xdream"]
        events = records["events"].to_dataframe()
        assert events["kind"].tolist() == ["created", "running", "block_sent", "late_responses",
                                           "alarm", "note", "aborted"]  # fmt: skip
        note = events[events["kind"] == "note"].iloc[0]
        assert (note["time"], note["generation"]) == (41.0, 1)
        assert (list(note["detail_key"]), list(note["detail_value"])) == (
            ["text"], ['"unit well isolated"'])  # fmt: skip
        alarm = events[events["kind"] == "alarm"].iloc[0]
        assert list(alarm["detail_key"]) == ["alarm.kind", "alarm.severity"]
        settings = dict(zip(*(records["settings"][c][:] for c in ("setting", "value")),
                            strict=True))  # fmt: skip
        assert json.loads(settings["config.params.on_ms"]) == 200.0
        assert json.loads(settings["config.channels"]) == [1]
        assert json.loads(settings["generator"]) == "pixel"
        assert json.loads(settings["status"]) == "aborted"
        assert json.loads(settings["optimizer_state.generation"]) == 2
        assert json.loads(settings["optimizer_state.settings.population"]) == 4


def test_images_are_read_one_at_a_time_while_written(session, tmp_path, monkeypatch):
    """Gathering reads no image but the first (its shape); the writer reads each once."""
    reads = []
    original = SessionFile.read_image

    def counted(self, generation, position, thread=0):
        reads.append((generation, position))
        return original(self, generation, position, thread)

    monkeypatch.setattr(SessionFile, "read_image", counted)
    store = SessionFile.reopen(session, mode="r")
    try:
        contents = export_contents.gather(store, SubjectInfo())
        assert reads == [(0, 0)]
        assert [p.read().shape for p in contents.pictures[:2]] == [(SIZE, SIZE, 3)] * 2
        assert reads == [(0, 0), (0, 0), (0, 1)]
    finally:
        store.close()
    reads.clear()
    export_nwb(session, tmp_path / "out.nwb")
    assert sorted(reads) == sorted([(0, 0)] + [(g, p) for g in (0, 1) for p in range(4)])


def test_a_file_from_before_frame_timing_exports_without_those_columns(session, tmp_path):
    with h5py.File(session, "r+") as f:
        for name in ("offset", "frames", "dropped_frames"):
            del f["presentations"][name]  # as a server before protocol 1.2 wrote it
    out = tmp_path / "out.nwb"
    export_nwb(session, out, ANIMAL)
    with NWBHDF5IO(out, "r") as io:
        trials = io.read().trials
        assert not {"frames", "dropped_frames", "rig_offset"} & set(trials.colnames)
        np.testing.assert_allclose(trials["stop_time"][:] - trials["start_time"][:], 0.2)


def test_an_in_silico_run_exports_images_codes_and_scores_without_trials(tmp_path):
    """``xdream evolve`` files hold no presentations: no trials, no presentation series."""
    store = SessionFile(tmp_path / "session.h5", {"target": "unit", "generator": "pixel"})
    images = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    result = GenerationResult(0, np.ones((2, 3)), images, np.array([1.0, 2.0]), {})
    store.write_generation(result, {"generation": 1})
    store.close("finished")
    out = tmp_path / "evolve.nwb"
    summary = export_nwb(tmp_path / "session.h5", out)
    assert (summary.images, summary.trials, summary.responses) == (2, 0, 0)
    with NWBHDF5IO(out, "r") as io:
        nwb = io.read()
        assert nwb.trials is None and not nwb.stimulus and nwb.subject is None
        assert nwb.identifier == "session"
        ordered = nwb.stimulus_template["images"].order_of_images.data
        np.testing.assert_array_equal(ordered[1].data[()], images[1])
    with pytest.raises(ConfigError, match="give the subject's id"):  # it names none
        export_nwb(tmp_path / "session.h5", tmp_path / "other.nwb", SubjectInfo(age="P1Y"))


def test_the_rig_clock_is_aligned_per_presenter_run():
    start = 100.0
    onset = np.array([5000.0, 5000.5, 5010.0, 3.0, 3.5, 4.5, 4.0, 9.0])
    received = start + np.array([10.0, 10.0, 16.0, 40.0, 40.0, 38.0, 38.0, 50.0])
    source = np.array(["a", "a", "a", "b", "b", "b", "b", "c"], dtype=object)
    times = onset + clock_shift(onset, received, source, start)
    # a: the tightest bound is the re-presentation's; b restarts at 4.0 (a decrease); c is
    # another presenter (its clock may be ahead: a run of its own all the same).
    np.testing.assert_allclose(times, [6.0, 6.5, 16.0, 36.5, 37.0, 38.0, 38.0, 50.0])
    assert (times <= received - start).all()
    assert clock_shift(np.array([]), np.array([]), np.array([]), start).size == 0


def test_trials_stay_in_time_order_where_two_presenters_estimates_overlap(tmp_path, monkeypatch):
    """Presenter b's clock ran fast (5 s between trials the server got 0.2 s apart), so its
    alignment puts its first trial among presenter a's: the trials are sorted by time, as
    NWB wants, and the presentation series with them."""
    path, clock = tmp_path / "s.h5", Clock()
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", clock)
        store = SessionFile(path, {"session_id": "s"})
        clock.at(10.0)
        store.append_presentations(0, 0, [_shown(f"a{k}", f"g0-e{k}", float(k))
                                          for k in range(5)], "zmq:a")  # fmt: skip
        for at, onset, pid in ((11.0, 50.0, "b0"), (11.2, 55.0, "b1")):
            clock.at(at)
            store.append_presentations(0, 1, [_shown(pid, "g0-e0", onset)], "zmq:b")
        store.close()
    store = SessionFile.reopen(path, mode="r")
    try:
        trials = export_contents.gather(store, SubjectInfo()).trials
    finally:
        store.close()
    assert trials is not None
    assert trials["presentation_id"].data.tolist() == ["a0", "b0", "a1", "a2", "a3", "a4", "b1"]
    np.testing.assert_allclose(trials["start_time"].data, [6, 6.2, 7, 8, 9, 10, 11.2])


def test_unreadable_input_and_existing_output_are_refused_clearly(session, tmp_path):
    with pytest.raises(SessionFileError, match="no session file at"):
        export_nwb(tmp_path / "missing.h5", tmp_path / "a.nwb")
    (tmp_path / "junk.h5").write_bytes(b"not HDF5")
    with pytest.raises(SessionFileError, match="cannot be opened as a session file"):
        export_nwb(tmp_path / "junk.h5", tmp_path / "a.nwb")
    (tmp_path / "taken.nwb").write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="already exists"):
        export_nwb(session, tmp_path / "taken.nwb")
    assert (tmp_path / "taken.nwb").read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc123.h5", "junk.h5", "taken.nwb"]


def test_a_file_a_server_holds_is_refused_with_the_way_out(tmp_path):
    store = SessionFile(tmp_path / "live.h5", {"session_id": "live"})
    try:
        ran = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; from server.storage.nwb_export "
             f"import export_nwb; export_nwb(Path({str(tmp_path / 'live.h5')!r}), "
             f"Path({str(tmp_path / 'x.nwb')!r}))"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
    finally:
        store.close()
    assert "download /api/sessions/live/session.nwb from that server" in ran.stderr, ran.stderr


def test_without_pynwb_the_error_says_what_to_install(session, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:  # not installed
        patch.setattr(nwb_export.importlib.util, "find_spec", lambda name: None)
        with pytest.raises(NwbUnavailable, match=r"not installed: pip install 'xdream-rig\[nwb\]'"):
            export_nwb(session, tmp_path / "out.nwb")
    monkeypatch.setitem(sys.modules, "server.storage.nwb_writer", None)  # installed, broken
    with pytest.raises(NwbUnavailable, match=r"cannot be imported \(.+\): pip install"):
        export_nwb(session, tmp_path / "out.nwb")
    assert not (tmp_path / "out.nwb").exists()


def test_the_command_line_exports_end_to_end(session, tmp_path):
    out = tmp_path / "cli.nwb"
    run = xdream("export", "--nwb", str(session), str(out), "--species", "Macaca mulatta",
                 "--age", "P6Y", stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert stdout.strip() == f"wrote {out}: 11 images, 14 trials, 15 responses"
    with NWBHDF5IO(out, "r") as io:
        assert io.read().subject.age == "P6Y"
    again = xdream("export", "--nwb", str(session), str(out), stderr=subprocess.PIPE)
    assert again.wait(120) == 2
    assert again.stderr is not None
    assert again.stderr.read().strip() == (
        f"xdream export: error: {out} already exists; choose a new name or remove it"
    )


def test_a_session_of_two_threads_exports_each_threads_images_and_codes(tmp_path):
    """Each trial names the thread of the image it showed, and the image is that thread's;
    the threads' codes, of different lengths, are a list per row."""
    from tests.server.sessions.doubles import FakeTransport, answer, config, manager_in, run

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path / "data", transport) as manager:
            session = await manager.create(config(
                generations=2, references_per_generation=2, subject="M7", threads=[
                    {}, {"generator": "fourier", "optimizer": "ga", "population": 4}],
            ))  # fmt: skip
            await session.start()
            for g in range(2):
                block = await transport.next(g)
                shown = [
                    _shown(f"{s.stimulus_id}-b0-r0", s.stimulus_id, 10.0 * g + 0.5 * i)
                    for i, s in enumerate(block.content.stimuli)
                ]
                await session.ingest_presented(Presented(generation=g, presentations=shown),
                                               "test", "rig")  # fmt: skip
                await answer(session, block)
            while not session.state.final:
                await asyncio.sleep(0.01)
            return session.store.path

    path = run(main())
    out = tmp_path / "two.nwb"
    summary = export_nwb(path, out, ANIMAL)
    with h5py.File(path, "r") as f:
        images = [f["generations/images"][()], f["threads/1/generations/images"][()]]
        codes = [f["generations/codes"][()], f["threads/1/generations/codes"][()]]
    with h5py.File(path, "r") as f:
        references = len(f["references/images"])
    assert summary.images == 12 + 8 + references and summary.trials == 2 * (6 + 4 + 2)
    worst, _ = _serious(out)
    assert not worst, _shown_text(worst)
    with NWBHDF5IO(out, "r") as io:
        nwb = io.read()
        ordered = list(nwb.stimulus_template["images"].order_of_images.data)
        assert ordered[12].name == "g0-t1-e0" and ordered[0].name == "g0-t0-e0"
        trials = nwb.trials.to_dataframe()
        assert (trials["image_index"] >= 0).all()
        for sid, thread, index in zip(trials["stimulus_id"], trials["thread"],
                                      trials["image_index"], strict=True):  # fmt: skip
            assert thread == (1 if "-t1-" in sid else 0)
            if "-r" not in sid:
                generation, position = int(sid.split("-")[0][1:]), int(sid.split("-e")[1])
                first = 0 if thread == 0 else 12
                size = 6 if thread == 0 else 4
                assert index == first + generation * size + position
                np.testing.assert_array_equal(
                    ordered[index].data[()], images[thread][generation * size + position]
                )
        table = nwb.processing["xdream"]["evolved_images"].to_dataframe()
        assert table["thread"].tolist() == [0] * 12 + [1] * 8
        assert [len(c) for c in table["code"]] == [3072] * 12 + [7200] * 8
        np.testing.assert_array_equal(table["code"].iloc[13], codes[1][1])
