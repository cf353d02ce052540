"""The generation in flight: stimulus ids, references cycled through the session, blocks
that ask only for what is missing, and when a block is over."""

from __future__ import annotations

import numpy as np

from protocol.messages import Generation, Presentation, PresentationParams, Response
from server.engine.loop import Proposal
from server.sessions.rounds import open_round


def _proposal(index: int, n: int = 3) -> Proposal:
    images = np.full((n, 4, 4, 3), index, dtype=np.uint8)
    return Proposal(index, np.zeros((n, 2)), images)


def test_stimulus_ids_and_references_cycle_through_the_session():
    references = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 4, 4, 3), np.uint8)
    rounds = [open_round(_proposal(g), references, 2, 1, None) for g in range(3)]
    assert list(rounds[1].book.slots) == ["g1-e0", "g1-e1", "g1-e2", "g1-r0", "g1-r1"]
    assert [r.references for r in rounds] == [[0, 1], [2, 3], [4, 0]]
    # images in stimulus order: evolved, then the picked references
    assert rounds[2].images[3:, 0, 0, 0].tolist() == [4, 0]
    bare = open_round(_proposal(0), None, 2, 1, None)  # no references: evolved only
    assert list(bare.book.slots) == ["g0-e0", "g0-e1", "g0-e2"] and bare.references == []


def test_a_later_block_asks_only_for_what_each_stimulus_still_lacks():
    rnd = open_round(_proposal(7), None, 0, 2, None)
    first = rnd.next_block("s1", rnd.book.missing(), PresentationParams())
    content = first.content
    assert isinstance(content, Generation) and (content.generation, content.block) == (7, 0)
    assert [(s.stimulus_id, s.repeats, s.buffer) for s in content.stimuli] == [
        ("g7-e0", 2, 0), ("g7-e1", 2, 1), ("g7-e2", 2, 2),
    ]  # fmt: skip
    assert first.session == "s1" and len(first.buffers) == 3
    rnd.book.record_responses(
        [Response(presentation_id=f"p{i}", stimulus_id="g7-e1", counts=[1.0]) for i in (0, 1)]
        + [Response(presentation_id="p2", stimulus_id="g7-e2", counts=[1.0])]
    )
    second = rnd.next_block("s1", rnd.book.missing(), PresentationParams())
    assert [(s.stimulus_id, s.repeats, s.buffer) for s in second.content.stimuli] == [
        ("g7-e0", 2, 0), ("g7-e2", 1, 1),
    ]  # fmt: skip
    np.testing.assert_array_equal(second.buffers[1], rnd.images[2])
    assert rnd.block == 1 and not rnd.acked


def test_a_block_is_over_when_every_stimulus_was_answered_or_aborted_as_asked():
    rnd = open_round(_proposal(0, n=2), None, 0, 1, None)
    rnd.next_block("s1", rnd.book.missing(), PresentationParams())
    rnd.book.record_responses([Response(presentation_id="a", stimulus_id="g0-e0", counts=[1.0])])
    assert not rnd.block_over()
    rnd.book.record_presented(
        [Presentation(presentation_id="b", stimulus_id="g0-e1", onset=0.0, outcome="aborted")]
    )
    assert rnd.block_over() and rnd.book.missing() == ["g0-e1"]  # over, yet still missing
