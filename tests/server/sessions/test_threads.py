"""Sessions of several evolution threads: each its own generator, optimizer and score,
shown interleaved in the same blocks, stored side by side, resumed together."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from protocol.errors import ConfigError
from server.engine.objectives import Mean, Selectivity
from server.sessions.config import SessionConfig
from tests.server.sessions.doubles import (
    FakeTransport,
    answer,
    brightness,
    config,
    crashed_sessions,
    manager_in,
    run,
    wait_state,
)

TWO = [
    {"name": "pixels"},
    {"name": "fourier", "generator": "fourier", "optimizer": "ga", "population": 4},
]


def test_a_thread_is_the_session_with_what_it_sets_instead():
    session = SessionConfig(
        generator="pixel", seed=7, channels=[0, 2], repeats=2,
        threads=[{"name": "a"}, {"generator": "fourier", "objective": {"kind": "mean",
                                                                      "channels": [1]}}],
    )  # fmt: skip
    a, b = session.thread_configs()
    assert (a.generator, a.seed, a.repeats, a.scoring()) == ("pixel", 7, 2, Mean(channels=[0, 2]))
    assert (b.generator, b.seed, b.repeats, b.scoring()) == ("fourier", 8, 2, Mean(channels=[1]))
    assert session.thread_names() == ["a", "thread 1"]
    assert session.channels_used() == [0, 1, 2]
    assert session.describe_objective() == (
        "a: raise the mean of channel(s) 0, 2; thread 1: raise the mean of channel(s) 1"
    )
    one = SessionConfig(generator="pixel")
    assert one.thread_configs() == [one] and one.thread_names() == [""]


def test_a_thread_per_channel_raises_each_channel_alone():
    session = SessionConfig(thread_per_channel=True, channels=[3, 5, 9])
    assert [t.scoring() for t in session.thread_configs()] == [
        Mean(channels=[3]),
        Mean(channels=[5]),
        Mean(channels=[9]),
    ]
    assert session.thread_names() == ["channel 3", "channel 5", "channel 9"]


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"threads": [{}], "thread_per_channel": True}, "not both"),
        ({"thread_per_channel": True, "objective": Selectivity(drive=[0], suppress=[1])},
         "no objective"),
        ({"threads": [{}, {"channels": [1, 1]}]}, "thread 1: channels"),
        ({"threads": [{"objective": {"kind": "mean", "channels": [0]}, "channels": [1]}]},
         "thread 0"),
        ({"threads": [{"colour": "red"}]}, "colour"),
    ],
)  # fmt: skip
def test_threads_that_cannot_be_run_are_refused_with_the_thread_named(settings, words):
    with pytest.raises(ValidationError, match=words):
        SessionConfig(**settings)


def test_a_thread_may_not_read_outside_the_servers_folders(tmp_path):
    session = SessionConfig(threads=[{}, {"init_images": "/etc"}])
    with pytest.raises(ConfigError) as caught:
        session.confined([tmp_path], [tmp_path])
    assert caught.value.field == "threads.1.init_images"


def _scores_by_thread(message):
    """Each thread's scores as the fake rig makes them (brightness), by stimulus id."""
    out: dict[str, dict[int, float]] = {}
    for s in message.content.stimuli:
        if s.kind == "evolved":
            _, thread, image = s.stimulus_id.split("-")
            out.setdefault(thread, {})[int(image[1:])] = brightness(message.buffers[s.buffer])
    return out


def test_two_threads_run_interleaved_and_are_stored_side_by_side(tmp_path):
    async def main():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            session = await manager.create(
                config(threads=TWO, references_per_generation=2, generations=3)
            )
            await session.start()
            shown = []
            for g in range(3):
                message = await transport.next(g)
                shown.append(message)
                ack = await answer(session, message)
                assert ack.accepted == 6 + 4 + 2
            await wait_state(session, "finished")
            histories = [t.history for t in session.threads]
            return session.store.path, session.summary(), histories, shown

    path, summary, histories, shown = run(main())
    ids = [s.stimulus_id for s in shown[0].content.stimuli]
    assert sum(i.startswith("g0-t0-e") for i in ids) == 6
    assert sum(i.startswith("g0-t1-e") for i in ids) == 4
    assert ids[:6] != [f"g0-t0-e{i}" for i in range(6)]  # interleaved, not thread by thread
    assert [t["name"] for t in summary["threads"]] == ["pixels", "fourier"]
    assert [t["generator"] for t in summary["threads"]] == ["pixel", "fourier"]
    assert [t["population"] for t in summary["threads"]] == [6, 4]
    last = _scores_by_thread(shown[-1])
    for k, history in enumerate(histories):
        assert len(history.maxima) == 3
        assert history.maxima[-1] == pytest.approx(max(last[f"t{k}"].values()))
    with h5py.File(path, "r") as f:
        assert np.bincount(f["generations/index"][()]).tolist() == [6, 6, 6]
        assert np.bincount(f["threads/1/generations/index"][()]).tolist() == [4, 4, 4]
        assert f["generations/codes"].shape[1] != f["threads/1/generations/codes"].shape[1]
        scores = f["threads/1/generations/scores"][()][-4:]
        np.testing.assert_allclose(scores, [last["t1"][i] for i in range(4)])
        assert f["threads/1/references/score"].shape == (6,)
        assert f["optimizer"].attrs["generation"] == 3
        assert f["optimizer/threads/1"].attrs["generation"] == 3
        assert f["timings"].shape[0] == 3


@pytest.mark.parametrize("unclosed", [True, False], ids=["crash", "clean restart"])
def test_a_restarted_server_resumes_every_thread(tmp_path, unclosed):
    ((session_id, gen1),) = crashed_sessions(tmp_path, answered=5, unclosed=unclosed, threads=TWO)
    with h5py.File(tmp_path / f"{session_id}.h5", "r") as f:
        before = f["threads/1/generations/images"][()]

    async def second_run():
        transport = FakeTransport()
        async with manager_in(tmp_path, transport) as manager:
            assert await manager.restore() == [session_id]
            session = manager.get(session_id)
            assert [len(t.history.maxima) for t in session.threads] == [1, 1]
            again = await transport.next(0)
            assert again.content.generation == 1
            ids = [s.stimulus_id for s in gen1.content.stimuli]
            assert [s.stimulus_id for s in again.content.stimuli] == ids[5:]
            by_id = {s.stimulus_id: s.buffer for s in gen1.content.stimuli}
            for s, image in zip(again.content.stimuli, again.buffers, strict=True):
                np.testing.assert_array_equal(image, gen1.buffers[by_id[s.stimulus_id]])
            await answer(session, again)
            await answer(session, await transport.next(1))
            await wait_state(session, "finished")
            return session.store.path, [t.history for t in session.threads]

    path, histories = run(second_run())
    assert [len(h.maxima) for h in histories] == [3, 3]
    with h5py.File(path, "r") as f:  # rebuilt from its journal if left unclosed, resumed
        assert np.bincount(f["threads/1/generations/index"][()]).tolist() == [4, 4, 4]
        np.testing.assert_array_equal(f["threads/1/generations/images"][:4], before)
        assert f["optimizer/threads/1"].attrs["generation"] == 3
        assert "server_restarted" in list(f["events/kind"].asstr()[()])


def test_a_rebuild_makes_a_threads_lost_images_again_with_its_own_generator(tmp_path):
    ((session_id, _),) = crashed_sessions(tmp_path, threads=TWO)
    path = tmp_path / f"{session_id}.h5"
    with h5py.File(path, "r+") as f:
        before = f["threads/1/generations/images"][()]
        f["threads/1/generations/codes"][0, 0] += 1.0  # no longer the journal's: made again

    async def second_run():
        async with manager_in(tmp_path) as manager:
            assert await manager.restore() == [session_id]
            await manager.get(session_id).pause()

    run(second_run())
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["threads/1/generations/images"][()], before)
        events = [e for e in f["events/detail"].asstr()[()] if "rebuilt" in e]
    assert events and "1 made again" in events[-1]
    assert list(tmp_path.glob(f"{session_id}.h5.damaged*"))  # kept for an expert


def test_a_thread_the_server_cannot_build_is_refused_with_its_number(tmp_path):
    async def main():
        async with manager_in(tmp_path) as manager:
            with pytest.raises(ConfigError, match="nope") as caught:
                await manager.create(config(threads=[{}, {"generator": "nope"}]))
            assert not list(tmp_path.glob("*.h5"))  # nothing was written
            return caught.value.field

    assert run(main()) == "threads.1.generator"


def test_threads_go_at_thread_0s_pace_and_size(tmp_path):
    """A budget counts thread 0's images: a thread of another population runs (and plans
    its step sizes for) as many generations; a generator of another native size makes
    images of thread 0's, since all are shown alike."""
    import torch

    from server.sessions.manager import SessionManager
    from tests.server.engine.deepsim_layout import random_state

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(random_state("fc8"), weights / "fc8.pt")

    async def main():
        manager = SessionManager(tmp_path / "data", FakeTransport(), weights_roots=[weights])
        try:
            session = await manager.create(config(
                image_size=None, generations=None, budget=60, threads=[
                    {}, {"generator": "fc8", "weights": "fc8.pt", "population": 3}],
            ))  # fmt: skip
            record = await session.read(lambda store: store.config)
            sizes = [t.engine.generator.image_size for t in session.threads]
            return session.generations, record["threads"], sizes
        finally:
            await manager.close()

    generations, records, sizes = run(main())
    assert generations == 10  # 60 images of thread 0's 6
    assert [r["generations"] for r in records] == [10, 10]
    horizons = [r["optimizer_settings"]["horizon"] for r in records]
    assert horizons[0] == horizons[1]
    assert sizes == [224, 224] and [r["image_size"] for r in records] == [224, 224]
    assert records[1]["generator"] == "fc8"


def test_threads_that_would_overfill_a_block_are_refused(tmp_path):
    async def main():
        async with manager_in(tmp_path) as manager:
            with pytest.raises(ConfigError, match="more than the 4096") as caught:
                await manager.create(config(population=1000, threads=[{}] * 5))
            return caught.value.field

    assert run(main()) == "threads"


def test_a_thread_takes_the_sessions_channels_with_its_own_weights():
    session = SessionConfig(
        channels=[1, 2], optimizer="cmaes", settings={"sigma0": 2.0},
        threads=[{}, {"channel_weights": [1.0, -1.0], "optimizer": "ga"}],
    )  # fmt: skip
    a, b = session.thread_configs()
    assert b.scoring() == Mean(channels=[1, 2], weights=[1.0, -1.0])
    assert (a.settings, b.settings) == ({"sigma0": 2.0}, {})  # cmaes' settings are not the GA's


def test_a_thread_left_unanswered_holds_the_generation_though_the_block_is_mostly_answered():
    from protocol.messages import Response
    from server.engine.loop import Proposal
    from server.sessions.rounds import open_round
    from server.sessions.safety import mostly_missing

    proposals = [Proposal(0, np.zeros((n, 2)), np.zeros((n, 4, 4, 3), np.uint8)) for n in (8, 2)]
    rnd = open_round(proposals, None, 0, 1, None, seed=0)
    first = [sid for sid, slot in rnd.book.slots.items() if slot.thread == 0]
    rnd.book.record_responses(
        [Response(presentation_id=sid, stimulus_id=sid, counts=[1.0]) for sid in first]
    )
    assert mostly_missing(rnd) == (2, 2)  # 2 of 10 in the block, but all of thread 1's
