"""Session states and the transitions between them (PROTOCOL.md, section 7).

::

    created --start--> running --pause--> pausing --block over--> paused --resume--> running
       |                  |                  |                       |
       +------stop--------+-------stop-------+---------stop----------+--> aborted
                          \\--last generation stored--> finished (from pausing, paused too)

``pausing`` means a pause is asked for while a generation is still on the rig: the animal
is still working. An operator's pause becomes ``paused`` once that generation is complete;
an auto-pause (an alarm: :mod:`.alarms`) once the block on the rig is over, holding the
generation for the rig to finish after resume. Resume from ``pausing`` cancels the pause.
A session that fails on an error is paused, so that an operator sees it and a server
restart resumes it from its file. Finished and aborted are final.
"""

from __future__ import annotations

from enum import Enum

from protocol.errors import SessionStateError


class SessionState(str, Enum):
    created = "created"
    running = "running"
    pausing = "pausing"
    paused = "paused"
    finished = "finished"
    aborted = "aborted"

    def __str__(self) -> str:  # the value in messages, files and JSON alike
        return self.value

    @property
    def final(self) -> bool:
        return self in (SessionState.finished, SessionState.aborted)


S = SessionState
#: The session events that record a state change: named for the state.
STATE_EVENTS = frozenset(s.value for s in SessionState)
#: The states each state may change to.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.created: frozenset({S.running, S.aborted}),
    S.running: frozenset({S.pausing, S.paused, S.finished, S.aborted}),
    S.pausing: frozenset({S.paused, S.running, S.finished, S.aborted}),
    S.paused: frozenset({S.running, S.finished, S.aborted}),
    S.finished: frozenset(),
    S.aborted: frozenset(),
}


#: The states in which an operator's control is allowed (PROTOCOL.md, section 7). A control
#: is checked by what it does, not only by where it leads: start and resume both lead to
#: running, from different states.
CONTROLS: dict[str, frozenset[SessionState]] = {
    "start": frozenset({S.created}),
    "pause": frozenset({S.running}),
    "resume": frozenset({S.pausing, S.paused}),
    "stop": frozenset({S.created, S.running, S.pausing, S.paused}),
}


def check_control(session_id: str, action: str, current: SessionState) -> None:
    """Raise :class:`SessionStateError` unless ``action`` is allowed in ``current``."""
    if current not in CONTROLS[action]:
        raise SessionStateError(f"cannot {action} session {session_id}: it is {current}")


def check_transition(session_id: str, current: SessionState, target: SessionState) -> None:
    """Raise :class:`SessionStateError` unless ``current`` may become ``target``."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none: it is final"
        raise SessionStateError(
            f"session {session_id} cannot go from {current} to {target} (allowed: {allowed})"
        )
