"""One running evolution on one rig: the session and generation state machines of PROTOCOL.md.

A :class:`Session` owns an :class:`~server.engine.loop.Engine` and a session file. Its
asyncio task proposes a generation, sends it to the rig in blocks (:mod:`.rounds`),
collects presentations and spike counts as the transport hands them in, and completes the
generation when every stimulus is answered or the re-presentation limit is reached (then
the missing ones score NaN).

The event loop never computes or writes (:mod:`.workers`). A response is acknowledged only
after it is on disk. The finished generation is written while the next one is already with
the rig, which keeps storage out of the loop latency; a crash in between loses nothing,
because the responses are stored and a resumed session re-derives the same generation from
the optimizer state (see :meth:`Session.restore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from protocol.errors import SessionStateError
from server.engine.loop import Engine, Proposal
from server.engine.statistics import History, Scored, finite
from server.sessions.alarms import Alarms
from server.sessions.changes import Changes
from server.sessions.config import SessionConfig
from server.sessions.intake import RigIntake
from server.sessions.memory import give_back
from server.sessions.progress import Progress
from server.sessions.replay import Logged, note
from server.sessions.rounds import Round, open_round
from server.sessions.safety import mostly_missing, stall_limit
from server.sessions.states import SessionState, check_control, check_transition
from server.sessions.threads import SessionThread
from server.sessions.transport import Transport
from server.sessions.warnings import Warnings
from server.sessions.workers import Workers
from server.storage.records import Event, ResumePoint, ThreadGeneration
from server.storage.session_file import SessionFile

log = logging.getLogger(__name__)
T = TypeVar("T")
S = SessionState


class Session(RigIntake):
    """A session's state and its generation loop; what the rig reports comes in through
    :class:`~server.sessions.intake.RigIntake`, alarms and auto-pause are
    :class:`~server.sessions.safety.Safety`'s."""

    def __init__(
        self,
        session_id: str,
        config: SessionConfig,
        threads: Sequence[SessionThread],
        store: SessionFile,
        generations: int,
        references: np.ndarray | None,
        transport: Transport,
        state: SessionState = S.created,
        changes: Changes | None = None,
        release: Callable[[], None] = lambda: None,
        retire: Callable[[Session], None] = lambda session: None,
    ) -> None:
        self.id = session_id
        self.config = config
        #: The evolutions the session runs, in lockstep (one unless ``config.threads``).
        self.threads = list(threads)
        self.store = store
        self.generations = generations
        self.references = references
        self.transport = transport
        self.state = SessionState(state)
        self.done = 0
        self.round: Round | None = None
        self.n_channels: int | None = None
        #: Bumped whenever something the dashboard shows changes.
        self.changes = changes or Changes()
        #: Recent warnings for the operator (all events stay in the file).
        self.warnings = Warnings()
        #: Conditions the operator must act on (they clear when the cause is gone).
        self.alarms = Alarms()
        #: Why the session is pausing or paused: "operator", or the alarm that paused it.
        self.pause_reason: str | None = None
        #: An auto-pause holds the generation on the rig: not re-presented, not completed.
        self._hold = False
        self.progress = Progress()
        #: The operator's notes, oldest first (each also an event in the file).
        self.notes: list[dict[str, Any]] = []
        #: Why the session failed, if it did.
        self.failure: str | None = None
        self._release = release  # gives back the shared generator
        self._retire = retire  # lets go of an ended session
        self._workers = Workers(session_id, store)
        self._seen: set[str] = set()  # presentation ids answered in completed generations
        self._running = asyncio.Event()
        self._ingest_lock = asyncio.Lock()
        self._control_lock = asyncio.Lock()
        self._round_open = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending_write: asyncio.Future[Any] | None = None
        self._last_completed_at: float | None = None
        #: Read the next round's presentations and responses from the file (after a restart
        #: or an error), instead of starting it empty.
        self._reload_round = False
        #: Index of the last generation whose collection ended: its responses are late.
        self._collected = -1
        self._closed = False
        self._let_go = asyncio.Event()  # set once an ended session has been retired

    @property
    def engine(self) -> Engine:
        """Thread 0's engine: the session's own, in a one-thread session."""
        return self.threads[0].engine

    @property
    def history(self) -> History:
        """Thread 0's history, which also keeps the session's loop latency."""
        return self.threads[0].history

    @property
    def histories(self) -> list[History]:
        """Each thread's history."""
        return [thread.history for thread in self.threads]

    def _propose(self) -> list[Proposal]:
        """The next generation of every thread (blocking: a worker runs it)."""
        return [thread.engine.propose() for thread in self.threads]

    def _event(self, kind: str, generation: int = -1, **detail: Any) -> None:
        """Log an event (unless the file is closed) and show it if it is a warning."""
        if self._closed:  # a stopped or finished session logs nothing more
            return
        self._workers.log_event(kind, generation, detail)
        self.warnings.add(kind, generation, detail)
        self.changes.bump()

    async def add_note(self, text: str) -> dict[str, Any]:
        """Keep an operator's note, timestamped, in the session file (answered once stored)."""
        if self._closed:
            raise SessionStateError(f"session {self.id} is {self.state}: it takes no notes")
        when, generation = time.time(), self.done
        await self._workers.io(lambda: self.store.log_event("note", generation, text=text))
        self.notes.append(note(when, generation, text))
        self.changes.bump()
        return self.notes[-1]

    async def read(self, fn: Callable[[SessionFile], T]) -> T:
        """``fn(store)`` off the event loop (see :meth:`Workers.read`)."""
        return await self._workers.read(fn)

    # -- controls --------------------------------------------------------------------------
    async def _set_state(self, state: SessionState, **detail: Any) -> None:
        check_transition(self.id, self.state, state)
        # The file first, then memory: whoever sees the new state (an operator, a close)
        # finds it on disk too.
        await self._workers.io(self.store.set_status, state.value)
        self.state = state
        self.progress.state(state.value)
        self._event(state.value, self.done, **detail)

    async def start(self) -> None:
        async with self._control_lock:
            check_control(self.id, "start", self.state)
            await self._set_state(S.running)
            self._launch()

    def _launch(self) -> None:
        self._running.set()
        self._task = asyncio.create_task(self._run(), name=f"session-{self.id}")

    async def pause(self) -> None:
        """Stop proposing generations; the one in flight still collects its responses (the
        session is ``pausing`` until it is complete)."""
        async with self._control_lock:
            check_control(self.id, "pause", self.state)
            self._running.clear()
            self.pause_reason = "operator"
            await self._set_state(S.pausing if self.round else S.paused, reason="operator")

    async def _settle_pause(self) -> None:
        """``pausing`` becomes ``paused``: what was on the rig is over."""
        async with self._control_lock:
            if self.state is S.pausing:
                await self._set_state(S.paused, reason=self.pause_reason)

    async def resume(self) -> None:
        async with self._control_lock:
            check_control(self.id, "resume", self.state)
            if self.failure is not None:
                raise SessionStateError(
                    f"session {self.id} stopped on an error ({self.failure}); restart the "
                    "server to resume it from its file"
                )
            await self._set_state(S.running)
            self._last_completed_at = None  # the pause is not loop latency
            self.pause_reason, self._hold = None, False
            self._running.set()

    async def stop(self) -> None:
        """Abort: the generation in flight is dropped (its responses stay in the file)."""
        async with self._control_lock:
            check_control(self.id, "stop", self.state)
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self.round = None
            await self._set_state(S.aborted, by="operator")
            self._clear(every=True)  # nothing is wasted any more
            await self.close()

    async def close(self) -> None:
        """Finish pending writes and release the file (the state stays as it is)."""
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending_write is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._pending_write
        self._closed = True
        cancelled = False
        try:
            if self.store.is_open:
                await self._workers.io(self.store.close)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:  # even if closing the file failed, or this close was cancelled by another
            self._release()
            if not cancelled:  # a close cancelled by a second close() leaves this to it
                self._let_go_of()

    def _let_go_of(self) -> None:
        """Stop the threads, and let go of an ended session (even one whose file failed to
        close: it takes nothing more, and an archive must not wait for it forever)."""
        if self.state.final:
            self._retire(self)
            self._let_go.set()
            self._workers.shutdown(then=give_back)  # once a cancelled proposal has ended too
        else:
            self._workers.shutdown()

    async def retired(self) -> None:
        """Wait until this ended session has closed its file and been let go; between
        showing a final state and that, an archive would find the file still open."""
        await self._let_go.wait()

    # -- the generation loop ---------------------------------------------------------------
    async def _run(self) -> None:
        try:
            proposal = None
            while self.done < self.generations:
                if proposal is None:
                    proposal = await self._workers.compute(self._propose)
                await self._settle_pause()
                await self._running.wait()
                rnd = await self._open_round(proposal)
                await self._collect(rnd)
                proposal = await self._close_round(rnd)
            if self._pending_write is not None:
                await asyncio.shield(self._pending_write)
            async with self._control_lock:  # not at once with a pause or an auto-pause
                await self._set_state(S.finished)
            self._clear(every=True)
            await self.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a full disk: keep the file, tell the operator
            # What is in memory may be ahead of the file now (e.g. the optimizer told, the
            # generation not stored): continuing needs a restart, which resumes from the file.
            log.exception("session %s failed", self.id)
            self.failure = repr(exc)
            if self.state in (S.running, S.pausing):  # paused in memory only: the file says
                self.state = S.paused  # running, so a restart resumes it
            self._running.clear()
            self.round = None
            self.warnings.add("error", self.done, {"message": self.failure})
            self._alarm("error", "error", self.done, message=self.failure)
            self.changes.bump()
            with contextlib.suppress(Exception):
                failure, done = self.failure, self.done
                await self._workers.io(lambda: self.store.log_event("error", done, message=failure))

    async def _open_round(self, proposals: list[Proposal]) -> Round:
        config, n_channels = self.config, self.n_channels
        rnd = await self._workers.compute(  # it copies images: not on the event loop
            lambda: open_round(
                proposals,
                self.references,
                config.references_per_generation,
                config.repeats,
                n_channels,
                config.subtract_baseline,
                config.seed,
            )
        )
        if self._reload_round:  # resumed: the rig may have reported part of this generation
            self._reload_round = False
            stored = await self._workers.io(self.store.stored_round, rnd.index)
            if stored.presentations:
                rnd.book.record_presented(stored.presentations)
            if stored.responses:
                rnd.book.record_responses(stored.responses)
                self.n_channels = rnd.book.n_channels
            rnd.block = stored.blocks - 1
        self.round = rnd
        self._round_open.set()
        self.changes.bump()
        return rnd

    def _send_block(self, rnd: Round, reason: str) -> None:
        """Send the stimuli ``rnd`` still lacks as its next block."""
        missing = rnd.book.missing()
        message = rnd.next_block(self.id, missing, self.config.params)
        if reason in ("first", "resumed", "presenter lost"):  # for a rig that starts on it
            rnd.heard_at = time.monotonic()  # now, the stall clock starts
        rnd.presenter = self.transport.deliver(self.id, self.config.rig, message)
        self._check_presenter(rnd, time.monotonic())
        latency = None
        if rnd.block == 0 and self._last_completed_at is not None:
            latency = time.perf_counter() - self._last_completed_at
            self.history.loop_latency_s.append(latency)
        self._event(
            "block_sent",
            rnd.index,
            block=rnd.block,
            stimuli=len(missing),
            reason=reason,
            delivered=rnd.presenter is not None,
            loop_latency_s=latency,
        )

    async def _collect(self, rnd: Round) -> None:
        if not rnd.book.complete:
            if self._running.is_set():
                self._send_block(rnd, "first" if rnd.block < 0 else "resumed")
            else:  # paused while it was being opened: held, nothing is on the rig yet
                self._hold = True
        timeout = self.config.response_timeout_s
        while not rnd.book.complete:
            if self._hold and self._rig_idle(rnd):
                await self._hold_until_resumed(rnd)
                continue
            now = time.monotonic()
            wake = rnd.resend_at() if not rnd.acked else rnd.last_activity + timeout
            rnd.changed.clear()
            due = min(wake, self._stall_due(rnd))
            await _wait_for_event(rnd.changed, timeout=max(due - now, 0.01))
            if rnd.book.complete:
                break
            now = time.monotonic()
            if now >= self._stall_due(rnd):
                await self._stalled(rnd, now)
            elif self._hold:  # held: shown again only after resume
                continue
            elif rnd.presenter_lost:
                self._send_block(rnd, "presenter lost")
            elif not rnd.acked:
                if now >= rnd.resend_at():  # same message, same id: harmless repeat
                    assert rnd.message is not None
                    repeat = rnd.presenter is not None  # else it is the first delivery
                    rnd.presenter = self.transport.deliver(self.id, self.config.rig, rnd.message)
                    rnd.sent_at = now
                    if repeat and rnd.presenter is not None:
                        rnd.resends += 1
                    elif rnd.presenter is not None:  # delivered at last: the rig starts now
                        rnd.heard_at = now
                    self._check_presenter(rnd, now)
            elif (
                rnd.block_over()
                or (rnd.block_shown() and self._refusing())  # shown, its counts refused
                or now - rnd.last_activity >= timeout
            ):
                if await self._held_for_refusals():
                    continue
                if rnd.represented < self.config.max_represent:
                    rnd.represented += 1
                    reason = "aborted or unanswered" if rnd.block_over() else "timeout"
                    self._send_block(rnd, reason)
                    continue
                unanswered = mostly_missing(rnd)
                if unanswered is None:
                    self._event("missing", rnd.index, stimuli=rnd.book.missing())
                    break
                # Never told to the optimizer: held (auto-pause), or else shown again.
                if not await self._unanswered(rnd, *unanswered):
                    rnd.represented = 0
                    self._send_block(rnd, "mostly unanswered")
        rnd.completed_at = time.perf_counter()
        self._clear("stall", "nan_generation", "no_presenter")  # the generation is complete
        # From here on, counts for this generation are late, and resends duplicates.
        self._collected = rnd.index
        self._seen.update(p for s in rnd.book.slots.values() for p in s.answered)
        self.round = None
        self._round_open.clear()

    def _rig_idle(self, rnd: Round) -> bool:
        """Whether the rig is done with the block it was given (or never took it)."""
        quiet = time.monotonic() - rnd.last_activity
        limit = min(self.config.response_timeout_s, stall_limit(self.config, rnd))
        return (
            rnd.presenter is None or rnd.presenter_lost or not rnd.acked or quiet >= limit
            or rnd.block_over() or rnd.block_shown()
        )  # fmt: skip

    async def _hold_until_resumed(self, rnd: Round) -> None:
        """The rig is done with the held block: paused until an operator resumes (or the
        rig's late reports complete the generation); then the rig shows what it lacks."""
        await self._settle_pause()
        while not self._running.is_set() and not rnd.book.complete:
            rnd.changed.clear()
            await _wait_for_event(self._running, rnd.changed)
        if self._running.is_set() and not rnd.book.complete:
            rnd.represented = 0
            self._send_block(rnd, "resumed")

    async def _close_round(self, rnd: Round) -> list[Proposal] | None:
        """Tell every thread's optimizer, propose the next generation, and store this one
        meanwhile."""
        book = rnd.book
        scored = [
            Scored(
                book.scores("evolved", thread.objective, k),
                book.scores("reference", thread.objective),
                rnd.references,
                book.channel_means("evolved", k),
                book.channel_means("reference"),
            )
            for k, thread in enumerate(self.threads)
        ]
        answers = [
            np.array([len(s.responses) for s in book.slots.values()
                      if s.kind == "evolved" and s.thread == k])
            for k in range(len(self.threads))
        ]  # fmt: skip
        last = self.done + 1 >= self.generations
        rig_s = (rnd.completed_at or 0.0) - rnd.started_at

        def work() -> tuple[list[ThreadGeneration], list[Proposal] | None]:
            done = []
            for thread, proposal, score, n in zip(
                self.threads, rnd.proposals, scored, answers, strict=True
            ):
                engine = thread.engine
                result = engine.complete(proposal, score.scores, {"responses": n}, rig_s)
                refs = list(zip(rnd.references, np.asarray(score.reference_scores).tolist(),
                                strict=True))  # fmt: skip
                done.append(ThreadGeneration(result, engine.optimizer.state_dict(), refs))
            return done, None if last else self._propose()

        if self._pending_write is not None:  # surface a failed write before going on
            await asyncio.shield(self._pending_write)
        done, proposals = await self._workers.compute(work)
        first = done[0]
        self._pending_write = asyncio.ensure_future(
            self._workers.io(
                self.store.write_generation,
                first.result,
                first.optimizer_state,
                first.reference_scores,
                done[1:],
            )
        )
        self._last_completed_at = rnd.completed_at
        self.progress.completed()
        self.done += 1
        for thread, score in zip(self.threads, scored, strict=True):
            thread.history.add(score)
        self.changes.bump()
        return proposals

    # -- restoring after a restart ---------------------------------------------------------
    def restore(
        self, histories: Sequence[History], point: ResumePoint, events: Sequence[Event]
    ) -> None:
        """Continue from the file: ``point.done`` generations complete (every thread's
        optimizer already holds their state; ``histories``: each thread's), so the next
        proposal is the generation that was in flight. What the operator was shown comes
        back from the event log; the alarms of before the restart are cleared, their
        conditions are looked at anew."""
        for thread, history in zip(self.threads, histories, strict=True):
            thread.history = history
        self.done = point.done
        logged = Logged.of(events)
        self.warnings, self.alarms = logged.warnings, logged.alarms
        self.progress, self.notes = logged.progress, logged.notes
        self._clear(every=True)
        self._seen, self.n_channels = point.seen, point.n_channels
        self._reload_round = True
        if self.state is S.running:
            self._launch()
        elif self.state in (S.pausing, S.paused):  # pausing: the loop makes it paused, as
            self.pause_reason = logged.pause_reason  # what was on the rig ended with the server
            self._task = asyncio.create_task(self._run(), name=f"session-{self.id}")

    def summary(self) -> dict[str, Any]:
        """What the operator sees: state, progress, the generation in flight."""
        rnd = self.round
        current = None
        if rnd is not None:
            slots = rnd.book.slots.values()
            current = {
                "generation": rnd.index,
                "block": rnd.block,
                "acknowledged": rnd.acked,
                "stimuli": len(rnd.book.slots),
                "presented": rnd.book.presented,
                "responses": sum(len(s.responses) for s in slots),
                "responses_wanted": len(rnd.book.slots) * self.config.repeats,
                "missing": len(rnd.book.missing()),
            }
        return {
            **shared_summary(self.id, self.config, self.state, self.done, self.history),
            "generations": self.generations,
            "population": self.engine.optimizer.population,
            "generator": self.engine.generator.name,
            "optimizer": self.engine.optimizer.name,
            "device": str(self.engine.generator.device),
            "start": self.threads[0].started_from,
            "threads": [t.summary(k) for k, t in enumerate(self.threads)],
            "current": current,
            "warnings": self.warnings.count,
            "alarms": self.alarms.as_json(active_only=True),
            "pause_reason": self.pause_reason,
            "progress": self.progress.as_json(self.done, self.generations),
            "failure": self.failure,
            "data_file": str(self.store.path),
        }


def shared_summary(
    session_id: str, config: SessionConfig, state: SessionState, done: int, history: History
) -> dict[str, Any]:
    """The summary keys that a live session and a stored one work out the same way."""
    return {
        "id": session_id,
        "name": config.name,
        "state": state.value,
        "rig": config.rig,
        "objective": config.describe_objective(),
        "generations_done": done,
        "best_score": finite(history.best_score),
    }


async def _wait_for_event(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Wait until one of ``events`` is set or ``timeout`` passes. (``asyncio.wait_for`` can
    swallow a cancellation that races with the event on Python 3.11, leaving a stopped
    session running; ``asyncio.wait`` never does.)"""
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
