"""What keeps a session from wasting an animal's time silently: it raises alarms
(:mod:`.alarms`) for a stalled rig, a generation left mostly unanswered, refused responses, a
lost rig client and a missing presenter, clears them when their cause is gone, and pauses
the session (auto-pause, on by default) before the optimizer is given bad scores.

An auto-pause *holds* the generation on the rig: it is neither re-presented nor completed
while the session is pausing or paused; once the block on the rig is over the session is
paused, and resuming re-presents what the generation still lacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from protocol.errors import XDreamError
from server.sessions.alarms import NOT_PAUSED, PAUSED, Alarms
from server.sessions.changes import Changes
from server.sessions.config import SessionConfig
from server.sessions.rounds import Round
from server.sessions.states import SessionState
from server.sessions.transport import Transport
from server.sessions.workers import Workers

S = SessionState
#: A stall is never called before this many seconds of silence.
MIN_STALL_S = 10.0
#: The stall limit is this many times the block's own duration.
STALL_FACTOR = 2.0
#: A generation with more than this fraction of its evolved images unanswered is held.
MOSTLY_MISSING = 0.5
#: Refused response messages in a row (none taken between them) that pause a session at
#: once; fewer pause it when the block on the rig is over, instead of showing it again.
REFUSED_TO_PAUSE = 3
#: A block that no presenter took for this long raises the no-presenter alarm (an HTTP
#: presenter's poll takes it a moment after it is made).
NO_PRESENTER_S = 5.0


#: How a client's loss reads in its alarm, by why the link dropped it.
_WHY = {
    "silent: counted as gone": "stopped answering heartbeats",
    "said bye": "said bye (its program ended)",
    "unreachable": "cannot be reached",
}


def _lost_key(name: str, roles: Sequence[str]) -> str:
    """The alarm key of a lost client: its name and its roles, e.g. client_lost:rig-A:recorder."""
    return f"client_lost:{name}:{'+'.join(sorted(roles))}"


def stall_limit(config: SessionConfig, rnd: Round) -> float:
    """Seconds of silence from the rig, while ``rnd``'s block is out, that make a stall."""
    if config.stall_timeout_s is not None:
        return config.stall_timeout_s
    return max(MIN_STALL_S, STALL_FACTOR * rnd.block_seconds())


def mostly_missing(rnd: Round) -> tuple[int, int] | None:
    """(unanswered, total) evolved images of a thread of which more than
    :data:`MOSTLY_MISSING` are unanswered (each thread's optimizer is told only its own)."""
    for thread in range(len(rnd.proposals)):
        evolved = [s for s in rnd.book.slots.values()
                   if s.kind == "evolved" and s.thread == thread]  # fmt: skip
        missing = sum(1 for s in evolved if not s.responses)
        if missing > MOSTLY_MISSING * len(evolved):
            return missing, len(evolved)
    return None


class Safety:
    """The alarm half of :class:`~server.sessions.session.Session` (a mixin: the attributes
    below are the session's)."""

    id: str
    config: SessionConfig
    state: SessionState
    done: int
    round: Round | None
    changes: Changes
    transport: Transport
    alarms: Alarms
    #: Why the session is pausing or paused: "operator", or the alarm kind that paused it.
    pause_reason: str | None
    _hold: bool
    _closed: bool
    _running: asyncio.Event
    _control_lock: asyncio.Lock
    _workers: Workers

    async def _set_state(self, state: SessionState, **detail: Any) -> None:
        raise NotImplementedError

    def _event(self, kind: str, generation: int = -1, **detail: Any) -> None:
        raise NotImplementedError

    # -- raising and clearing --------------------------------------------------------------
    def _alarm(self, kind: str, key: str, generation: int, **facts: Any) -> None:
        """Raise (or update) the alarm for ``key``, and log it."""
        if self._closed:
            return
        facts.setdefault("then", PAUSED if self.config.auto_pause else NOT_PAUSED)
        alarm = self.alarms.raise_(kind, key, generation, **facts)
        self._log_alarm(*Alarms.event(alarm, "raised"), generation)

    def _clear(self, *keys: str, every: bool = False) -> None:
        """The causes of ``keys`` (``every``: of every alarm) are gone."""
        for alarm in self.alarms.clear(*keys, every=every):
            self._log_alarm(*Alarms.event(alarm, "cleared"), alarm.generation)

    def acknowledge(self, alarm_id: int) -> dict[str, Any]:
        """An operator has seen alarm ``alarm_id``; it stays until its cause is gone."""
        known = self.alarms.acknowledge(alarm_id)
        self._log_alarm(*Alarms.event(known, "acknowledged"), known.generation)
        return known.as_json()

    def _log_alarm(self, kind: str, detail: dict[str, Any], generation: int) -> None:
        if not self._closed:
            self._workers.log_event(kind, generation, detail)
        self.changes.bump()

    # -- auto-pause ------------------------------------------------------------------------
    async def _auto_pause(self, reason: str) -> None:
        """Hold the generation on the rig and pause, if this session auto-pauses."""
        if not self.config.auto_pause:
            return
        async with self._control_lock:
            if self.state not in (S.running, S.pausing):
                return
            self._hold = True
            self._running.clear()
            self.pause_reason = reason
            if self.state is S.running:
                await self._set_state(S.pausing, reason=reason)
            self.changes.bump()

    # -- the conditions --------------------------------------------------------------------
    def _stall_due(self, rnd: Round) -> float:
        """When the silence of ``rnd``'s rig becomes a stall (monotonic; inf: not pending)."""
        if rnd.presenter is None or rnd.stalled_at == rnd.heard_at:
            return float("inf")  # not delivered (no-presenter alarm), or already raised
        return rnd.heard_at + stall_limit(self.config, rnd)

    async def _stalled(self, rnd: Round, now: float) -> None:
        rnd.stalled_at = rnd.heard_at
        self._alarm(
            "stall", "stall", rnd.index,
            quiet_s=now - rnd.heard_at, limit_s=stall_limit(self.config, rnd),
            block=rnd.block, stimuli=len(rnd.book.missing()),
        )  # fmt: skip
        await self._auto_pause(self._refusing() or "stall")

    def _refusing(self) -> str | None:
        """ "responses_refused" while the rig's counts are being refused (none taken since)."""
        return "responses_refused" if self.alarms.active_for("responses_refused") else None

    async def _held_for_refusals(self) -> bool:
        """At the end of a block whose counts were refused: pause instead of showing it
        again (auto-pause); whether the generation is held."""
        if self._refusing() is None:
            return False
        await self._auto_pause("responses_refused")
        return self._hold

    def _rig_heard(self, trial: bool) -> None:
        """A message from the rig for the generation in flight: a presenter has it, and if
        it reports a ``trial`` (not only an acknowledgement), it is not stalled."""
        self._clear("no_presenter")
        if trial:
            self._clear("stall")

    def _check_presenter(self, rnd: Round, now: float) -> None:
        """Raise the no-presenter alarm for a block no presenter has taken for a while."""
        if rnd.presenter is not None or rnd.acked:
            self._clear("no_presenter")
        elif now - rnd.last_activity >= NO_PRESENTER_S:
            rig = self.config.rig
            presenters = ", ".join(self.transport.presenters()) or "none"
            self._alarm("no_presenter", "no_presenter", rnd.index,
                        named=f" named {rig}" if rig else "", presenters=presenters)  # fmt: skip

    async def _unanswered(self, rnd: Round, missing: int, total: int) -> bool:
        """Generation ``rnd`` is mostly unanswered after every re-presentation: alarm, and
        hold it (auto-pause); whether it was held (else the caller shows it again)."""
        self._alarm("nan_generation", "nan_generation", rnd.index, missing=missing,
                    total=total, represented=rnd.represented)  # fmt: skip
        await self._auto_pause("nan_generation")
        return self._hold

    async def _refused(self, exc: XDreamError, source: str, client: str, generation: int) -> None:
        """The server refused a recorder's responses (they are not stored). Counts posted
        over HTTP name the session in their address; over ZeroMQ, a recorder of another
        rig is that rig's trouble, not this session's (it is told, in its error reply)."""
        if self.round is None or not self._from_rig(source, client):
            return  # (no generation out: e.g. paused after a restart, counts for before)
        current = self.alarms.active_for("responses_refused")
        count = 1 if current is None else current.count + 1
        then = ("The session pauses when the block on the rig is over, instead of showing it "
                "again." if self.config.auto_pause else NOT_PAUSED)  # fmt: skip
        self._alarm("responses_refused", "responses_refused", generation, count=count,
                    client=client, reason=f"{exc.code}: {exc}", then=then)  # fmt: skip
        if count >= REFUSED_TO_PAUSE:
            await self._auto_pause("responses_refused")

    def _from_rig(self, source: str, client: str) -> bool:
        """Whether counts from ``client`` are this session's rig's (over HTTP they name the
        session in their address)."""
        return source == "http" or self.config.rig in (None, client)

    def _responses_taken(self, source: str, client: str, accepted: int) -> None:
        """Counts of the rig were taken: it is not refused any more."""
        if accepted and self._from_rig(source, client):
            self._clear("responses_refused")

    def on_client_lost(
        self,
        client_id: str,
        name: str = "",
        roles: Sequence[str] = (),
        why: str = "silent: counted as gone",
        alarm: bool = True,
    ) -> None:
        """Rig client ``client_id`` (named ``name``, in ``roles``) is gone, for ``why``."""
        ours = self.state in (S.running, S.pausing, S.paused) and self.config.rig in (None, name)
        if alarm and ours:
            self._alarm("client_lost", _lost_key(name, roles), self.done, name=name,
                        roles=" and ".join(roles), why=_WHY.get(why, why))  # fmt: skip
        rnd = self.round
        if rnd is not None and rnd.presenter == client_id and not rnd.book.complete:
            rnd.presenter_lost = True
            self._event("presenter_lost", rnd.index, client=name or client_id, block=rnd.block)
            rnd.changed.set()

    def on_client_back(self, name: str, roles: Sequence[str]) -> None:
        """A rig client named ``name`` registered in ``roles``: the alarms of clients of that
        name whose roles it covers are over (a recorder's stays while only its rig's
        presenter is back)."""
        back = set(roles)
        prefix = f"client_lost:{name}:"
        covered = [a.key for a in self.alarms.active() if a.key.startswith(prefix)
                   and set(a.key[len(prefix):].split("+")) <= back]  # fmt: skip
        self._clear(*covered)
