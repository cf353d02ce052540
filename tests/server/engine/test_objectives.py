"""Objectives: each scores what its name says on hand-computed counts, refuses settings that
cannot mean anything, and reads the same from JSON (the API) and a command line."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import ChannelMismatch, ConfigError
from server.engine.objectives import (
    Mean,
    Selectivity,
    Sparseness,
    TargetPattern,
    objective_from,
    parse_objective,
)

#: Two images x four channels.
COUNTS = np.array([[1.0, 3.0, 10.0, 0.0], [2.0, 2.0, 0.0, 4.0]])


def test_mean_raises_or_lowers_the_mean_or_weighted_sum():
    np.testing.assert_allclose(Mean(channels=[0, 1]).score(COUNTS), [2.0, 2.0])
    np.testing.assert_allclose(Mean(channels=[2]).score(COUNTS), [10.0, 0.0])
    weighted = Mean(channels=[0, 2], weights=[1.0, -0.5])
    np.testing.assert_allclose(weighted.score(COUNTS), [-4.0, 2.0])
    np.testing.assert_allclose(Mean(channels=[2], minimize=True).score(COUNTS), [-10.0, 0.0])


def test_selectivity_is_the_driven_mean_less_the_suppressed():
    objective = Selectivity(drive=[2], suppress=[0, 1], suppress_weight=0.5)
    np.testing.assert_allclose(objective.score(COUNTS), [10 - 0.5 * 2, 0 - 0.5 * 2])
    # Raising a suppressed channel lowers the score; raising the driven one raises it.
    more = COUNTS.copy()
    more[0, 0] += 4
    assert objective.score(more)[0] < objective.score(COUNTS)[0]


def test_a_target_pattern_scores_minus_the_distance_to_it():
    objective = TargetPattern(channels=[0, 3], target=[2.0, 4.0])
    np.testing.assert_allclose(objective.score(COUNTS), [-np.hypot(1.0, 4.0), 0.0])


def test_sparseness_is_zero_for_a_flat_response_and_one_for_a_single_channel():
    objective = Sparseness(channels=[0, 1, 2])
    flat, single = [5.0, 5.0, 5.0], [0.0, 7.0, 0.0]
    silent, negative = [0.0, 0.0, 0.0], [-3.0, 6.0, -1.0]  # after a baseline
    scores = objective.score(np.array([flat, single, silent, negative]))
    np.testing.assert_allclose(scores, [0.0, 1.0, 0.0, 1.0], atol=1e-12)
    middle = objective.score(np.array([[1.0, 2.0, 6.0]]))[0]
    assert 0.0 < middle < 1.0


def test_unanswered_images_score_nan_and_missing_channels_are_named():
    counts = np.array([[np.nan, np.nan, np.nan, np.nan], [1.0, 2.0, 3.0, 4.0]])
    every = [Mean(), Selectivity(drive=[0], suppress=[1]),
             TargetPattern(channels=[0], target=[1.0]), Sparseness(channels=[0, 1])]  # fmt: skip
    for objective in every:
        scores = objective.score(counts)
        assert np.isnan(scores[0]) and np.isfinite(scores[1]), objective
    with pytest.raises(ChannelMismatch, match="reads channel 7 but only 4"):
        Selectivity(drive=[0], suppress=[7]).score(COUNTS)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"kind": "selectivity", "drive": [0], "suppress": [0]}, "both driven and suppressed"),
        ({"kind": "target", "channels": [0, 1], "target": [1.0]}, "1 entries for 2 channels"),
        ({"kind": "mean", "channels": [1, 1]}, "must not repeat"),
        ({"kind": "sparseness", "channels": [3]}, "at least 2"),
        ({"kind": "median"}, "kind"),
        ({"kind": "mean", "chanels": [1]}, "chanels"),
    ],
)
def test_settings_that_mean_nothing_are_refused_by_name(data, words):
    with pytest.raises(ConfigError, match=words) as caught:
        objective_from(data)
    assert caught.value.field == "objective"


def test_a_command_line_objective_reads_as_its_json():
    assert parse_objective("selectivity:drive=0;suppress=1,2") == Selectivity(
        drive=[0], suppress=[1, 2]
    )
    assert parse_objective("target:channels=0,1;target=10,0.5") == TargetPattern(
        channels=[0, 1], target=[10.0, 0.5]
    )
    assert parse_objective("mean:channels=3;minimize=true") == Mean(channels=[3], minimize=True)
    assert parse_objective("mean") == Mean()
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_objective("mean:channels")
    described = objective_from(Selectivity(drive=[0], suppress=[1]).model_dump()).describe()
    assert described == "drive channel(s) 0, hold 1 down"
