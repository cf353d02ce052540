"""Sessions in process: the generation state machine, ingestion rules and storage.

The transport is a stand-in that records what the session sends, and the "rig" is the test
itself, so every rule of PROTOCOL.md section 7 can be driven step by step. The same code
over real ZeroMQ and HTTP is tested in tests/xdream/test_closed_loop.py; restarts and
failures in test_recovery.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import h5py
import numpy as np
import pytest
from PIL import Image

from protocol.errors import (
    ChannelMismatch,
    ConfigError,
    LateResponse,
    SessionStateError,
    UnknownSession,
    UnknownStimulus,
)
from protocol.messages import GenerationAck, Presentation, Presented, Response, Responses
from server.sessions import rounds
from server.sessions.stored import StoredSession
from tests.server.sessions.doubles import (
    FakeTransport,
    answer,
    config,
    manager_in,
    responses_for,
    run,
    wait_state,
)


def test_session_runs_to_the_end_and_stores_everything(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(references_per_generation=2, generations=4))
            assert session.state == "created"
            await session.start()
            for g in range(4):
                message = await transport.next(g)
                assert message.content.generation == g and message.content.block == 0
                assert [s.kind for s in message.content.stimuli].count("reference") == 2
                ack = await answer(session, message)
                assert (ack.accepted, ack.duplicates) == (8, 0)
            await wait_state(session, "finished")
            return session.store.path, session.history

    path, history = run(main())
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "finished"
        assert np.bincount(f["generations/index"][()]).tolist() == [6, 6, 6, 6]
        assert f["generations/images"].shape == (24, 16, 16, 3)
        assert f["responses/counts"].shape == (32, 1)  # 4 generations x (6 evolved + 2 refs)
        assert f["references/score"].shape == (8,)
        assert not np.isnan(f["generations/scores"][()]).any()
        assert f["optimizer"].attrs["generation"] == 4
        kinds = list(f["events/kind"].asstr()[()])
        assert kinds[:2] == ["created", "running"] and kinds[-1] == "finished"
    assert len(history.maxima) == 4 and len(history.loop_latency_s) == 3


def test_duplicates_are_acknowledged_and_change_nothing(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config())
            await session.start()
            message = await transport.next(0)
            half = [s.stimulus_id for s in message.content.stimuli[:3]]
            first = await answer(session, message, only=half)
            again = await answer(session, message, only=half)
            rows = await session.read(lambda s: len(s.table("responses")["presentation_id"]))
            await session.stop()
            return first, again, rows

    first, again, rows = run(main())
    assert (first.accepted, first.duplicates) == (3, 0)
    assert (again.accepted, again.duplicates) == (0, 3)
    assert rows == 3


def test_late_unknown_and_mismatched_responses_are_refused(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config())
            with pytest.raises(SessionStateError, match="created"):
                await session.ingest_responses(
                    Responses(
                        generation=0,
                        responses=[Response(presentation_id="p", stimulus_id="g0-e0", counts=[1])],
                    ),
                    "test",
                    "rig",
                )
            await session.start()
            gen0 = await transport.next(0)
            await answer(session, gen0)
            gen1 = await transport.next(1)
            stored = await session.read(lambda s: s.table("responses")["counts"].copy())
            # generation 0 again, with fresh presentation ids: late
            late = Responses(
                generation=0,
                responses=[Response(presentation_id="late-1", stimulus_id="g0-e0", counts=[5.0])],
            )
            with pytest.raises(LateResponse, match="stored as late"):
                await session.ingest_responses(late, "test", "rig")
            # the same late message again: a duplicate, not an error
            ack = await session.ingest_responses(late, "test", "rig")
            assert (ack.accepted, ack.duplicates) == (0, 1)
            # a resend of generation 0's accepted responses: duplicates
            ack = await session.ingest_responses(responses_for(gen0), "test", "rig")
            assert ack.duplicates == 6
            with pytest.raises(UnknownStimulus, match="has no stimulus"):
                await session.ingest_responses(
                    Responses(
                        generation=1,
                        responses=[Response(presentation_id="x", stimulus_id="g0-e0", counts=[1])],
                    ),
                    "test",
                    "rig",
                )
            with pytest.raises(UnknownStimulus, match="has not sent"):
                await session.ingest_responses(
                    Responses(
                        generation=7,
                        responses=[Response(presentation_id="y", stimulus_id="g7-e0", counts=[1])],
                    ),
                    "test",
                    "rig",
                )
            with pytest.raises(ChannelMismatch):
                await session.ingest_responses(responses_for(gen1, channels=2), "test", "rig")
            with pytest.raises(UnknownSession):
                manager.get("nope")
            after = await session.read(lambda s: s.table("responses")["counts"].copy())
            late_rows = await session.read(lambda s: s.table("late_responses"))
            await session.stop()
            return stored, after, late_rows

    stored, after, late_rows = run(main())
    np.testing.assert_array_equal(stored, after)
    assert list(late_rows["presentation_id"]) == ["late-1"]


def test_unanswered_stimuli_are_represented_then_scored_nan(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(
                config(generations=1, response_timeout_s=0.2, max_represent=2)
            )
            await session.start()
            block0 = await transport.next(0)
            ids = [s.stimulus_id for s in block0.content.stimuli]
            await answer(session, block0, only=ids[:4])
            block1 = await transport.next(1)  # after the timeout: the two missing
            assert block1.content.block == 1
            assert [s.stimulus_id for s in block1.content.stimuli] == ids[4:]
            await answer(session, block1, only=ids[4:5])
            block2 = await transport.next(2)
            assert [s.stimulus_id for s in block2.content.stimuli] == ids[5:]
            session.on_ack(GenerationAck(generation=0, block=2), "c1")  # never answered
            await wait_state(session, "finished")
            return session.store.path

    path = run(main())
    with h5py.File(path, "r") as f:
        scores = f["generations/scores"][()]
        assert not np.isnan(scores[:5]).any() and np.isnan(scores[5])
        assert f["generations/responses"][()].tolist() == [1, 1, 1, 1, 1, 0]
        assert "missing" in list(f["events/kind"].asstr()[()])


def test_aborted_trials_are_represented_at_once(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1, response_timeout_s=60))
            await session.start()
            block0 = await transport.next(0)
            ids = [s.stimulus_id for s in block0.content.stimuli]
            session.on_ack(GenerationAck(generation=0, block=0), "c1")
            await session.ingest_presented(
                Presented(
                    generation=0,
                    presentations=[
                        Presentation(
                            presentation_id=f"{sid}-b0-r0",
                            stimulus_id=sid,
                            onset=float(i),
                            outcome="aborted" if i == 0 else "ok",
                        )
                        for i, sid in enumerate(ids)
                    ],
                ),
                "test",
                "rig",
            )
            await session.ingest_responses(responses_for(block0, only=ids[1:]), "test", "rig")
            block1 = await transport.next(1, timeout=5)  # no 60 s wait: the block is over
            assert [s.stimulus_id for s in block1.content.stimuli] == ids[:1]
            await answer(session, block1)
            await wait_state(session, "finished")
            return session.store.path

    with h5py.File(run(main()), "r") as f:
        assert list(f["presentations/outcome"].asstr()[()]).count("aborted") == 1
        assert not np.isnan(f["generations/scores"][()]).any()


def test_unacknowledged_block_is_resent_and_lost_presenter_gets_a_new_block(tmp_path):
    async def main():
        transport = FakeTransport()
        transport.connected = False
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1))
            await session.start()
            await asyncio.sleep(0.1)
            assert transport.sent == []
            transport.connected = True
            session.on_presenter_ready()  # a presenter registered: the block goes at once
            block0 = await transport.next(0, timeout=1.0)
            resent = await transport.next(1, timeout=4.0)  # no ack: same message again
            assert resent.id == block0.id
            session.on_ack(GenerationAck(generation=0, block=0), "c1")
            ids = [s.stimulus_id for s in block0.content.stimuli]
            await session.ingest_responses(responses_for(block0, only=ids[:2]), "test", "rig")
            session.on_client_lost("c1")
            block1 = await transport.next(2, timeout=1.0)
            assert block1.content.block == 1
            assert [s.stimulus_id for s in block1.content.stimuli] == ids[2:]
            await answer(session, block1)
            await wait_state(session, "finished")

    run(main())


def test_resends_of_an_unacknowledged_block_back_off(tmp_path, monkeypatch):
    """A presenter that is connected but never acknowledges gets the block again after
    RESEND_S, then twice as long each time up to MAX_RESEND_S, not every RESEND_S."""
    monkeypatch.setattr(rounds, "RESEND_S", 0.1)
    monkeypatch.setattr(rounds, "MAX_RESEND_S", 0.8)

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=1))
            await session.start()
            await transport.next(0)
            sent_at = [time.monotonic()]
            for n in range(1, 6):
                await transport.next(n, timeout=5.0)
                sent_at.append(time.monotonic())
            await session.stop()
        return np.diff(sent_at)

    gaps = run(main())  # 0.1, 0.2, 0.4, 0.8, 0.8 s, plus the loop's slack
    assert all(later >= 1.5 * earlier for earlier, later in itertools.pairwise(gaps[:4]))
    assert 0.7 < gaps[4] / gaps[3] < 1.4  # capped: no longer doubling


def test_controls_follow_the_state_machine(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=3))
            for refused in (session.pause, session.resume):  # not before start
                with pytest.raises(SessionStateError, match="it is created"):
                    await refused()
            await session.start()
            with pytest.raises(SessionStateError):
                await session.start()
            await answer(session, await transport.next(0))
            gen1 = await transport.next(1)
            await session.pause()  # the generation in flight still collects its responses
            assert (session.state, session.pause_reason) == ("pausing", "operator")
            for refused in (session.start, session.pause):  # start is not resume
                with pytest.raises(SessionStateError, match="it is pausing"):
                    await refused()
            await answer(session, gen1)
            await wait_state(session, "paused")  # only once the rig is done with it
            await asyncio.sleep(0.3)
            assert len(transport.sent) == 2 and session.done == 2  # nothing new while paused
            await session.resume()
            gen2 = await transport.next(2)
            assert gen2.content.generation == 2
            await session.stop()
            assert session.state == "aborted"
            with pytest.raises(SessionStateError):
                await session.resume()
            return session.store.path

    with h5py.File(run(main()), "r") as f:
        assert f.attrs["status"] == "aborted"
        assert np.bincount(f["generations/index"][()]).tolist() == [6, 6]


def test_two_sessions_run_at_once(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            a = await manager.create(config(generations=2, rig="rig-a"))
            b = await manager.create(config(generations=2, rig="rig-b", seed=9))
            await a.start()
            await b.start()
            answered = 0
            while answered < 4:
                message = await transport.next(answered)
                session = manager.get(message.session)
                await answer(session, message)
                answered += 1
            await wait_state(a, "finished")
            await wait_state(b, "finished")
            return {m.session for m in transport.sent}, a.history.maxima, b.history.maxima

    sessions, maxima_a, maxima_b = run(main())
    assert len(sessions) == 2 and len(maxima_a) == len(maxima_b) == 2
    assert maxima_a != maxima_b  # different seeds, different images


def test_generation_work_does_not_block_the_event_loop(tmp_path):
    """While a generation is computed, the loop keeps ticking (other rigs, HTTP, heartbeats)."""

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(image_size=512, population=40, generations=2))
            gaps, last = [], time.perf_counter()
            started = time.perf_counter()
            await session.start()
            waiter = asyncio.ensure_future(transport.next(0, timeout=60))
            while not waiter.done():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
            compute = time.perf_counter() - started
            await session.stop()
            return max(gaps), compute

    worst_gap, compute = run(main())
    assert worst_gap < 0.25 * compute, (worst_gap, compute)


def test_stopped_session_refuses_counts_and_ignores_lost_clients(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(generations=2, channels=[1]))
            await session.start()
            block = await transport.next(0)
            with pytest.raises(ChannelMismatch, match="scores channel 1"):
                await answer(session, block)  # one channel recorded, channel 1 targeted
            await session.stop()
            session.on_client_lost("c1")  # no error, nothing logged to a closed file
            with pytest.raises(SessionStateError, match="aborted"):
                await session.ingest_responses(responses_for(block, channels=2), "t", "r")

    run(main())


def test_channel_means_and_reference_scores_read_the_same_from_the_file(tmp_path):
    """What the page plots per recorded channel and per reference image, live and from the
    stored file: every channel the recorder sends is kept, aborted trials count for nothing."""

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(references_per_generation=2, generations=2))
            await session.start()
            for g in range(2):
                message = await transport.next(g)
                session.on_ack(GenerationAck(generation=g, block=0), "c1")
                first = message.content.stimuli[0].stimulus_id
                aborted = Presented(
                    generation=g,
                    presentations=[
                        Presentation(
                            presentation_id="bad", stimulus_id=first, onset=0.0, outcome="aborted"
                        )
                    ],
                )
                await session.ingest_presented(aborted, "test", "rig")
                stray = Response(presentation_id="bad", stimulus_id=first, counts=[999.0] * 3)
                await session.ingest_responses(Responses(generation=g, responses=[stray]),
                                               "test", "rig")  # fmt: skip
                await answer(session, message, channels=3)
            await wait_state(session, "finished")
            return session.store.path, session.history

    path, live = run(main())
    stored = StoredSession(path).history
    assert len(live.channel_means) == 2 and len(live.channel_means[0]) == 3
    assert max(live.channel_means[0]) < 999  # the aborted trial's counts are not in it
    np.testing.assert_allclose(stored.channel_means, live.channel_means)
    np.testing.assert_allclose(stored.reference_channel_means, live.reference_channel_means)
    assert stored.references() == live.references()
    assert [(r["image"], r["showings"]) for r in live.references()] == [
        (0, 1),
        (1, 1),
        (2, 1),
        (3, 1),
    ]
    assert stored.best_positions == live.best_positions
    assert live.as_json()["channels"] == live.channel_means


def test_a_session_scores_with_its_objective(tmp_path):
    """A target pattern over channels 0 and 2 of three: every stored score is minus the
    distance of that image's counts (its brightness, on every channel) to the pattern."""
    objective = {"kind": "target", "channels": [0, 2], "target": [100.0, 50.0]}

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(config(objective=objective, generations=2))
            await session.start()
            for g in range(2):
                await answer(session, await transport.next(g), channels=3)
            await wait_state(session, "finished")
            return session.store.path

    path = run(main())
    with h5py.File(path, "r") as f:
        images, scores = f["generations/images"][()], f["generations/scores"][()]
    bright = images.reshape(len(images), -1).mean(axis=1)
    np.testing.assert_allclose(scores, -np.hypot(bright - 100.0, bright - 50.0))
    assert StoredSession(path).config.scoring().kind == "target"
    with pytest.raises(ValueError, match="objective or channels"):
        config(objective=objective, channels=[1])


def test_a_session_starts_from_a_folder_of_images(tmp_path):
    """``init_images`` (inside a reference root): the first generation shows the photos,
    inverted into the pixel generator's codes (CMA-ES's seeds), then the optimizer's own
    samples; the file records the inversion. A folder outside the roots is refused."""
    folder = tmp_path / "references" / "start"
    folder.mkdir(parents=True)
    colours = [(200, 30, 40), (90, 90, 90), (20, 60, 220)]
    for name, colour in zip("abc", colours, strict=True):
        Image.new("RGB", (50, 40), colour).save(folder / f"{name}.png")

    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            with pytest.raises(ConfigError, match="must be inside") as outside:
                await manager.create(config(init_images=str(tmp_path)))
            assert outside.value.field == "init_images"
            session = await manager.create(config(init_images="start", generations=1))
            live = session.summary()["start"]
            await session.start()
            await answer(session, await transport.next(0))
            await wait_state(session, "finished")
            return session.store.path, live

    path, live = run(main())
    assert live == StoredSession(path).summary()["start"]
    assert live.startswith("started from 3 images (exact inversion, 0.")
    with h5py.File(path, "r") as f:
        images, record = f["generations/images"][()], json.loads(f.attrs["config"])
    assert len(images) == 6
    for image, colour in zip(images[:3], colours, strict=True):
        assert np.abs(image.astype(int) - colour).max() <= 1
    assert record["inversion"]["images"] == 3 and record["inversion"]["method"] == "exact"
    assert record["config"]["init_images"] == str((tmp_path / "references" / "start").resolve())
