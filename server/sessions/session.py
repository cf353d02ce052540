"""One running evolution on one rig: the session and generation state machines of PROTOCOL.md.

A :class:`Session` owns an :class:`~server.engine.loop.Engine` and a
:class:`~server.storage.session_file.SessionFile`. Its asyncio task proposes a generation, sends it to
the rig in blocks (block 0: every stimulus; later blocks: the stimuli still lacking
responses), collects presentations and spike counts as the transport hands them in, and
completes the generation when every stimulus is answered or the re-presentation limit is
reached (then the missing ones score NaN).

The event loop never computes or writes: the optimizer and the generator run on a compute
thread, HDF5 writes on an I/O thread, one of each per session, so their order is kept.
A response is acknowledged only after it is on disk. The finished generation is written
while the next one is already with the rig, which keeps storage out of the loop latency;
a crash in between loses nothing, because the responses are stored and a resumed session
re-derives the same generation from the optimizer state (see :meth:`Session.restore`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from protocol.codec import Message
from protocol.errors import ChannelMismatch, LateResponse, SessionStateError, UnknownStimulus
from protocol.messages import (
    Generation,
    GenerationAck,
    Presentation,
    Presented,
    Response,
    Responses,
    ResponsesAck,
    Stimulus,
)
from server.engine.loop import Engine, GenerationResult, Proposal
from server.engine.pool import PooledGenerator
from server.http.live import Changes, finite, warning_for
from server.sessions.book import GenerationBook, StimulusSlot
from server.sessions.config import SessionConfig
from server.storage.session_file import SessionFile, read_closed, rows

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A ``generation`` not acknowledged within this time is sent again (PROTOCOL.md 6).
RESEND_S = 2.0
#: How long counts for the generation being proposed wait for it (instead of an error).
ROUND_WAIT_S = 30.0
#: Session states (PROTOCOL.md 7); the last two are final.
STATES = ("created", "running", "paused", "finished", "aborted")
#: Warnings a session keeps for the dashboard (all events stay in the file).
WARNINGS_KEPT = 100


class Transport(Protocol):
    """How a session reaches its presenter (the ZeroMQ server implements this)."""

    def deliver(self, session_id: str, rig: str | None, message: Message) -> str | None:
        """Send ``message`` to the session's presenter; its client id, or None if none is
        connected (the session then tries again)."""


@dataclass
class Round:
    """The generation in flight: its proposal, bookkeeping and the block being shown."""

    proposal: Proposal
    book: GenerationBook
    #: Images in stimulus order: evolved first, then references.
    images: np.ndarray
    references: list[int]
    block: int = -1
    message: Message | None = None
    presenter: str | None = None
    acked: bool = False
    sent_at: float = 0.0
    last_activity: float = 0.0
    represented: int = 0
    presenter_lost: bool = False
    #: Answers each stimulus of the current block had when the block was sent.
    block_start: dict[str, int] = field(default_factory=dict)
    #: perf_counter when the round opened, and when its last needed response arrived.
    started_at: float = field(default_factory=time.perf_counter)
    completed_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def index(self) -> int:
        return self.proposal.index


@dataclass
class History:
    """Per-generation numbers for the operator (the full record is in the HDF5 file)."""

    maxima: list[float] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    reference_means: list[float] = field(default_factory=list)
    #: Seconds from the last response of a generation to the next one leaving the server.
    loop_latency_s: list[float] = field(default_factory=list)
    best_score: float = float("nan")
    #: The evolved images' scores in the last complete generation (NaN = missing).
    last_scores: list[float] = field(default_factory=list)

    @classmethod
    def from_store(cls, store: SessionFile, done: int) -> History:
        """The numbers of the first ``done`` generations of a session file."""
        history = cls()
        gens = store.table("generations", columns=("index", "scores"))
        index, scores = gens.get("index", np.array([])), gens.get("scores", np.array([]))
        refs = store.table("references", columns=("generation", "score"))
        ref_gen, ref_score = refs.get("generation", np.array([])), refs.get("score", np.array([]))
        for g in range(done):
            history.record(scores[index == g], ref_score[ref_gen == g])
        return history

    def record(self, scores: np.ndarray, reference_scores: np.ndarray) -> None:
        """Add one generation's scores (NaN = missing); either may be empty."""
        self.last_scores = scores.astype(float).tolist()
        valid = scores[~np.isnan(scores)]
        refs = reference_scores[~np.isnan(reference_scores)]
        self.maxima.append(float(valid.max()) if valid.size else float("nan"))
        self.means.append(float(valid.mean()) if valid.size else float("nan"))
        self.reference_means.append(float(refs.mean()) if refs.size else float("nan"))
        if valid.size and not valid.max() <= self.best_score:  # NaN best: the first one
            self.best_score = float(valid.max())

    def as_json(self, start: int = 0) -> dict[str, Any]:
        """Generations ``start`` onwards as JSON-safe lists (missing: None), with the loop
        latency's last and median values."""
        latency = self.loop_latency_s
        return {
            "start": start,
            "max": finite(self.maxima[start:]),
            "mean": finite(self.means[start:]),
            "reference_mean": finite(self.reference_means[start:]),
            "last_scores": finite(self.last_scores),
            "loop_latency_s": {
                "last": latency[-1] if latency else None,
                "median": float(np.median(latency)) if latency else None,
            },
        }


class Session:
    """A session's state, its generation loop, and the ingestion of rig messages."""

    def __init__(
        self,
        session_id: str,
        config: SessionConfig,
        engine: Engine,
        store: SessionFile,
        generations: int,
        references: np.ndarray | None,
        transport: Transport,
        state: str = "created",
        changes: Changes | None = None,
    ) -> None:
        self.id = session_id
        self.config = config
        self.engine = engine
        self.store = store
        self.generations = generations
        self.references = references
        self.transport = transport
        self.state = state
        self.done = 0
        self.round: Round | None = None
        self.history = History()
        self.n_channels: int | None = None
        self._seen: set[str] = set()  # presentation ids answered in completed generations
        self._compute_pool = concurrent.futures.ThreadPoolExecutor(1, f"compute-{session_id}")
        self._io_pool = concurrent.futures.ThreadPoolExecutor(1, f"io-{session_id}")
        self._running = asyncio.Event()
        self._ingest_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._pending_write: asyncio.Future[Any] | None = None
        self._last_completed_at: float | None = None
        #: Read the next round's presentations and responses from the file (after a restart
        #: or an error), instead of starting it empty.
        self._reload_round = False
        #: Index of the last generation whose collection ended: its responses are late.
        self._collected = -1
        #: Set when the file is closed; why the session failed, if it did.
        self._closed = False
        self.failure: str | None = None
        self._control_lock = asyncio.Lock()
        self._round_open = asyncio.Event()
        #: Bumped whenever something the dashboard shows changes.
        self.changes = changes or Changes()
        #: Recent warnings for the operator, each with a sequence number ``seq``.
        self.warnings: deque[dict[str, Any]] = deque(maxlen=WARNINGS_KEPT)
        self._warnings_seen = 0

    # -- threads ---------------------------------------------------------------------------
    async def _compute(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._compute_pool, fn, *args)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, fn, *args)

    def _event(self, kind: str, generation: int = -1, **detail: Any) -> None:
        """Log an event to the file without waiting (the I/O thread keeps the order)."""
        if self._closed:  # a stopped or finished session logs nothing more
            return
        future = asyncio.get_running_loop().run_in_executor(
            self._io_pool, lambda: self.store.log_event(kind, generation, **detail)
        )
        future.add_done_callback(_log_failure)
        self._warn(kind, generation, detail)
        self.changes.bump()

    def _warn(self, kind: str, generation: int, detail: dict[str, Any]) -> None:
        """Keep the event for the dashboard if the operator should see it."""
        text = warning_for(kind, detail)
        if text is not None:
            self._warnings_seen += 1
            self.warnings.append(
                {"seq": self._warnings_seen, "time": time.time(), "generation": generation,
                 "kind": kind, "message": text}
            )  # fmt: skip

    async def read(self, fn: Callable[[SessionFile], T]) -> T:
        """Run ``fn(store)`` off the event loop: on the I/O thread while the session writes,
        on a read-only handle once it is closed."""
        if self.store.is_open:
            return await self._io(fn, self.store)
        return await asyncio.to_thread(read_closed, self.store.path, fn)

    # -- controls --------------------------------------------------------------------------
    def _require(self, action: str, *allowed: str) -> None:
        if self.state not in allowed:
            raise SessionStateError(f"cannot {action} session {self.id}: it is {self.state}")

    async def _set_state(self, state: str, **detail: Any) -> None:
        self.state = state
        await self._io(self.store.set_status, state)
        self._event(state, self.done, **detail)

    async def start(self) -> None:
        async with self._control_lock:
            self._require("start", "created")
            await self._set_state("running")
            self._launch()

    def _launch(self) -> None:
        self._running.set()
        self._task = asyncio.create_task(self._run(), name=f"session-{self.id}")

    async def pause(self) -> None:
        """Stop proposing generations; the one in flight still collects its responses."""
        async with self._control_lock:
            self._require("pause", "running")
            self._running.clear()
            await self._set_state("paused")

    async def resume(self) -> None:
        async with self._control_lock:
            self._require("resume", "paused")
            if self.failure is not None:
                raise SessionStateError(
                    f"session {self.id} stopped on an error ({self.failure}); restart the "
                    "server to resume it from its file"
                )
            await self._set_state("running")
            self._last_completed_at = None  # the pause is not loop latency
            self._running.set()

    async def stop(self) -> None:
        """Abort: the generation in flight is dropped (its responses stay in the file)."""
        async with self._control_lock:
            self._require("stop", "created", "running", "paused")
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self.round = None
            await self._set_state("aborted")
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
        try:
            if self.store.is_open:
                await self._io(self.store.close)
        finally:  # even if closing the file failed, or this close was cancelled by another
            if isinstance(self.engine.generator, PooledGenerator):  # shared: give it back
                self.engine.generator.close()
        # Not in the finally: a close cancelled by a second close() leaves the pools to it.
        # A proposal cancelled mid-computation may still be running; it is not waited for.
        self._compute_pool.shutdown(wait=False)
        self._io_pool.shutdown(wait=False)

    # -- the generation loop ---------------------------------------------------------------
    async def _run(self) -> None:
        try:
            proposal = None
            while self.done < self.generations:
                if proposal is None:
                    proposal = await self._compute(self.engine.propose)
                await self._running.wait()
                rnd = await self._open_round(proposal)
                await self._collect(rnd)
                proposal = await self._close_round(rnd)
            if self._pending_write is not None:
                await asyncio.shield(self._pending_write)
            await self._set_state("finished")
            await self.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a full disk: keep the file, tell the operator
            # What is in memory may be ahead of the file now (e.g. the optimizer told, the
            # generation not stored): continuing needs a restart, which resumes from the file.
            log.exception("session %s failed", self.id)
            self.failure = repr(exc)
            self.state = "paused"
            self._running.clear()
            self.round = None
            self._warn("error", self.done, {"message": self.failure})
            self.changes.bump()
            with contextlib.suppress(Exception):
                await self._io(self.store.log_event, "error", self.done, message=repr(exc))

    def _slots(self, proposal: Proposal) -> tuple[list[StimulusSlot], np.ndarray, list[int]]:
        g = proposal.index
        slots = [StimulusSlot(f"g{g}-e{i}", "evolved", i) for i in range(len(proposal.images))]
        k = self.config.references_per_generation
        if not k or self.references is None:
            return slots, proposal.images, []
        picks = [(g * k + j) % len(self.references) for j in range(k)]
        slots += [StimulusSlot(f"g{g}-r{j}", "reference", j) for j in range(k)]
        return slots, np.concatenate([proposal.images, self.references[picks]]), picks

    async def _open_round(self, proposal: Proposal) -> Round:
        slots, images, picks = self._slots(proposal)
        book = GenerationBook(proposal.index, slots, self.config.repeats, self.n_channels)
        rnd = Round(proposal, book, images, picks)
        if self._reload_round:  # resumed: the rig may have reported part of this generation
            self._reload_round = False
            presented, responses, blocks = await self._io(self._stored_round, proposal.index)
            if presented:
                book.record_presented(presented)
            if responses:
                book.record_responses(responses)
                self.n_channels = book.n_channels
            rnd.block = blocks - 1
        self.round = rnd
        self._round_open.set()
        self.changes.bump()
        return rnd

    def _stored_round(self, g: int) -> tuple[list[Presentation], list[Response], int]:
        shown = self.store.table("presentations", g)
        presented = [
            Presentation(presentation_id=p, stimulus_id=s, onset=o, outcome=x)
            for p, s, o, x in rows(shown, "presentation_id", "stimulus_id", "onset", "outcome")
        ]
        got = self.store.table("responses", g)
        responses = [
            Response(presentation_id=p, stimulus_id=s, counts=list(c))
            for p, s, c in rows(got, "presentation_id", "stimulus_id", "counts")
        ]
        events = self.store.table("events", g)
        blocks = int(np.sum(events.get("kind", np.array([])) == "block_sent"))
        return presented, responses, blocks

    def _answered(self, rnd: Round, stimulus_id: str) -> int:
        return len(rnd.book.slots[stimulus_id].answered)

    def _send_block(self, rnd: Round, stimulus_ids: Sequence[str], reason: str) -> None:
        rnd.block += 1
        position = {sid: i for i, sid in enumerate(rnd.book.slots)}  # row in rnd.images
        buffers, stimuli = [], []
        for sid in stimulus_ids:
            slot = rnd.book.slots[sid]
            wanted = self.config.repeats - len(slot.responses)
            stimuli.append(
                Stimulus(stimulus_id=sid, buffer=len(buffers), kind=slot.kind, repeats=wanted)
            )
            buffers.append(rnd.images[position[sid]])
        content = Generation(
            generation=rnd.index, block=rnd.block, stimuli=stimuli, params=self.config.params
        )
        rnd.message = Message(content, session=self.id, buffers=tuple(buffers))
        rnd.acked = rnd.presenter_lost = False
        rnd.block_start = {sid: self._answered(rnd, sid) for sid in stimulus_ids}
        rnd.sent_at = rnd.last_activity = time.monotonic()
        rnd.presenter = self.transport.deliver(self.id, self.config.rig, rnd.message)
        latency = None
        if rnd.block == 0 and self._last_completed_at is not None:
            latency = time.perf_counter() - self._last_completed_at
            self.history.loop_latency_s.append(latency)
        self._event(
            "block_sent",
            rnd.index,
            block=rnd.block,
            stimuli=len(stimuli),
            reason=reason,
            delivered=rnd.presenter is not None,
            loop_latency_s=latency,
        )

    def _block_over(self, rnd: Round) -> bool:
        """Every stimulus of the block was answered or aborted as often as it was asked."""
        assert rnd.message is not None
        return all(
            self._answered(rnd, s.stimulus_id) - rnd.block_start[s.stimulus_id] >= s.repeats
            for s in rnd.message.content.stimuli  # type: ignore[attr-defined]
        )

    async def _collect(self, rnd: Round) -> None:
        if not rnd.book.complete:
            self._send_block(rnd, rnd.book.missing(), "first" if rnd.block < 0 else "resumed")
        timeout = self.config.response_timeout_s
        while not rnd.book.complete:
            now = time.monotonic()
            wake = rnd.sent_at + RESEND_S if not rnd.acked else rnd.last_activity + timeout
            rnd.changed.clear()
            await _wait_for_event(rnd.changed, max(wake - now, 0.01))
            if rnd.book.complete:
                break
            now = time.monotonic()
            if rnd.presenter_lost:
                self._send_block(rnd, rnd.book.missing(), "presenter lost")
            elif not rnd.acked:
                if now - rnd.sent_at >= RESEND_S:  # same message, same id: harmless repeat
                    assert rnd.message is not None
                    rnd.presenter = self.transport.deliver(self.id, self.config.rig, rnd.message)
                    rnd.sent_at = now
            elif self._block_over(rnd) or now - rnd.last_activity >= timeout:
                if rnd.represented >= self.config.max_represent:
                    self._event("missing", rnd.index, stimuli=rnd.book.missing())
                    break
                rnd.represented += 1
                reason = "aborted or unanswered" if self._block_over(rnd) else "timeout"
                self._send_block(rnd, rnd.book.missing(), reason)
        rnd.completed_at = time.perf_counter()
        # From here on, counts for this generation are late, and resends duplicates.
        self._collected = rnd.index
        self._seen.update(p for s in rnd.book.slots.values() for p in s.answered)
        self.round = None
        self._round_open.clear()

    async def _close_round(self, rnd: Round) -> Proposal | None:
        """Tell the optimizer, propose the next generation, and store this one meanwhile."""
        channels, weights = self.config.channels, self.config.channel_weights
        scores = rnd.book.scores("evolved", channels, weights)
        ref_scores = rnd.book.scores("reference", channels, weights) if rnd.references else None
        n_responses = np.array(
            [len(s.responses) for s in rnd.book.slots.values() if s.kind == "evolved"]
        )
        last = self.done + 1 >= self.generations

        rig_s = (rnd.completed_at or 0.0) - rnd.started_at

        def work() -> tuple[GenerationResult, dict[str, Any], Proposal | None]:
            extra = {"responses": n_responses}
            result = self.engine.complete(rnd.proposal, scores, extra, score_seconds=rig_s)
            state = self.engine.optimizer.state_dict()
            return result, state, None if last else self.engine.propose()

        if self._pending_write is not None:  # surface a failed write before going on
            await asyncio.shield(self._pending_write)
        result, state, proposal = await self._compute(work)
        refs = (
            []
            if ref_scores is None
            else list(zip(rnd.references, ref_scores.tolist(), strict=True))
        )
        self._pending_write = asyncio.ensure_future(
            self._io(self.store.write_generation, result, state, refs)
        )
        self._last_completed_at = rnd.completed_at
        self.done += 1
        self.history.record(scores, np.array([]) if ref_scores is None else ref_scores)
        self.changes.bump()
        return proposal

    # -- what the rig reports --------------------------------------------------------------
    async def _current(self, generation: int, what: str) -> Round:
        """The round ``generation`` belongs to, or the error a rig should hear."""
        if self.state in ("created", "finished", "aborted"):
            raise SessionStateError(f"session {self.id} is {self.state}: it takes no {what}")
        if generation <= self._collected or generation < self.done:
            raise LateResponse(f"generation {generation} of session {self.id} is complete")
        if self.round is None and generation == self.done:
            # Being proposed (or reloaded after a restart): wait for it rather than refuse.
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
            rnd.last_activity = time.monotonic()
            rnd.changed.set()
            self.changes.bump()

    def on_client_lost(self, client_id: str) -> None:
        rnd = self.round
        if rnd is not None and rnd.presenter == client_id and not rnd.book.complete:
            rnd.presenter_lost = True
            self._event("presenter_lost", rnd.index, client=client_id, block=rnd.block)
            rnd.changed.set()

    def on_presenter_ready(self) -> None:
        """A presenter (re)registered: an undelivered or unacknowledged block goes now."""
        rnd = self.round
        if rnd is not None and not rnd.acked:
            rnd.sent_at = 0.0
            rnd.changed.set()

    async def ingest_presented(self, msg: Presented, source: str, client: str) -> int:
        """Log presentations; returns how many were new."""
        async with self._ingest_lock:
            rnd = await self._current(msg.generation, "presentations")
            fresh = rnd.book.new_presentations(msg.presentations)
            if fresh:  # stored first, then counted: a failed write changes nothing
                await self._io(
                    self.store.append_rows,
                    "presentations",
                    {
                        "generation": np.full(len(fresh), rnd.index, dtype=np.int32),
                        "block": np.full(len(fresh), rnd.block, dtype=np.int32),
                        "presentation_id": [p.presentation_id for p in fresh],
                        "stimulus_id": [p.stimulus_id for p in fresh],
                        "onset": np.array([p.onset for p in fresh]),
                        "outcome": [p.outcome for p in fresh],
                        "received_at": np.full(len(fresh), time.time()),
                        "source": [f"{source}:{client}"] * len(fresh),
                    },
                )
                rnd.book.record_presented(fresh)
                rnd.last_activity = time.monotonic()
                rnd.changed.set()
                self.changes.bump()
            return len(fresh)

    async def ingest_responses(self, msg: Responses, source: str, client: str) -> ResponsesAck:
        """Store and count spike counts; acknowledged only once they are on disk."""
        async with self._ingest_lock:
            recorded = len(msg.responses[0].counts)
            if max(self.config.channels) >= recorded:
                raise ChannelMismatch(
                    f"the session scores channel {max(self.config.channels)}, "
                    f"the responses have {recorded} channels"
                )
            try:
                rnd = await self._current(msg.generation, "responses")
            except LateResponse:
                fresh = [r for r in msg.responses if r.presentation_id not in self._seen]
                if not fresh:  # a resend of what was already taken: harmless
                    return ResponsesAck(accepted=0, duplicates=len(msg.responses))
                widths = {len(r.counts) for r in fresh} | {self.n_channels or len(fresh[0].counts)}
                if len(widths) > 1:
                    raise ChannelMismatch(
                        f"late responses with {sorted(widths)} channels; the session records "
                        f"{self.n_channels}"
                    ) from None
                await self._io(
                    self.store.append_rows,
                    "late_responses",
                    _response_rows(msg.generation, -1, fresh, source, client),
                )
                self._seen.update(r.presentation_id for r in fresh)
                self._event("late_responses", msg.generation, count=len(fresh))
                raise LateResponse(
                    f"generation {msg.generation} of session {self.id} is complete: "
                    f"{len(fresh)} responses stored as late, not used"
                ) from None
            new = [r for r in msg.responses if r.presentation_id not in self._seen]
            fresh = rnd.book.new_responses(new)  # checks all, records nothing yet
            if fresh:  # stored first, then counted: a failed write changes nothing
                await self._io(
                    self.store.append_rows,
                    "responses",
                    _response_rows(rnd.index, rnd.block, fresh, source, client),
                )
                rnd.book.record_responses(fresh)
                self.n_channels = rnd.book.n_channels
                rnd.last_activity = time.monotonic()
                rnd.changed.set()
                self.changes.bump()
            return ResponsesAck(accepted=len(fresh), duplicates=len(msg.responses) - len(fresh))

    # -- restoring after a restart ---------------------------------------------------------
    def restore(self, history: History, done: int, seen: set[str], n_channels: int | None) -> None:
        """Continue from the file: ``done`` generations complete (the optimizer already
        holds their state), so the next proposal is the generation that was in flight."""
        self.history, self.done, self._seen, self.n_channels = history, done, seen, n_channels
        self._reload_round = True
        if self.state == "running":
            self._launch()
        elif self.state == "paused":
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
            "current": current,
            "warnings": self._warnings_seen,
            "failure": self.failure,
            "data_file": str(self.store.path),
        }


def shared_summary(
    session_id: str, config: SessionConfig, state: str, done: int, history: History
) -> dict[str, Any]:
    """The summary keys that a live session and a stored one work out the same way."""
    return {
        "id": session_id,
        "name": config.name,
        "state": state,
        "rig": config.rig,
        "generations_done": done,
        "best_score": finite(history.best_score),
    }


def _response_rows(
    generation: int, block: int, responses: Sequence[Response], source: str, client: str
) -> dict[str, Any]:
    n = len(responses)
    width = len(responses[0].counts)

    def baseline(r: Response) -> list[float]:
        return list(r.baseline_counts) if r.baseline_counts is not None else [np.nan] * width

    return {
        "generation": np.full(n, generation, dtype=np.int32),
        "block": np.full(n, block, dtype=np.int32),
        "presentation_id": [r.presentation_id for r in responses],
        "stimulus_id": [r.stimulus_id for r in responses],
        "counts": np.array([r.counts for r in responses], dtype=np.float64),
        "baseline_counts": np.array([baseline(r) for r in responses], dtype=np.float64),
        "evoked_window_ms": np.array([r.evoked_window_ms for r in responses], dtype=np.float64),
        "baseline_window_ms": np.array(
            [r.baseline_window_ms or (np.nan, np.nan) for r in responses], dtype=np.float64
        ),
        "received_at": np.full(n, time.time()),
        "source": [f"{source}:{client}"] * n,
    }


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not log a session event: %r", future.exception())


async def _wait_for_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` passes. (``asyncio.wait_for`` can swallow a
    cancellation that races with the event on Python 3.11, leaving a stopped session
    running; ``asyncio.wait`` never does.)"""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
