"""A session's progress: running time without pauses or downtime, seconds per generation,
time left and the response rate, live and replayed from the event log alike."""

from __future__ import annotations

import pytest

from server.sessions.progress import RATE_WINDOW_S, Progress
from server.storage.records import Event


def test_running_time_leaves_out_pauses_and_the_rate_forgets_old_responses():
    progress = Progress()
    progress.state("running", 100.0)
    for t in (110.0, 120.0, 130.0):
        progress.completed(t)
    progress.state("paused", 130.0)
    progress.state("running", 200.0)  # 70 s paused: not running time
    progress.completed(209.0)  # nor a generation's time
    progress.took(20, 205.0)
    out = progress.as_json(done=4, total=10, now=210.0)
    assert out["started"] == 100.0 and out["running_s"] == pytest.approx(40.0)
    assert out["s_per_generation"] == pytest.approx(10.0)
    assert out["eta_s"] == pytest.approx(60.0)
    assert out["responses_per_s"] == pytest.approx(20 / RATE_WINDOW_S)
    assert progress.as_json(3, 10, now=205.0 + RATE_WINDOW_S + 1)["responses_per_s"] == 0


def test_replay_counts_generations_by_their_first_block_and_skips_downtime():
    events = [
        Event(100.0, 0, "running", {}),
        Event(100.5, 0, "block_sent", {"block": 0}),
        Event(110.5, 1, "block_sent", {"block": 0}),
        Event(111.0, 1, "block_sent", {"block": 1}),  # a re-presentation: no new generation
        Event(120.5, 2, "block_sent", {"block": 0}),
        Event(125.0, 2, "block_acknowledged", {}),  # the last sign of life before a crash
        Event(400.0, 2, "server_restarted", {}),
        Event(410.0, 3, "block_sent", {"block": 0}),
        Event(420.0, 3, "aborted", {}),
    ]
    out = Progress.replay(events).as_json(done=3, total=3, now=500.0)
    assert out["running_s"] == pytest.approx(25.0 + 20.0)  # 100-125, then 400-420
    assert out["s_per_generation"] == pytest.approx(10.0)  # not across the downtime
    assert out["eta_s"] is None and out["responses_per_s"] == 0  # it ended
    assert Progress().as_json(0, 10)["s_per_generation"] is None


def test_a_session_paused_before_a_restart_counts_no_running_time_after_it():
    events = [
        Event(100.0, 0, "running", {}),
        Event(110.0, 0, "pausing", {"reason": "stall"}),
        Event(120.0, 0, "block_acknowledged", {}),
        Event(500.0, 0, "server_restarted", {}),
    ]
    live = Progress.replay(events).as_json(done=0, total=10, now=900.0)
    assert live["running_s"] == pytest.approx(20.0) and live["eta_s"] is None
    stored = Progress.replay(events[:3], live=False).as_json(0, 10, now=900.0)
    assert stored["running_s"] == pytest.approx(20.0)  # a file no one runs: its last event
