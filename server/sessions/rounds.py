"""The generation in flight, as a session shows it to the rig: its stimuli, its blocks and
the rule for showing a block again.

Stimulus ids are ``g<generation>-e<i>`` for evolved image ``i`` and ``g<generation>-r<k>``
for the ``k``-th reference image of the generation (PROTOCOL.md, section 7); a session of
several threads names thread ``t``'s images ``g<generation>-t<t>-e<i>`` and shows them all,
with the references, in one random order (seeded, so a resumed session shows the same).
Block 0 holds every stimulus; a later block holds the stimuli still lacking responses, each
asked for as many more presentations as it lacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from protocol.codec import Message
from protocol.messages import Generation, PresentationParams, Stimulus
from server.engine.loop import Proposal
from server.sessions.book import GenerationBook, StimulusSlot
from server.storage.records import evolved_id

#: A ``generation`` not acknowledged within this time is sent again, then after twice as
#: long each time, up to MAX_RESEND_S (PROTOCOL.md 6): a presenter that is connected but
#: slow to acknowledge is not flooded with copies of a block's images.
RESEND_S = 2.0
MAX_RESEND_S = 30.0


@dataclass
class Round:
    """The generation in flight: its proposals (one per thread), bookkeeping and the block
    being shown."""

    proposals: list[Proposal]
    book: GenerationBook
    #: Images in the order of the book's stimuli.
    images: np.ndarray
    #: Which of the session's reference images this generation shows, in order.
    references: list[int]
    block: int = -1
    message: Message | None = None
    presenter: str | None = None
    acked: bool = False
    sent_at: float = 0.0
    #: Times the current block was sent again without an acknowledgement.
    resends: int = 0
    last_activity: float = 0.0
    represented: int = 0
    presenter_lost: bool = False
    #: Answers each stimulus of the current block had when the block was sent.
    block_start: dict[str, int] = field(default_factory=dict)
    #: Presentations the generation had when the current block was sent.
    presented_start: int = 0
    #: When the rig last reported a trial (a presentation or counts), or a presenter got
    #: the block fresh (first, on resume, a new presenter): the stall clock. Re-presentations
    #: and acks do not reset it, so a rig that takes blocks but shows nothing still stalls.
    heard_at: float = field(default_factory=time.monotonic)
    #: The ``heard_at`` a stall was raised at (a stall is raised once per silence).
    stalled_at: float | None = None
    #: Blocks whose dropped frames the operator was warned of (once per block: a window
    #: presenter reports trial by trial, and one warning per trial would bury the rest).
    frames_warned: set[int] = field(default_factory=set)
    #: perf_counter when the round opened, and when its last needed response arrived.
    started_at: float = field(default_factory=time.perf_counter)
    completed_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def index(self) -> int:
        return self.proposals[0].index

    def answered(self, stimulus_id: str) -> int:
        """Presentations of ``stimulus_id`` that are over (answered or aborted)."""
        return len(self.book.slots[stimulus_id].answered)

    def next_block(
        self, session_id: str, stimulus_ids: Sequence[str], params: PresentationParams
    ) -> Message:
        """Make the next block, of ``stimulus_ids``, the current one; its message."""
        self.block += 1
        position = {sid: i for i, sid in enumerate(self.book.slots)}  # row in self.images
        buffers: list[np.ndarray] = []
        stimuli: list[Stimulus] = []
        for sid in stimulus_ids:
            slot = self.book.slots[sid]
            wanted = self.book.repeats - len(slot.responses)
            stimuli.append(
                Stimulus(stimulus_id=sid, buffer=len(buffers), kind=slot.kind, repeats=wanted)
            )
            buffers.append(self.images[position[sid]])
        content = Generation(
            generation=self.index, block=self.block, stimuli=stimuli, params=params
        )
        self.message = Message(content, session=session_id, buffers=tuple(buffers))
        self.acked = self.presenter_lost = False
        self.block_start = {sid: self.answered(sid) for sid in stimulus_ids}
        self.presented_start = self.book.presented
        self.sent_at = self.last_activity = time.monotonic()
        self.resends = 0
        return self.message

    def resend_at(self) -> float:
        """When the unacknowledged block is due to be sent again (monotonic seconds)."""
        return self.sent_at + min(RESEND_S * 2**self.resends, MAX_RESEND_S)

    def _shown(self) -> Generation | None:
        """The current block's message content (None before the first block)."""
        content = self.message.content if self.message is not None else None
        return content if isinstance(content, Generation) else None

    def block_seconds(self) -> float:
        """How long the rig needs to show the current block (on + off time per trial)."""
        content = self._shown()
        if content is None:
            return 0.0
        trial_s = (content.params.on_ms + content.params.off_ms) / 1000
        return trial_s * sum(s.repeats for s in content.stimuli)

    def block_shown(self) -> bool:
        """The rig reported as many presentations as the current block asks for (whether
        or not their counts were taken)."""
        content = self._shown()
        if content is None:
            return False
        wanted = sum(s.repeats for s in content.stimuli)
        return self.book.presented - self.presented_start >= wanted

    def image(self, stimulus_id: str) -> np.ndarray | None:
        """The image of stimulus ``stimulus_id`` of this generation (None: not one of it)."""
        for row, sid in enumerate(self.book.slots):
            if sid == stimulus_id:
                return self.images[row]
        return None

    def block_over(self) -> bool:
        """Every stimulus of the block was answered or aborted as often as it was asked."""
        assert self.message is not None
        content = self.message.content
        assert isinstance(content, Generation)
        return all(
            self.answered(s.stimulus_id) - self.block_start[s.stimulus_id] >= s.repeats
            for s in content.stimuli
        )


def open_round(
    proposals: Sequence[Proposal],
    references: np.ndarray | None,
    per_generation: int,
    repeats: int,
    n_channels: int | None,
    subtract_baseline: bool = False,
    seed: int = 0,
) -> Round:
    """The round for ``proposals`` (one per thread, of the same generation): their evolved
    images, then ``per_generation`` of the session's ``references`` (cycled through the
    session, never optimised on); with several threads, all in an order drawn from
    ``seed`` and the generation."""
    g = proposals[0].index
    if any(p.index != g for p in proposals):  # a bug, not a setting: threads go in step
        raise RuntimeError(f"threads propose generations {[p.index for p in proposals]}")
    slots: list[StimulusSlot] = []
    for t, proposal in enumerate(proposals):
        slots += [
            StimulusSlot(evolved_id(g, i, t, len(proposals)), "evolved", i, t)
            for i in range(len(proposal.images))
        ]
    images, picks = np.concatenate([p.images for p in proposals]), []
    if per_generation and references is not None:
        picks = [(g * per_generation + j) % len(references) for j in range(per_generation)]
        slots += [StimulusSlot(f"g{g}-r{j}", "reference", j) for j in range(per_generation)]
        images = np.concatenate([images, references[picks]])
    if len(proposals) > 1:  # interleaved: no thread's images always first on the rig
        order = np.random.default_rng([seed, g]).permutation(len(slots))
        slots, images = [slots[i] for i in order], images[order]
    book = GenerationBook(g, slots, repeats, n_channels, subtract_baseline)
    return Round(list(proposals), book, images, picks)
