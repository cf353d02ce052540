"""Session states: the transition table, and its errors."""

from __future__ import annotations

import itertools

import pytest

from protocol.errors import SessionStateError
from server.sessions.states import (
    CONTROLS,
    TRANSITIONS,
    SessionState,
    check_control,
    check_transition,
)

S = SessionState


def test_the_table_allows_exactly_the_documented_transitions():
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert allowed == {
        (S.created, S.running), (S.created, S.aborted),
        (S.running, S.pausing), (S.running, S.paused), (S.running, S.finished),
        (S.running, S.aborted),
        (S.pausing, S.paused), (S.pausing, S.running), (S.pausing, S.finished),
        (S.pausing, S.aborted),
        (S.paused, S.running), (S.paused, S.finished), (S.paused, S.aborted),
    }  # fmt: skip
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_other_transition_is_a_clear_error(current, target):
    if target in TRANSITIONS[current]:
        check_transition("s1", current, target)
        return
    with pytest.raises(SessionStateError, match=f"s1 cannot go from {current} to {target}"):
        check_transition("s1", current, target)


def test_final_states_allow_nothing_and_states_read_as_their_values():
    assert [s for s in S if s.final] == [S.finished, S.aborted]
    assert all(not TRANSITIONS[s] for s in S if s.final)
    assert f"{S.running}" == str(S.running) == "running" == S.running.value
    assert S("paused") is S.paused


@pytest.mark.parametrize("action", ["start", "pause", "resume", "stop"])
@pytest.mark.parametrize("current", list(S))
def test_each_control_is_allowed_in_its_own_states_only(action, current):
    """Checked by what it does: start and resume both lead to running, from different
    states (a start on a paused session would run a second loop)."""
    allowed = {"start": {S.created}, "pause": {S.running}, "resume": {S.pausing, S.paused},
               "stop": {S.created, S.running, S.pausing, S.paused}}[action]  # fmt: skip
    if current in allowed:
        check_control("s1", action, current)
        return
    with pytest.raises(SessionStateError, match=f"cannot {action} session s1: it is {current}"):
        check_control("s1", action, current)


def test_every_control_leads_somewhere_its_states_may_go():
    leads_to = {"start": S.running, "pause": S.paused, "resume": S.running, "stop": S.aborted}
    for action, states in CONTROLS.items():
        assert all(leads_to[action] in TRANSITIONS[state] for state in states), action
