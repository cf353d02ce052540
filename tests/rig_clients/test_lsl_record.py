"""``xdream record --lsl``: onset markers, clock offsets, and the whole path over real LSL.

The fast tests check the marker format, the clock arithmetic (with a fake inlet), what the
loop sends a real server (fed by fake inlets) and the command line. The slow ones run a
real rig in a private network namespace (LSL finds streams by multicast; there it reaches
nothing but loopback): ``xdream serve`` with a session, a fake acquisition system publishing
spikes on LSL (``python -m`` this module ``source``), ``xdream record --lsl``, and the
presenter, which shows each generation by pushing onset markers with
:class:`~rig_clients.lsl_markers.MarkerOutlet`. Stimulus ``k`` gets ``k + 1 + c`` spikes on
channel ``c`` in the evoked window, 2 in the baseline, and spikes outside both that must not
count; the test reads back what the server stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from protocol.errors import ConfigError
from protocol.messages import Presentation, Response, ResponsesAck, Role
from rig_clients import lsl_record
from rig_clients.connection import Connection
from rig_clients.lsl_markers import BadMarker, MarkerOutlet, Onset, encode_onset, parse_marker
from rig_clients.lsl_record import CHUNK, ClockedInlet, LslRecording, LslSettings
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from rig_clients.trial_counts import SpikeEvents, TrialCounter, Windows
from xdream.main import main as xdream_main
from xdream.testing.servers import ROOT, create_session, running_server, xdream

MODULE = "tests.rig_clients.test_lsl_record"


# -- the marker format ---------------------------------------------------------------------
def test_an_onset_marker_round_trips_with_its_timestamp():
    text = encode_onset("a1b2c3d4", 3, "g3-e1-b0-r0", "g3-e1")
    assert json.loads(text) == {
        "event": "onset", "session": "a1b2c3d4", "generation": 3,
        "presentation_id": "g3-e1-b0-r0", "stimulus_id": "g3-e1",
    }  # fmt: skip
    assert parse_marker(text, 12.5) == Onset("a1b2c3d4", 3, "g3-e1-b0-r0", "g3-e1", 12.5)


def test_what_matlab_jsonencode_writes_parses_and_extra_fields_are_ignored():
    text = (
        '{"event":"onset","session":"s1","generation":0,"presentation_id":"p",'
        '"stimulus_id":"x","trial":17}'
    )
    assert parse_marker(text, 1.0) == Onset("s1", 0, "p", "x", 1.0)


def test_other_xdream_events_are_not_onsets():
    assert parse_marker('{"event": "offset", "presentation_id": "p"}', 1.0) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("StimOn", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "JSON but not an object"),
        ('{"trial": 3}', 'no "event" string'),
        ('{"event":"onset","session":"s","generation":"3","presentation_id":"p",'
         '"stimulus_id":"x"}', "onset field generation: Input should be a valid integer"),
        ('{"event":"onset","session":"s","generation":true,"presentation_id":"p",'
         '"stimulus_id":"x"}', "onset field generation: Input should be a valid integer"),
        ('{"event":"onset","session":"s","generation":1,"presentation_id":"",'
         '"stimulus_id":"x"}', "onset field presentation_id: String should have at least 1 "
                               "character"),
        ('{"event":"onset","session":"s","generation":1,"presentation_id":"p"}',
         "onset field stimulus_id: Field required"),
    ],
)  # fmt: skip
def test_markers_that_are_not_ours_say_what_is_wrong_without_their_text(text, problem):
    with pytest.raises(BadMarker) as caught:
        parse_marker(text, 1.0)
    assert caught.value.problem == problem
    assert isinstance(caught.value, ConfigError)


def test_the_pure_parts_import_without_pylsl_and_the_outlet_says_what_to_install():
    probe = (
        "import sys\n"
        "sys.modules['pylsl'] = None\n"
        "import rig_clients.lsl_record, rig_clients.trial_counts\n"
        "from rig_clients.lsl_markers import MarkerOutlet\n"
        "from protocol.errors import ConfigError\n"
        "try:\n"
        "    MarkerOutlet()\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'xdream-rig[lsl]'" in done.stdout


# -- clock offsets, with a fake inlet ------------------------------------------------------
class FakeInlet:
    """Chunks to hand out, and the offsets ``time_correction`` reports one after another
    (an exception: that estimate fails)."""

    def __init__(self, offsets: list[Any]) -> None:
        self.offsets = offsets
        self.chunks: list[tuple[list[Any], list[float]]] = []
        self.estimates = 0

    def time_correction(self, timeout: float) -> float:
        self.estimates += 1
        offset = self.offsets.pop(0)
        if isinstance(offset, Exception):
            raise offset
        return offset

    def pull_chunk(self, timeout: float, max_samples: int) -> tuple[list[Any], list[float]]:
        return self.chunks.pop(0) if self.chunks else ([], [])


def test_timestamps_get_the_streams_offset_re_estimated_every_five_seconds():
    now = [100.0]
    inlet = FakeInlet([-1000.0, -1000.5, RuntimeError("timeout"), -999.0])
    clocked = ClockedInlet(inlet, lambda: now[0], refresh_s=5.0)

    def pull(*stamps: float) -> list[float]:
        inlet.chunks.append(([[0]] * len(stamps), list(stamps)))
        return clocked.pull()[1].tolist()

    assert pull(1100.0, 1100.25) == [100.0, 100.25]
    now[0] = 104.9
    assert pull(1100.0) == [100.0] and inlet.estimates == 1  # not due yet
    now[0] = 105.0
    assert pull(1100.0) == [99.5]  # the clocks drifted apart by half a second
    now[0] = 110.0
    assert pull(1100.0) == [99.5] and inlet.estimates == 3  # failed: the last estimate holds
    now[0] = 115.0
    assert pull(1100.0) == [101.0]


def test_draining_pulls_until_the_inlet_has_nothing_more():
    inlet = FakeInlet([2.0])
    clocked = ClockedInlet(inlet, lambda: 0.0)
    inlet.chunks = [([[1]] * CHUNK, [1.0] * CHUNK), ([[1]] * 3, [5.0, 6.0, 7.0])]
    chunks = list(clocked.drain())
    assert [len(stamps) for _, stamps in chunks] == [CHUNK, 3]
    assert chunks[1][1].tolist() == [7.0, 8.0, 9.0]


# -- the loop, with fake inlets and a real server ---------------------------------------------
def test_a_refused_batch_is_sent_again_trial_by_trial_so_only_the_bad_one_is_lost(tmp_path):

    with running_server(tmp_path / "data") as server:
        session = create_session(
            server, generator="pixel", image_size=16, population=3, generations=1,
            response_timeout_s=600,
        )  # fmt: skip
        rig = Connection(server.zmq, [Role.presenter, Role.recorder], "rig")
        rig.connect(timeout_s=20)
        try:
            block = Presenter(rig).next_block(timeout_s=30)
            assert block is not None
            ids = ["no-such-stimulus"] + [s.stimulus_id for s in block.stimuli]
            markers, spikes = FakeInlet([-5.0] * 3), FakeInlet([0.0] * 3)
            markers.chunks.append((
                [[encode_onset(session, 0, f"{sid}-r0", sid)] for sid in ids],
                [15.0 + k for k in range(len(ids))],  # local 10, 11, 12, 13
            ))  # fmt: skip
            spikes.chunks.append(([[0], [0], [0]], [11.1, 12.1, 12.15]))  # 1, 2, 0 evoked
            now, said = [0.0], []
            counter = TrialCounter(SpikeEvents(1), Windows())
            recording = LslRecording(
                Recorder(rig), ClockedInlet(markers, lambda: now[0]),
                ClockedInlet(spikes, lambda: now[0]), counter, lambda: now[0], say=said.append,
            )  # fmt: skip
            now[0] = 20.0
            recording.step()
        finally:
            rig.close()
        state = server.wait_for(session, lambda s: s["state"] == "finished")  # all 3 taken
    assert (recording.accepted, recording.duplicates, recording.refused) == (3, 0, 1)
    assert len(said) == 1 and said[0].startswith(
        f"1 responses of session {session} generation 0 refused (no-such-stimulus-r0): "
        "UnknownStimulus"
    ), said
    assert state["history"]["mean"] == [1.0], state["history"]  # the markers' offset applied


class StalledRecorder:
    """A recorder whose server does not answer until ``answer`` is set: each send waits."""

    def __init__(self) -> None:
        self.connection = self
        self.waiting, self.answer = threading.Event(), threading.Event()
        self.sent: list[list[float]] = []

    def poll(self, timeout_s: float) -> None:
        time.sleep(timeout_s)

    def send(self, session: str, generation: int, responses: list[Response]) -> ResponsesAck:
        self.waiting.set()
        assert self.answer.wait(60), "the test never let the server answer"
        self.sent += [r.counts for r in responses]
        return ResponsesAck(accepted=len(responses), duplicates=0)


def wait_until(done: Any, what: str) -> None:
    deadline = time.monotonic() + 30  # only a hung test waits this long
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_the_streams_are_pulled_and_counted_while_the_server_does_not_answer():
    """The first trial's counts wait for a server that is away; meanwhile the second
    trial's marker and spikes are taken from the inlets (which LSL would otherwise let
    overflow) and counted, and go out once the server answers."""
    markers, spikes = FakeInlet([0.0]), FakeInlet([0.0])
    markers.chunks.append(([[encode_onset("s1", 0, "p1", "x1")]], [10.0]))
    spikes.chunks.append(([[0]], [10.1]))
    recorder = StalledRecorder()
    counter = TrialCounter(SpikeEvents(1), Windows())
    now = [10.5]  # the first trial's windows (and the latency margin) are over
    clock = lambda: now[0]  # noqa: E731
    recording = LslRecording(
        recorder, ClockedInlet(markers, clock), ClockedInlet(spikes, clock),  # type: ignore[arg-type]
        counter, clock,
    )  # fmt: skip
    running = threading.Thread(target=recording.run, args=(lambda: len(recorder.sent) == 2,))
    running.start()
    try:
        wait_until(recorder.waiting.is_set, "the first trial was never sent")
        markers.chunks.append(([[encode_onset("s1", 0, "p2", "x2")]], [11.0]))
        spikes.chunks.append(([[0], [0]], [11.1, 11.15]))
        wait_until(lambda: not markers.chunks and not spikes.chunks, "the inlets were not pulled")
        now[0] = 11.5  # the second trial's windows are over too
        wait_until(lambda: counter.pending == 0, "the second trial was not counted")
        assert recorder.sent == []  # all the while, the first send waited for the server
    finally:
        recorder.answer.set()
        running.join(60)
    assert not running.is_alive()
    assert recorder.sent == [[1.0], [2.0]]
    assert recording.accepted == 2 and counter.pending == 0


class BrokenInlet(FakeInlet):
    """Hands out its chunks, then fails as a stream whose source went away."""

    def pull_chunk(self, timeout: float, max_samples: int) -> tuple[list[Any], list[float]]:
        if not self.chunks:
            raise RuntimeError("the stream's source is lost")
        return self.chunks.pop(0)


def test_a_failed_count_is_said_at_once_and_what_was_complete_is_still_sent():
    """The spike inlet fails after the first trial's spikes: the failure is said from the
    counting thread while the first send still waits for the server; the trial counted
    before it goes out all the same, and the recording ends with the error."""
    markers, spikes = FakeInlet([0.0]), BrokenInlet([0.0])
    markers.chunks.append(([[encode_onset("s1", 0, "p1", "x1")]], [10.0]))
    spikes.chunks.append(([[0]], [10.1]))
    recorder, said = StalledRecorder(), []
    clock = lambda: 10.5  # noqa: E731
    recording = LslRecording(
        recorder, ClockedInlet(markers, clock), ClockedInlet(spikes, clock),  # type: ignore[arg-type]
        TrialCounter(SpikeEvents(1), Windows()), clock, say=said.append,
    )  # fmt: skip
    failures: list[BaseException] = []

    def record() -> None:
        try:
            recording.run(lambda: False)
        except RuntimeError as exc:
            failures.append(exc)

    running = threading.Thread(target=record)
    running.start()
    try:
        wait_until(lambda: any("counting the LSL streams stopped" in t for t in said),
                   "the failure was not said while the send waited")  # fmt: skip
        assert recorder.waiting.is_set() and recorder.sent == []
    finally:
        recorder.answer.set()
        running.join(60)
    assert not running.is_alive()
    assert recorder.sent == [[1.0]]
    assert [str(f) for f in failures] == ["the stream's source is lost"]


# -- the command line ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--evoked-ms", "50", "150"], "--evoked-ms needs --lsl"),
        (["--channels", "4"], "--channels needs --lsl"),
        (["--lsl", "Spikes", "counts.csv"], "from a CSV file or from --lsl, not both"),
        (["--lsl", "Spikes", "--baseline-ms", "45", "0"], "the baseline window runs"),
        (["--lsl", "Spikes", "--channels", "0"], "--channels is at least 1"),
        (["--lsl", "Spikes", "--latency-s", "-1"], "--latency-s is 0 to 60 s"),
    ],
)
def test_lsl_options_are_checked_before_anything_is_resolved(argv, message, capsys):
    assert xdream_main(["record", *argv]) == 2
    assert message in capsys.readouterr().err


def test_without_streams_the_error_lists_what_lsl_did_see(monkeypatch):
    class Info:
        def name(self):
            return "EEG-amp"

        def type(self):
            return "EEG"

        def channel_count(self):
            return 8

        def nominal_srate(self):
            return 500.0

        def hostname(self):
            return "rig-pc"

    class Resolver:
        def results(self):
            return [Info()]

    class FakeLsl:
        ContinuousResolver = Resolver

    with pytest.raises(ConfigError) as caught:
        lsl_record.resolve(FakeLsl, ["Spikes", "EEG"], timeout_s=0.0)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "no LSL stream named (or of type) 'Spikes' within 0 s. Streams seen: 'EEG-amp' "
        "(type 'EEG', 8 channels, 500 Hz, on rig-pc)"
    )


def test_settings_default_to_ponce_labs_windows_and_a_quarter_second_margin():
    settings = LslSettings("Spikes")
    assert settings.windows.evoked_ms == (50.0, 200.0)
    assert settings.windows.baseline_ms == (0.0, 45.0)
    assert (settings.markers, settings.latency_s) == ("xdream-markers", 0.25)


# -- real LSL, in a private network namespace -----------------------------------------------
SPIKES = "xdream-test-spikes"
CHANNELS = 3
RATE = 1000.0
#: Seconds between onsets, and from a generation's arrival to its first onset (the
#: source learns each trial's spikes then). The recorder's latency margin: a busy 2-core
#: machine may hold a spike or a marker back for a while; with the default 0.25 s, counts
#: would rarely but then wrongly miss one.
SPACING_S, LEAD_S, LATENCY_S = 0.5, 1.0, 1.0
#: Spikes of every trial outside both windows (s after onset): before onset, between the
#: baseline and the evoked window, after the evoked one. Every spike is >= 2.5 ms from a
#: window edge, so neither bins (1 ms) nor clock estimates (µs) can move one across.
OUTSIDE_S = (-0.020, 0.0475, 0.205, 0.300)
BASELINE_S = (0.010, 0.030)


def trial_spikes(onset: float, k: int) -> list[tuple[float, int]]:
    """(time, channel) of stimulus ``k``'s spikes: ``k + 1 + c`` on channel ``c`` in the
    evoked window [50, 200) ms, 2 in the baseline [0, 45) ms, and :data:`OUTSIDE_S`."""
    spikes = []
    for channel in range(CHANNELS):
        evoked = k + 1 + channel
        times = [*BASELINE_S, *OUTSIDE_S, *(0.060 + 0.125 * i / evoked for i in range(evoked))]
        spikes += [(onset + t, channel) for t in times]
    return spikes


def expected_response(k: int) -> dict[str, list[float]]:
    return {
        "counts": [float(k + 1 + c) for c in range(CHANNELS)],
        "baseline_counts": [float(len(BASELINE_S))] * CHANNELS,
        "evoked_window_ms": [50.0, 200.0],
        "baseline_window_ms": [0.0, 45.0],
    }


def _isolation_problem(shift: int) -> str | None:
    """Why this machine cannot run the real-LSL tests (None: it can)."""
    missing = [tool for tool in ("unshare", "ip") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} (util-linux, iproute2)"
    probes = [["unshare", "-n", "--", "sh", "-c", "ip link set lo up"]]
    if shift:
        probes.append(["unshare", "-T", "--monotonic", str(shift), "true"])
    for probe in probes:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if done.returncode:
            return f"`{' '.join(probe)}` is not permitted here (run as root): {done.stderr.strip()}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "shift"),
    [("events", 0), ("binned", 0), ("binned", 1000)],
    ids=["events", "binned", "binned-recorder-clock-1000s-ahead"],
)
def test_counts_from_lsl_reach_the_session_file_exactly(kind, shift, tmp_path):
    problem = _isolation_problem(shift)
    if problem:
        pytest.skip(problem)
    config = tmp_path / "lsl_api.cfg"
    config.write_text(
        "[ports]\nIPv6 = disable\n\n[multicast]\nResolveScope = machine\n\n[log]\nlevel = -2\n"
    )
    out = tmp_path / "result.json"
    command = [
        "unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
        sys.executable, "-m", MODULE, "scenario", kind, str(shift), str(out),
    ]  # fmt: skip
    env = {**os.environ, "LSLAPICFG": str(config), "PYTHONUNBUFFERED": "1"}
    scenario = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: all of it can be stopped at once
    )  # fmt: skip
    try:
        output = scenario.communicate(timeout=240)[0]
    except subprocess.TimeoutExpired:
        os.killpg(scenario.pid, signal.SIGKILL)
        output = scenario.communicate()[0] + "\n(timed out)"
    recorder_log = tmp_path / "recorder.log"
    told = recorder_log.read_text() if recorder_log.exists() else "(no recorder log)"
    assert scenario.returncode == 0, f"{output[-5000:]}\n--- recorder:\n{told[-3000:]}"
    result = json.loads(out.read_text())
    log = result["recorder_log"]
    assert result["interfaces"] == ["lo"]  # no way out of the namespace
    assert result["stored"] == result["expected"], log
    assert result["late_responses"] == 0
    assert log.count("not JSON") == 1, log  # six foreign markers, one warning
    assert "raise --latency-s" not in log, log
    if kind == "events":  # one onset after the session's end: refused, reported, status 1
        assert "generation 1 refused (after-the-end): SessionStateError" in log, log
        assert "6 responses accepted, 0 duplicates, 1 refused; 6 markers skipped" in log, log
        assert result["recorder_exit"] == 1
    else:
        assert "6 responses accepted, 0 duplicates, 0 refused; 6 markers skipped" in log, log
        assert result["recorder_exit"] == 0


# -- what runs inside the namespace (python -m tests.rig_clients.test_lsl_record ...) ------
def _source(kind: str) -> None:
    """A fake acquisition system: an LSL spike stream (spike events, or 1 ms bins) playing
    in real time the spikes of the trials read from stdin (JSON lines: ``onset`` in
    ``local_clock()``, stimulus ``k``), until stdin closes."""
    import pylsl

    if kind == "events":
        info = pylsl.StreamInfo(SPIKES, "Spikes", 1, pylsl.IRREGULAR_RATE, pylsl.cf_int32, SPIKES)
        info.desc().append_child_value("spike_channels", str(CHANNELS))
    else:
        info = pylsl.StreamInfo(SPIKES, "SpikeCounts", CHANNELS, RATE, pylsl.cf_float32, SPIKES)
    outlet = pylsl.StreamOutlet(info)
    plan: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            plan.put(line)
        plan.put(None)

    threading.Thread(target=read, daemon=True).start()
    spikes: list[tuple[float, int]] = []
    next_bin = pylsl.local_clock()
    print("ready", flush=True)
    while True:
        while not plan.empty():
            line = plan.get()
            if line is None:
                return
            trial = json.loads(line)
            spikes = sorted(spikes + trial_spikes(trial["onset"], trial["k"]))
            assert spikes[0][0] >= next_bin, "a trial announced after its spikes' time"
        now = pylsl.local_clock()
        if kind == "events":
            while spikes and spikes[0][0] <= now:
                t, channel = spikes.pop(0)
                outlet.push_sample([channel], t)
        else:
            while next_bin + 1 / RATE <= now:
                counts = [0.0] * CHANNELS
                while spikes and spikes[0][0] < next_bin + 1 / RATE:
                    counts[spikes.pop(0)[1]] += 1
                outlet.push_sample(counts, next_bin)
                next_bin += 1 / RATE
        time.sleep(0.002)  # the pace of an acquisition system's chunks


def _wait_for_line(path: Path, text: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert process.poll() is None, f"the recorder ended: {path.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} from the recorder: {path.read_text()}"
        time.sleep(0.05)


@contextlib.contextmanager
def _reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``process``, killed on the way out if it is still running (a failed scenario)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _present(server: Any, markers: Any, source: subprocess.Popen[str]) -> dict[str, Any]:
    """Show the session's two generations: plan each block's spikes with the source, push
    an onset marker (and two foreign ones) at every onset, report it to the server, and
    wait for the session to finish. The expected response per presentation id."""
    import pylsl

    assert source.stdin is not None
    screen = Connection(server.zmq, [Role.presenter], "lsl-rig")
    screen.connect(timeout_s=20)
    presenter = Presenter(screen)
    expected: dict[str, Any] = {}
    for _ in range(2):
        block = presenter.next_block(timeout_s=30)
        assert block is not None, "no generation came"
        start = pylsl.local_clock() + LEAD_S
        onsets = [start + i * SPACING_S for i in range(len(block.stimuli))]
        source.stdin.writelines(
            json.dumps({"onset": t, "k": k}) + "\n" for k, t in enumerate(onsets)
        )
        source.stdin.flush()
        for k, (onset, stimulus) in enumerate(zip(onsets, block.stimuli, strict=True)):
            screen.wait(lambda onset=onset: pylsl.local_clock() >= onset)
            pid = block.presentation_id(stimulus.stimulus_id, 0)
            markers.onset(block.session, block.generation, pid, stimulus.stimulus_id, onset)
            markers.push("StimOn", onset)  # another program's marker on the stream
            markers.push(json.dumps({"event": "offset", "presentation_id": pid}), onset + 0.1)
            shown = Presentation(
                presentation_id=pid, stimulus_id=stimulus.stimulus_id, onset=onset, outcome="ok"
            )
            presenter.report(block, [shown])
            expected[pid] = expected_response(k)
    deadline = time.monotonic() + 60
    while server.session(block.session)["state"] != "finished":
        assert time.monotonic() < deadline, server.session(block.session)
        presenter.next_block(timeout_s=0.2)  # heartbeats meanwhile
    screen.close()
    return expected


def _stored(data: bytes, where: Path) -> tuple[dict[str, Any], int]:
    """The responses in a session file's bytes, by presentation id; and how many late."""

    where.write_bytes(data)
    with h5py.File(where, "r") as f:
        rows = f["responses"]
        stored = {
            pid: {
                name: np.asarray(rows[name][i], dtype=np.float64).tolist()
                for name in ("counts", "baseline_counts", "evoked_window_ms", "baseline_window_ms")
            }
            for i, pid in enumerate(rows["presentation_id"].asstr()[()])
        }
        late = len(f["late_responses/presentation_id"]) if "late_responses" in f else 0
    return stored, late


def _scenario(kind: str, shift: int, out: Path) -> None:
    """Inside the namespace: server, session, fake spikes, ``xdream record --lsl`` (its
    clock ``shift`` s ahead when not 0), and this process presenting by markers."""
    import pylsl

    interfaces = [name for _, name in socket.if_nameindex()]
    assert interfaces == ["lo"], f"not isolated: {interfaces}"
    log = out.parent / "recorder.log"
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_server(out.parent / "data"))
        markers = stack.enter_context(MarkerOutlet(source_id="test-window"))
        session = create_session(
            server, generator="pixel", image_size=16, population=3, generations=2,
            channels=[0, 1, 2], response_timeout_s=600,
        )  # fmt: skip
        source = stack.enter_context(_reaped(subprocess.Popen(
            [sys.executable, "-m", MODULE, "source", kind],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )))  # fmt: skip
        assert source.stdout is not None and source.stdout.readline().strip() == "ready"
        by = ["--lsl", SPIKES] if kind == "events" else ["--lsl", "SpikeCounts"]  # name, type
        recorder = stack.enter_context(_reaped(xdream(
            "record", "--server", server.zmq, *by, "--latency-s", str(LATENCY_S),
            stderr=stack.enter_context(log.open("w")),
            wrapper=("unshare", "-T", "--monotonic", str(shift)) if shift else (),
        )))  # fmt: skip
        _wait_for_line(log, "counting", recorder, timeout=60)
        expected = _present(server, markers, source)
        if kind == "events":  # counts for a session that has ended: refused
            markers.onset(session, 1, "after-the-end", "any-stimulus", pylsl.local_clock())
            _wait_for_line(log, "refused", recorder, timeout=30)
        recorder.send_signal(signal.SIGTERM)
        recorder_exit = recorder.wait(30)
        status, data = server.api("GET", f"/api/sessions/{session}/data")
        assert status == 200, data
    stored, late = _stored(data, out.parent / "session.h5")
    result = {
        "interfaces": interfaces, "expected": expected, "stored": stored, "late_responses": late,
        "recorder_exit": recorder_exit, "recorder_log": log.read_text(),
    }  # fmt: skip
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "source":
        _source(sys.argv[2])
    else:
        _scenario(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
