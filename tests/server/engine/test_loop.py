"""The generation loop: propose, complete, and its sink (a real session file)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from protocol.errors import ConfigError
from server.engine.generators import make_generator
from server.engine.loop import Engine, run_in_process
from server.engine.optimizers import Optimizer, make_optimizer
from server.storage.session_file import SessionFile
from server.storage.tables import read_state


@pytest.fixture
def engine_and_file(tmp_path):
    gen = make_generator("pixel", resolution=8, image_size=16, device="cpu")
    opt = make_optimizer("cmaes-chol", gen.code_dim, seed=4, population=6)
    store = SessionFile(tmp_path / "s.h5", {"note": "test"})
    return Engine(gen, opt, store), store, tmp_path / "s.h5"


def brightness(images):
    scores = images.reshape(len(images), -1).mean(axis=1)
    scores[1] = np.nan  # one missing response per generation
    return scores, {"activation": np.nan_to_num(scores)}


def test_generations_append_and_state_restores_exactly(engine_and_file):
    engine, store, path = engine_and_file
    run_in_process(engine, brightness, 4)
    store.close("finished")
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "finished" and json.loads(f.attrs["config"]) == {"note": "test"}
        g = f["generations"]
        assert g["images"].shape == (24, 16, 16, 3)
        assert np.isnan(g["scores"][1]) and np.isnan(g["scores"][7])
        assert g["activation"].shape == (24,)
        np.testing.assert_array_equal(g["index"][:], np.repeat(np.arange(4), 6))
        state = read_state(f["optimizer"])
    restored = Optimizer.from_state_dict(state)
    np.testing.assert_array_equal(restored.ask(), engine.optimizer.ask())


def test_file_on_disk_is_complete_after_every_generation(engine_and_file, tmp_path):
    """What a crash between generations would leave (a byte copy) opens and holds them all."""
    engine, store, path = engine_and_file
    seen = []

    def check(result):
        copy = tmp_path / f"copy{result.index}.h5"
        copy.write_bytes(path.read_bytes())
        with h5py.File(copy, "r") as f:
            seen.append(f["generations/scores"].shape[0])
            assert read_state(f["optimizer"])["generation"] == result.index + 1

    run_in_process(engine, brightness, 3, check)
    assert seen == [6, 12, 18]
    store.close("aborted")


def test_scores_for_a_stale_generation_are_refused(engine_and_file):
    engine, store, _ = engine_and_file
    proposal = engine.propose()
    engine.complete(proposal, np.arange(6.0))
    with pytest.raises(RuntimeError, match="generation 0"):
        engine.complete(proposal, np.arange(6.0))
    store.close("aborted")


def test_generator_and_optimizer_must_agree():
    gen = make_generator("pixel", resolution=8, device="cpu")
    with pytest.raises(ConfigError, match="192"):
        Engine(gen, make_optimizer("ga", 10))
