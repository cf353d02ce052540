"""Per-generation bookkeeping of presentations and spike counts."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import ChannelMismatch, ConfigError, UnknownStimulus
from protocol.messages import Presentation, Response
from server.engine.objectives import Mean
from server.sessions.book import GenerationBook, StimulusSlot


def book(repeats=1, n_channels=None) -> GenerationBook:
    slots = [StimulusSlot(f"e{i}", "evolved", i) for i in range(3)]
    slots.append(StimulusSlot("r0", "reference", 0))
    return GenerationBook(5, slots, repeats, n_channels)


def resp(pid, sid, *counts) -> Response:
    return Response(presentation_id=pid, stimulus_id=sid, counts=list(counts))


def shown(pid, sid, outcome="ok") -> Presentation:
    return Presentation(presentation_id=pid, stimulus_id=sid, onset=1.0, outcome=outcome)


def test_scores_mean_repeats_and_leave_missing_as_nan():
    b = book(repeats=2)
    b.record_responses([resp("p1", "e0", 2, 10), resp("p2", "e0", 4, 10), resp("p3", "e2", 6, 0)])
    np.testing.assert_allclose(b.scores("evolved", Mean(channels=[0])), [3.0, np.nan, 6.0])
    assert b.missing() == ["e1", "e2", "r0"]  # e0 has both repeats
    assert not b.complete


def test_duplicates_are_counted_and_change_nothing():
    b = book()
    first = b.record_responses([resp("p1", "e0", 5)])
    again = b.record_responses([resp("p1", "e0", 5), resp("p2", "e1", 7)])
    assert (first.accepted, first.duplicates) == (1, 0)
    assert (again.accepted, again.duplicates) == (1, 1)
    np.testing.assert_allclose(b.scores("evolved", Mean(channels=[0])), [5.0, 7.0, np.nan])


def test_unknown_stimulus_rejects_the_whole_message():
    b = book()
    with pytest.raises(UnknownStimulus, match="generation 5 has no stimulus 'e9'"):
        b.record_responses([resp("p1", "e0", 5), resp("p2", "e9", 1)])
    assert b.missing() == ["e0", "e1", "e2", "r0"]  # p1 was not taken either
    with pytest.raises(UnknownStimulus):
        b.record_presented([shown("p1", "nope")])


def test_channel_count_must_stay_the_same():
    b = book()
    b.record_responses([resp("p1", "e0", 1, 2)])
    with pytest.raises(ChannelMismatch, match="1 channels, the session records 2"):
        b.record_responses([resp("p2", "e1", 1)])
    with pytest.raises(ChannelMismatch):
        book(n_channels=3).record_responses([resp("p1", "e0", 1, 2)])
    with pytest.raises(ChannelMismatch, match="reads channel 4"):
        b.scores("evolved", Mean(channels=[4]))


def test_response_must_match_what_the_presentation_showed():
    b = book()
    b.record_presented([shown("p1", "e0")])
    with pytest.raises(UnknownStimulus, match="showed 'e0', not 'e1'"):
        b.record_responses([resp("p1", "e1", 3)])


def test_counts_of_aborted_presentations_are_kept_but_not_scored():
    b = book()
    got = b.record_presented([shown("p1", "e0", "aborted"), shown("p2", "e1")])
    again = b.record_presented([shown("p1", "e0", "aborted")])
    assert (got.accepted, again.duplicates) == (2, 1)
    result = b.record_responses([resp("p1", "e0", 9), resp("p2", "e1", 4)])
    assert (result.accepted, result.excluded) == (2, 1)
    assert "e0" in b.missing() and "e1" not in b.missing()
    np.testing.assert_allclose(b.scores("evolved", Mean(channels=[0])), [np.nan, 4.0, np.nan])
    np.testing.assert_allclose(b.slots["e0"].excluded, [[9.0]])


def test_reference_scores_are_kept_apart():
    b = book()
    b.record_responses([resp(f"p{i}", s, i + 1) for i, s in enumerate(["e0", "e1", "e2", "r0"])])
    assert b.complete
    np.testing.assert_allclose(b.scores("evolved", Mean(channels=[0])), [1, 2, 3])
    np.testing.assert_allclose(b.scores("reference", Mean(channels=[0])), [4])


def test_baseline_is_subtracted_as_a_rate_when_the_session_asks():
    """Evoked 150 ms, baseline 50 ms: 2 baseline spikes are 6 in the evoked window's time.
    The channel means keep the rig's counts; without the setting the baseline is ignored."""
    sent = [
        Response(presentation_id="p1", stimulus_id="e0", counts=[10.0, 4.0],
                 evoked_window_ms=(50.0, 200.0), baseline_counts=[2.0, 0.0],
                 baseline_window_ms=(0.0, 50.0)),
        resp("p2", "e1", 5, 5),  # no baseline: scored as sent
    ]  # fmt: skip
    slots = [StimulusSlot(f"e{i}", "evolved", i) for i in range(2)]
    subtracted = GenerationBook(0, slots, 1, subtract_baseline=True)
    subtracted.record_responses(sent)
    np.testing.assert_allclose(
        subtracted.scores("evolved", Mean(channels=[0, 1])), [(4.0 + 4.0) / 2, 5.0]
    )
    np.testing.assert_allclose(subtracted.channel_means("evolved"), [7.5, 4.5])
    plain = GenerationBook(0, [StimulusSlot(f"e{i}", "evolved", i) for i in range(2)], 1)
    plain.record_responses(sent)
    np.testing.assert_allclose(plain.scores("evolved", Mean(channels=[0])), [10.0, 5.0])


def test_invalid_books():
    with pytest.raises(ConfigError):
        GenerationBook(0, [StimulusSlot("a", "evolved", 0)] * 2, 1)
    with pytest.raises(ConfigError):
        GenerationBook(0, [StimulusSlot("a", "evolved", 0)], 0)
