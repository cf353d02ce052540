"""Counting spikes per trial (rig_clients.trial_counts): windows, both kinds of spike
source, partial bins, when a trial is complete, and what the buffer keeps."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import ConfigError
from rig_clients.trial_counts import SpikeBins, SpikeEvents, TrialCounter, Windows

WINDOWS = Windows()  # evoked [50, 200) ms, baseline [0, 45) ms
ONSET = 100.0


def events(*spikes: tuple[float, int], channels: int = 3, latency_s: float = 0.25):
    """An event buffer holding ``(seconds after ONSET, channel)`` spikes."""
    buffer = SpikeEvents(channels, latency_s)
    times = np.array([ONSET + t for t, _ in spikes])
    assert buffer.add(times, np.array([[c] for _, c in spikes])) == 0
    return buffer


def counted(counter: TrialCounter, now: float):
    return [(c.trial, c.evoked.tolist(), c.baseline.tolist()) for c in counter.complete(now)]


def test_the_default_windows_are_ponce_labs():
    assert (WINDOWS.evoked_ms, WINDOWS.baseline_ms) == ((50.0, 200.0), (0.0, 45.0))
    assert (WINDOWS.first_s, WINDOWS.last_s) == (0.0, 0.2)


@pytest.mark.parametrize(
    "window", [(200.0, 50.0), (10.0, 10.0), (-20_000.0, 0.0), (0.0, float("nan"))]
)
def test_a_window_runs_forward_within_ten_seconds(window):
    with pytest.raises(ConfigError, match="evoked window") as caught:
        Windows(evoked_ms=window)
    assert caught.value.field == "evoked_ms"


def test_windows_are_half_open_at_both_edges():
    buffer = events(
        (0.0, 0), (0.045, 0),  # baseline start counts, its end does not
        (0.050, 1), (0.1999, 1), (0.200, 1),  # evoked start and just before its end count
        (-0.001, 2), (0.047, 2), (0.25, 2),  # before onset, between windows, after
    )  # fmt: skip
    assert buffer.count(ONSET + 0.0, ONSET + 0.045).tolist() == [1, 0, 0]
    assert buffer.count(ONSET + 0.050, ONSET + 0.200).tolist() == [0, 2, 0]


def test_events_count_per_channel_index_and_refuse_other_values():
    buffer = SpikeEvents(channels=4)
    values = np.array([[0], [3], [3], [4], [-1], [1.5], [np.nan], [2.0]])
    assert buffer.add(np.full(len(values), ONSET), values) == 4  # 4, -1, 1.5, NaN
    assert buffer.count(ONSET, ONSET + 1).tolist() == [1.0, 0.0, 1.0, 2.0]
    assert len(buffer) == 4


def test_nothing_delivered_changes_nothing():
    for buffer in (SpikeEvents(2), SpikeBins(2, 1000.0)):
        assert buffer.add(np.array([]), np.array([])) == 0
        assert len(buffer) == 0


def test_an_event_trial_is_complete_only_once_the_clock_is_past_its_windows_and_margin():
    counter = TrialCounter(events((0.1, 0), (0.01, 1)), WINDOWS, latency_s=0.25)
    assert counter.add_trial(ONSET, "t0")
    assert counted(counter, ONSET + 0.2 + 0.249) == []  # a spike may still be on its way
    assert counter.pending == 1
    assert counted(counter, ONSET + 0.2 + 0.251) == [("t0", [1, 0, 0], [0, 1, 0])]
    assert counter.pending == 0


def test_a_silent_event_stream_still_completes_trials_with_zero_counts():
    counter = TrialCounter(SpikeEvents(2), WINDOWS)
    counter.add_trial(ONSET, "quiet")
    assert counted(counter, ONSET + 10) == [("quiet", [0, 0], [0, 0])]


def test_spikes_after_their_time_was_taken_as_complete_are_counted_late():
    buffer = SpikeEvents(1, latency_s=0.25)
    counter = TrialCounter(buffer, WINDOWS)
    counter.complete(now=ONSET + 1.0)  # everything before ONSET + 0.75 is taken as in
    buffer.add(np.array([ONSET + 0.7, ONSET + 0.8]), np.array([[0], [0]]))
    assert buffer.late == 1


def test_trials_come_out_in_onset_order_whatever_order_their_markers_came_in():
    buffer = events((0.1, 0), (1.1, 0), (1.12, 0), (2.1, 0), (2.12, 0), (2.14, 0), channels=1)
    counter = TrialCounter(buffer, WINDOWS)
    for k in (2, 0, 1):
        counter.add_trial(ONSET + k, k)
    assert counted(counter, ONSET + 10) == [(0, [1], [0]), (1, [2], [0]), (2, [3], [0])]


def bins(rate: float, channels: int, start: float, n: int, filled: dict[int, list[float]]):
    """``n`` bins from ``start`` at ``rate``, zero but the ``filled`` ones (index: counts)."""
    buffer = SpikeBins(channels, rate)
    counts = np.zeros((n, channels))
    for index, value in filled.items():
        counts[index] = value
    assert buffer.add(start + np.arange(n) / rate, counts) == 0
    return buffer


def test_bins_aligned_with_the_windows_count_exactly():
    # 1 ms bins from the onset: bin k covers [k, k+1) ms.
    buffer = bins(1000.0, 2, ONSET, 300, {0: [1, 0], 44: [0, 1], 45: [5, 5], 50: [2, 0],
                                          199: [0, 3], 200: [7, 7]})  # fmt: skip
    counter = TrialCounter(buffer, WINDOWS)
    counter.add_trial(ONSET, "aligned")
    assert counted(counter, ONSET + 1) == [("aligned", [2, 3], [1, 1])]


def test_a_partial_bin_counts_when_its_midpoint_is_inside():
    # 10 ms bins starting 4 ms before onset: [-4, 6), [6, 16), ... [196, 206) ms.
    buffer = bins(100.0, 1, ONSET - 0.004, 30, {k: [1.0] for k in range(30)})
    # Evoked [50, 200): [46, 56) is 6 ms inside and counts, [196, 206) is 4 ms inside and
    # does not; the midpoints 51 ... 191 make 15 bins, 150 ms, as long as the window.
    assert buffer.count(ONSET + 0.050, ONSET + 0.200).tolist() == [15.0]
    # Baseline [0, 45), not a multiple of 10 ms: [-4, 6) and [36, 46) count (midpoints 1 and
    # 41), 5 bins in all.
    assert buffer.count(ONSET + 0.0, ONSET + 0.045).tolist() == [5.0]


def test_a_bin_exactly_half_inside_counts_at_the_window_start_not_at_its_end():
    # Bins of 1/8 s (exact in binary) centred on 0, 1/8, 2/8, ...
    buffer = bins(8.0, 1, -1 / 16, 4, {k: [1.0] for k in range(4)})
    assert buffer.count(0.0, 0.125).tolist() == [1.0]  # the bin centred on 0, not on 1/8
    assert buffer.count(0.125, 0.375).tolist() == [2.0]


def test_a_binned_trial_is_complete_when_a_bin_past_its_end_has_arrived():
    buffer = SpikeBins(1, 1000.0)
    counter = TrialCounter(buffer, WINDOWS)
    counter.add_trial(ONSET, "t")
    buffer.add(ONSET + np.arange(200) / 1000, np.ones((200, 1)))  # midpoints up to 199.5 ms
    assert counted(counter, now=ONSET + 60) == []  # the clock alone never completes bins
    buffer.add(np.array([ONSET + 0.2]), np.ones((1, 1)))  # midpoint 200.5 ms
    assert counted(counter, now=ONSET + 60) == [("t", [150.0], [45.0])]


def test_bins_with_negative_or_missing_counts_are_refused_but_still_show_progress():
    buffer = SpikeBins(2, 1000.0)
    refused = buffer.add(np.array([0.0, 0.001, 0.002]), np.array([[1, 1], [-1, 0], [np.nan, 1]]))
    assert refused == 2
    assert len(buffer) == 1
    assert buffer.horizon(now=0.0) == pytest.approx(0.0025)


def test_the_buffer_keeps_what_pending_and_unannounced_trials_need_and_no_more():
    buffer = SpikeEvents(1, latency_s=0.25)
    counter = TrialCounter(buffer, WINDOWS, latency_s=0.25)
    buffer.add(ONSET + 0.0025 + np.arange(1000) / 100, np.zeros((1000, 1)))  # 10 s of spikes
    counter.add_trial(ONSET + 2.0, "pending")
    assert counted(counter, now=ONSET + 2.3) == []
    assert len(buffer) == 800  # from the pending trial's onset on
    assert counted(counter, now=ONSET + 5.0) == [("pending", [15.0], [5.0])]
    assert len(buffer) == 525  # what a marker up to latency_s late needs: ONSET + 4.75 on
    assert not counter.add_trial(ONSET + 4.7, "too late")  # its spikes are gone
    assert counter.add_trial(ONSET + 4.76, "in time")
    assert counter.pending == 1


def test_a_baseline_before_onset_is_kept_for_markers_still_on_their_way():
    windows = Windows(evoked_ms=(50, 200), baseline_ms=(-100, 0))
    buffer = SpikeEvents(1, latency_s=0.25)
    counter = TrialCounter(buffer, windows, latency_s=0.25)
    buffer.add(np.array([ONSET - 0.05, ONSET + 0.1]), np.zeros((2, 1)))
    counter.complete(now=ONSET + 0.2)  # the marker of ONSET may still come
    assert counter.add_trial(ONSET, "t")
    assert counted(counter, now=ONSET + 1) == [("t", [1.0], [1.0])]
