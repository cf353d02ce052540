"""The generation in flight: stimulus ids, references cycled through the session, blocks
that ask only for what is missing, and when a block is over."""

from __future__ import annotations

import numpy as np

from protocol.messages import Generation, Presentation, PresentationParams, Response
from server.engine.loop import Proposal
from server.engine.objectives import Mean
from server.sessions.rounds import open_round


def _proposal(index: int, n: int = 3) -> Proposal:
    images = np.full((n, 4, 4, 3), index, dtype=np.uint8)
    return Proposal(index, np.zeros((n, 2)), images)


def test_stimulus_ids_and_references_cycle_through_the_session():
    references = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 4, 4, 3), np.uint8)
    rounds = [open_round([_proposal(g)], references, 2, 1, None) for g in range(3)]
    assert list(rounds[1].book.slots) == ["g1-e0", "g1-e1", "g1-e2", "g1-r0", "g1-r1"]
    assert [r.references for r in rounds] == [[0, 1], [2, 3], [4, 0]]
    # images in stimulus order: evolved, then the picked references
    assert rounds[2].images[3:, 0, 0, 0].tolist() == [4, 0]
    bare = open_round([_proposal(0)], None, 2, 1, None)  # no references: evolved only
    assert list(bare.book.slots) == ["g0-e0", "g0-e1", "g0-e2"] and bare.references == []


def test_a_later_block_asks_only_for_what_each_stimulus_still_lacks():
    rnd = open_round([_proposal(7)], None, 0, 2, None)
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
    rnd = open_round([_proposal(0, n=2)], None, 0, 1, None)
    rnd.next_block("s1", rnd.book.missing(), PresentationParams())
    rnd.book.record_responses([Response(presentation_id="a", stimulus_id="g0-e0", counts=[1.0])])
    assert not rnd.block_over()
    rnd.book.record_presented(
        [Presentation(presentation_id="b", stimulus_id="g0-e1", onset=0.0, outcome="aborted")]
    )
    assert rnd.block_over() and rnd.book.missing() == ["g0-e1"]  # over, yet still missing


def _thread_proposal(index: int, value: int, n: int) -> Proposal:
    return Proposal(index, np.zeros((n, 2)), np.full((n, 4, 4, 3), value, dtype=np.uint8))


def test_threads_are_interleaved_in_an_order_the_seed_and_generation_fix():
    references = np.full((2, 4, 4, 3), 200, dtype=np.uint8)

    def opened(g: int, seed: int):
        proposals = [_thread_proposal(g, 10, 3), _thread_proposal(g, 20, 2)]
        return open_round(proposals, references, 2, 1, None, seed=seed)

    rnd = opened(4, seed=1)
    ids = list(rnd.book.slots)
    assert sorted(ids) == sorted(
        ["g4-t0-e0", "g4-t0-e1", "g4-t0-e2", "g4-t1-e0", "g4-t1-e1", "g4-r0", "g4-r1"]
    )
    # each image is its own stimulus's, wherever the order put it
    for row, sid in enumerate(ids):
        expected = 200 if "-r" in sid else 10 if "-t0-" in sid else 20
        assert rnd.images[row, 0, 0, 0] == expected
    assert list(opened(4, seed=1).book.slots) == ids  # a resumed session shows the same
    orders = {tuple(opened(g, seed).book.slots) for g in range(4) for seed in range(3)}
    assert len({tuple(sid.split("-", 1)[1] for sid in order) for order in orders}) > 1


def test_each_thread_is_scored_on_its_own_images_and_objective():
    proposals = [_thread_proposal(0, 1, 2), _thread_proposal(0, 2, 2)]
    rnd = open_round(proposals, None, 0, 1, None, seed=3)
    counts = {"g0-t0-e0": [1.0, 9.0], "g0-t0-e1": [2.0, 8.0],
              "g0-t1-e0": [3.0, 7.0], "g0-t1-e1": [4.0, 6.0]}  # fmt: skip
    rnd.book.record_responses(
        [Response(presentation_id=sid, stimulus_id=sid, counts=c) for sid, c in counts.items()]
    )
    first, second = Mean(channels=[0]), Mean(channels=[1])
    assert rnd.book.scores("evolved", first, 0).tolist() == [1.0, 2.0]
    assert rnd.book.scores("evolved", second, 1).tolist() == [7.0, 6.0]
    assert rnd.book.channel_means("evolved", 1).tolist() == [3.5, 6.5]
