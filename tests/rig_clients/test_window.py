"""``xdream present --window``: degrees to pixels, frames counted at the refresh rate,
dropped frames found, and the real window under Debian's Xvfb: every frame of a block read
back from the screen (photodiode patch, image size, position and orientation, frames per
trial), then the whole loop with a real server, whose presentations carry the flip times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from protocol.errors import ConfigError
from protocol.messages import Presented, Response, Role
from rig_clients.connection import Connection
from rig_clients.recorder import Recorder
from rig_clients.window.geometry import MonitorProfile, corner_rect, stimulus_rect
from rig_clients.window.timing import check_rate, dropped_frames, frames_for
from tests.rig_clients import window_frames
from xdream.main import main as xdream_main
from xdream.testing.servers import ROOT, create_session, running_server


def test_degrees_become_pixels_by_the_visual_angle():
    profile = MonitorProfile(distance_cm=57.0, width_cm=53.0, resolution=(1920, 1080))
    per_cm = 1920 / 53.0
    # 2 * 57 * tan(0.5 deg) = 0.9948 cm for one degree; 10 degrees is not 10x that.
    assert profile.pixels(1.0) == pytest.approx(0.99484 * per_cm, rel=1e-4)
    assert profile.pixels(10.0) == pytest.approx(2 * 57 * np.tan(np.radians(5)) * per_cm)
    assert profile.offset(-5.0) == pytest.approx(-57 * np.tan(np.radians(5)) * per_cm)
    rect = stimulus_rect(profile, (1920, 1080), 3.0, (0.0, 0.0))
    assert (rect.width, rect.height) == (108, 108)
    assert (rect.x + rect.width / 2, rect.y + rect.height / 2) == (960, 540)
    right_up = stimulus_rect(profile, (1920, 1080), 3.0, (4.0, 2.0))
    assert right_up.x > rect.x and right_up.y > rect.y  # x right, y up (GL's origin)
    assert corner_rect((800, 600), "top-right", 30).__dict__ == {
        "x": 770, "y": 570, "width": 30, "height": 30
    }  # fmt: skip
    with pytest.raises(ConfigError, match="photodiode corner"):
        corner_rect((800, 600), "middle", 30)


def test_a_smaller_window_keeps_the_monitors_pixels_per_degree():
    """``--size 800 600`` on a 1920x1080 monitor: the same image side in pixels (the
    monitor's pixels are as large as ever), placed from the window's own centre."""
    profile = MonitorProfile(distance_cm=57.0, width_cm=53.0, resolution=(1920, 1080))
    full = stimulus_rect(profile, (1920, 1080), 3.0, (4.0, 2.0))
    window = stimulus_rect(profile, (800, 600), 3.0, (4.0, 2.0))
    assert window.width == window.height == full.width == round(profile.pixels(3.0)) == 108
    assert (full.x - window.x, full.y - window.y) == ((1920 - 800) / 2, (1080 - 600) / 2)
    centre = stimulus_rect(profile, (800, 600), 3.0, (0.0, 0.0))
    assert (centre.x + centre.width / 2, centre.y + centre.height / 2) == (400, 300)


def test_monitor_profiles_load_or_say_what_is_wrong(tmp_path):
    good = tmp_path / "rig.json"
    good.write_text('{"distance_cm": 60, "width_cm": 52, "resolution": [2560, 1440], '
                    '"refresh_hz": 120}')  # fmt: skip
    assert MonitorProfile.load(good).resolution == (2560, 1440)
    bad = tmp_path / "bad.json"
    bad.write_text('{"distance_cm": -1}')
    with pytest.raises(ConfigError, match="distance_cm"):
        MonitorProfile.load(bad)
    with pytest.raises(ConfigError, match=r"missing\.json"):
        MonitorProfile.load(tmp_path / "missing.json")


def test_times_are_whole_frames_and_late_flips_are_dropped_frames():
    assert frames_for(100, 60, at_least=1) == 6
    assert frames_for(100, 144) == 14
    assert frames_for(5, 60, at_least=1) == 1 and frames_for(0, 60) == 0
    period = 1 / 60
    steady = [i * period for i in range(10)]
    assert dropped_frames(steady, period) == 0
    # One flip a frame late, one three frames late (jitter under half a frame is not a drop).
    late = [0, period, 3 * period, 4 * period + 0.004, 8 * period, 9 * period]
    assert dropped_frames(late, period) == 1 + 3
    assert check_rate(59.95, 60) == 59.95
    with pytest.raises(ConfigError, match="profile says 60"):
        check_rate(75.0, 60)
    with pytest.raises(ConfigError, match="vsync"):
        check_rate(4000.0, None)


def run_frames(display: str, out) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "rig_clients" / "window_frames.py"), str(out)],
        env={**os.environ, "DISPLAY": display}, cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def runs(frames: list[dict]) -> list[tuple[bool, int]]:
    """(patch white?, frames in a row) of consecutive frames."""
    out: list[tuple[bool, int]] = []
    for frame in frames:
        white = frame["patch"] > 200
        if out and out[-1][0] == white:
            out[-1] = (white, out[-1][1] + 1)
        else:
            out.append((white, 1))
    return out


def test_each_trial_is_its_frames_on_screen_with_the_patch_white_only_then(xvfb, tmp_path):
    """100 ms on / 50 ms off at 60 Hz: 6 white-patch frames, then 3 black, per trial, as read
    back from the frame buffer; the stimulus frame shows the image at its size and place."""
    got = run_frames(xvfb, tmp_path)
    assert runs(got["frames"]) == [(True, 6), (False, 3)] * 3
    assert got["snapshot_reads"] == 2  # one stimulus frame and one blank, not every trial's
    reports = got["reports"]
    assert sorted(r["presentation_id"] for r in reports) == [
        "g0-e0-b0-r0", "g0-e0-b0-r1", "g0-e1-b0-r0"
    ]  # fmt: skip
    for r in reports:
        assert r["frames"] == 6 and r["outcome"] == "ok"
        if r["dropped_frames"] == 0:  # a busy machine may drop one; then it says so
            assert round((r["offset"] - r["onset"]) * window_frames.HZ) == 6
    onsets = [r["onset"] for r in reports]
    assert onsets == sorted(onsets)

    stimulus = np.asarray(Image.open(tmp_path / "stimulus.png"))
    blank = np.asarray(Image.open(tmp_path / "blank.png"))
    width, height = got["size"]
    assert stimulus.shape == blank.shape == (height, width, 3)
    # Photodiode patch: bottom-left, 30 px, white on the stimulus frame, black on the blank.
    assert (stimulus[-30:, :30] == 255).all() and (blank[-30:, :30] == 0).all()
    assert (stimulus[-31, :30] == 128).all() and (stimulus[-30:, 30] == 128).all()
    # The image: where the profile puts 4 degrees at (5, -2), yellow half on top.
    rect = stimulus_rect(window_frames.PROFILE, (width, height), 4.0, (5.0, -2.0))
    top, left = height - (rect.y + rect.height), rect.x
    inside = stimulus[top : top + rect.height, left : left + rect.width]
    middle = rect.height // 2  # scaled with linear filtering: the halves blend over ~4 rows
    assert (inside[: middle - 3] == (255, 255, 0)).all()
    assert (inside[middle + 3 :] == (0, 0, 255)).all()
    coloured = np.argwhere((stimulus != 128).any(axis=2))
    image_pixels = coloured[(coloured[:, 1] > width / 2 + 20)]
    assert image_pixels.min(axis=0).tolist() == [top, left]
    assert image_pixels.max(axis=0).tolist() == [top + rect.height - 1, left + rect.width - 1]
    # The blank: background but the patch and the fixation point (red, at the centre).
    assert (blank[height // 2, width // 2] == (255, 0, 0)).all()
    assert (stimulus[height // 2, width // 2] == (255, 0, 0)).all()
    assert not (blank[:, width // 2 + 20 :] != 128).any()


def presented_until(connection: Connection, recorder: Recorder, wanted: int) -> list[dict]:
    """Play the recording PC: answer each presentation the server passes on with one count,
    until ``wanted`` presentations came; their fields."""
    seen: list[dict] = []
    deadline = time.monotonic() + 120
    while len(seen) < wanted:
        assert time.monotonic() < deadline, f"only {len(seen)} presentations came"
        message = connection.poll(0.2)
        if message is None or not isinstance(message.content, Presented):
            continue
        shown = message.content
        seen += [p.model_dump() for p in shown.presentations]
        recorder.send(
            message.session or "",
            shown.generation,
            [
                Response(presentation_id=p.presentation_id, stimulus_id=p.stimulus_id,
                         counts=[1.0])
                for p in shown.presentations
            ],
        )  # fmt: skip
    return seen


def test_window_presenter_runs_a_session_with_a_real_server(xvfb, tmp_path):
    """``xdream present --window`` against ``xdream serve``: two generations shown trial by
    trial, every presentation with its flip-time onset, offset, frames and dropped frames,
    and the session completes on counts a separate recorder sends."""
    params = {"on_ms": 100.0, "off_ms": 50.0, "size_deg": 3.0, "position_deg": [0.0, 0.0]}
    with running_server(tmp_path / "data") as server:
        session_id = create_session(
            server, generator="pixel", image_size=32, population=4, seed=2, generations=2,
            response_timeout_s=600, params=params,
        )  # fmt: skip
        window = subprocess.Popen(
            [sys.executable, "-m", "xdream", "present", "--window", "--server", server.zmq,
             "--pace-hz", "60", "--size", "640", "480", "--seed", "1",
             "--snapshots", str(tmp_path / "snap")],
            env={**os.environ, "DISPLAY": xvfb}, cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        connection = Connection(server.zmq, [Role.recorder], "recording-pc", presentations=True)
        try:
            connection.connect(timeout_s=20)
            seen = presented_until(connection, Recorder(connection), wanted=8)
            state = server.wait_for(session_id, lambda s: s["state"] == "finished", 60)
            warnings = state["warnings"]
        finally:
            connection.close()
            window.terminate()
            _, log = window.communicate(timeout=20)
    assert state["generations_done"] == 2, log
    assert "Hz (paced in software)" in log
    assert sorted(p["stimulus_id"] for p in seen) == sorted(
        f"g{g}-e{i}" for g in range(2) for i in range(4)
    )
    for p in seen:
        assert p["frames"] == 6 and p["offset"] > p["onset"] and p["dropped_frames"] >= 0
    dropped = sum(p["dropped_frames"] for p in seen)
    warned = [w for w in warnings if w["kind"] == "dropped_frames"]
    assert bool(warned) == (dropped > 0)
    snap = np.array(Image.open(tmp_path / "snap" / "stimulus.png"))
    assert snap.shape == (480, 640, 3) and (snap[-40:, :40] == 255).all()
    # 3 degrees at the default monitor's density (108 px), not squeezed into 640 pixels.
    rect = stimulus_rect(MonitorProfile(), (640, 480), 3.0, (0.0, 0.0))
    snap[-40:, :40] = 128
    coloured = np.argwhere((snap != 128).any(axis=2))
    top = 480 - (rect.y + rect.height)
    assert coloured.min(axis=0).tolist() == [top, rect.x] and rect.width == 108
    assert coloured.max(axis=0).tolist() == [top + rect.height - 1, rect.x + rect.width - 1]


def test_size_is_for_a_window_not_the_full_screen(capsys):
    assert xdream_main(["present", "--window", "--fullscreen", "--size", "800", "600"]) == 2
    assert "--size is a window's size: not with --fullscreen" in capsys.readouterr().err
