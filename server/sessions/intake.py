"""What the rig reports to a session: acknowledgements, presentations and spike counts.

Each arrives on the event loop (from ZeroMQ or HTTP), is checked against the generation in
flight, stored on the session's I/O thread and only then counted, so that an
acknowledged response is on disk and a failed write changes nothing. Counts for a completed
generation are stored apart as late; repeats of what was taken are duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from protocol.codec import Message
from protocol.errors import (
    ChannelMismatch,
    LateResponse,
    SessionStateError,
    UnknownStimulus,
)
from protocol.messages import GenerationAck, Presentation, Presented, Responses, ResponsesAck
from server.sessions.progress import Progress
from server.sessions.rounds import Round
from server.sessions.safety import Safety
from server.sessions.states import SessionState
from server.storage.session_file import SessionFile

S = SessionState
#: How long counts for the generation being proposed wait for it (instead of an error).
ROUND_WAIT_S = 30.0


class RigIntake(Safety):
    """The rig-facing half of :class:`~server.sessions.session.Session` (a mixin: the
    attributes below are the session's), raising the alarms of :class:`Safety`."""

    store: SessionFile
    n_channels: int | None
    progress: Progress
    _seen: set[str]
    _collected: int
    _ingest_lock: asyncio.Lock
    _round_open: asyncio.Event

    # -- what the rig reports --------------------------------------------------------------
    async def _current(self, generation: int, what: str) -> Round:
        """The round ``generation`` belongs to, or the error a rig should hear."""
        if self.state in (S.created, S.finished, S.aborted):
            raise SessionStateError(f"session {self.id} is {self.state}: it takes no {what}")
        if generation <= self._collected or generation < self.done:
            raise LateResponse(f"generation {generation} of session {self.id} is complete")
        if self.round is None and generation == self.done and self.state is S.running:
            # Being proposed (or reloaded after a restart): wait for it rather than refuse.
            # (A paused session opens it on resume: the rig shows it again then.)
            with contextlib.suppress(asyncio.TimeoutError):  # not the builtin before 3.11
                await asyncio.wait_for(self._round_open.wait(), ROUND_WAIT_S)
        rnd = self.round
        if rnd is not None and generation == rnd.index:
            return rnd
        current = "none" if rnd is None else rnd.index
        raise UnknownStimulus(
            f"{what} for generation {generation}, which session {self.id} has not sent "
            f"(current: {current})"
        )

    def on_ack(self, ack: GenerationAck, client_id: str) -> None:
        rnd = self.round
        if rnd is not None and ack.generation == rnd.index and ack.block == rnd.block:
            if not rnd.acked:
                self._event("block_acknowledged", rnd.index, block=rnd.block, client=client_id)
            rnd.acked, rnd.presenter = True, client_id
            self._took(rnd, trial=False)

    def on_presenter_ready(self) -> None:
        """A presenter (re)registered: an undelivered or unacknowledged block goes now, or,
        while the generation is held, on resume. A rig that hung before it took the block
        and came back on a new socket has lost it: it is not stalled on it any more."""
        rnd = self.round
        if rnd is not None and not rnd.acked:
            rnd.sent_at, rnd.resends = 0.0, 0
            rnd.heard_at = time.monotonic()  # delivered afresh: the stall clock starts again
            if self._hold:
                rnd.presenter = None  # on no rig now: _hold_until_resumed sends it
            self._clear("stall")
            rnd.changed.set()

    def _took(self, rnd: Round, trial: bool = True) -> None:
        """Something arrived for ``rnd``: the timeout starts again and the loop looks; a
        ``trial`` reported (a presentation, counts) also restarts the stall clock."""
        rnd.last_activity = time.monotonic()
        if trial:
            rnd.heard_at = rnd.last_activity
        rnd.changed.set()
        self._rig_heard(trial)
        self.changes.bump()

    async def ingest_presented(self, msg: Presented, source: str, client: str) -> int:
        """Log presentations; returns how many were new."""
        async with self._ingest_lock:
            rnd = await self._current(msg.generation, "presentations")
            fresh = rnd.book.new_presentations(msg.presentations)
            if fresh:  # stored first, then counted: a failed write changes nothing
                await self._workers.io(
                    self.store.append_presentations,
                    rnd.index,
                    rnd.block,
                    fresh,
                    f"{source}:{client}",
                )
                rnd.book.record_presented(fresh)
                self._took(rnd)
                self._check_frames(rnd, fresh)
                told = Presented(generation=msg.generation, presentations=fresh)
                self.transport.tell_recorders(self.config.rig, Message(told, session=self.id))
            return len(fresh)

    def _check_frames(self, rnd: Round, presentations: Sequence[Presentation]) -> None:
        """Warn the operator of trials whose display missed frames: their image stayed on
        (or off) longer than the session asked, which a timing-critical analysis must know.
        Every such report is an event; the first of a block (``first``) is the warning."""
        late = [p for p in presentations if p.dropped_frames]
        if late:
            first = rnd.block not in rnd.frames_warned
            rnd.frames_warned.add(rnd.block)
            self._event(
                "dropped_frames", rnd.index, block=rnd.block, presentations=len(late),
                frames=sum(p.dropped_frames or 0 for p in late),
                ids=[p.presentation_id for p in late[:20]], first=first,
            )  # fmt: skip

    async def ingest_responses(self, msg: Responses, source: str, client: str) -> ResponsesAck:
        """Store and count spike counts; acknowledged only once they are on disk. Counts
        refused for what they are (the wrong channels, stimuli the generation does not
        have) raise an alarm: the recorder will send the same again."""
        try:
            ack = await self._take_responses(msg, source, client)
        except (ChannelMismatch, UnknownStimulus) as exc:
            await self._refused(exc, source, client, msg.generation)
            raise
        self._responses_taken(source, client, ack.accepted)
        return ack

    async def _take_responses(self, msg: Responses, source: str, client: str) -> ResponsesAck:
        async with self._ingest_lock:
            recorded = len(msg.responses[0].counts)
            needed = max(self.config.channels_used())
            if needed >= recorded:
                raise ChannelMismatch(
                    f"the session scores channel {needed}, "
                    f"the responses have {recorded} channels"
                )
            try:
                rnd = await self._current(msg.generation, "responses")
            except LateResponse:
                return await self._store_late(msg, f"{source}:{client}")
            new = [r for r in msg.responses if r.presentation_id not in self._seen]
            fresh = rnd.book.new_responses(new)  # checks all, records nothing yet
            if fresh:  # stored first, then counted: a failed write changes nothing
                await self._workers.io(
                    self.store.append_responses, rnd.index, rnd.block, fresh, f"{source}:{client}"
                )
                rnd.book.record_responses(fresh)
                self.n_channels = rnd.book.n_channels
                self.progress.took(len(fresh))
                self._took(rnd)
            return ResponsesAck(accepted=len(fresh), duplicates=len(msg.responses) - len(fresh))

    async def _store_late(self, msg: Responses, source: str) -> ResponsesAck:
        """Keep counts for a completed generation apart (never optimised on), then refuse
        them as late; a resend of what was already taken is a harmless duplicate."""
        fresh = [r for r in msg.responses if r.presentation_id not in self._seen]
        if not fresh:
            return ResponsesAck(accepted=0, duplicates=len(msg.responses))
        widths = {len(r.counts) for r in fresh} | {self.n_channels or len(fresh[0].counts)}
        if len(widths) > 1:
            raise ChannelMismatch(
                f"late responses with {sorted(widths)} channels; the session records "
                f"{self.n_channels}"
            )
        await self._workers.io(self.store.append_responses, msg.generation, -1, fresh, source, True)
        self._seen.update(r.presentation_id for r in fresh)
        self._event("late_responses", msg.generation, count=len(fresh))
        raise LateResponse(
            f"generation {msg.generation} of session {self.id} is complete: "
            f"{len(fresh)} responses stored as late, not used"
        )
