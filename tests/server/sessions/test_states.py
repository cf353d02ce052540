"""Session states: the transition table, and its errors."""

from __future__ import annotations

import itertools

import pytest

from protocol.errors import SessionStateError
from server.sessions.states import TRANSITIONS, SessionState, check_transition

S = SessionState


def test_the_table_allows_exactly_the_documented_transitions():
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert allowed == {
        (S.created, S.running), (S.created, S.aborted),
        (S.running, S.paused), (S.running, S.finished), (S.running, S.aborted),
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
