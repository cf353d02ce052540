"""Conformance suite: every registered optimizer honours the ask/tell contract."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import ConfigError
from server.engine.optimizers import OPTIMIZERS, Optimizer, make_optimizer
from server.engine.optimizers.base import OptimizerStateError

DIM = 12


def sphere(x: np.ndarray) -> np.ndarray:
    return -np.sum((x - 0.5) ** 2, axis=1)


@pytest.fixture(params=OPTIMIZERS.names())
def name(request) -> str:
    return request.param


def advance(opt: Optimizer, generations: int, nan_every: int = 0) -> None:
    for g in range(generations):
        codes = opt.ask()
        scores = sphere(codes)
        if nan_every:
            scores[g % nan_every :: nan_every] = np.nan
        opt.tell(codes, scores)


def test_ask_is_repeatable_until_tell(name):
    opt = make_optimizer(name, DIM, seed=1)
    first = opt.ask()
    assert first.shape == (opt.population, DIM)
    np.testing.assert_array_equal(first, opt.ask())
    opt.tell(first, sphere(first))
    assert opt.generation == 1
    assert not np.array_equal(first, opt.ask())


def test_same_seed_same_run_other_seed_differs(name):
    a, b, c = (make_optimizer(name, DIM, seed=s) for s in (3, 3, 4))
    for opt in (a, b, c):
        advance(opt, 4)
    np.testing.assert_array_equal(a.ask(), b.ask())
    assert not np.array_equal(a.ask(), c.ask())


@pytest.mark.parametrize("pending", [False, True])
def test_restored_optimizer_continues_identically(name, pending):
    opt = make_optimizer(name, DIM, seed=7)
    advance(opt, 5, nan_every=4)
    if pending:
        opt.ask()
    restored = Optimizer.from_state_dict(opt.state_dict())
    assert type(restored) is type(opt)
    for _ in range(3):  # identical now and for the following generations
        codes = opt.ask()
        np.testing.assert_array_equal(codes, restored.ask())
        opt.tell(codes, sphere(codes))
        restored.tell(codes, sphere(codes))


def test_state_is_plain_data(name):
    opt = make_optimizer(name, DIM, seed=0)
    advance(opt, 2)
    for key, value in opt.state_dict().items():
        assert isinstance(value, (np.ndarray, int, float, str)), (key, type(value))


def test_all_missing_scores_keep_going(name):
    opt = make_optimizer(name, DIM, seed=0)
    codes = opt.ask()
    opt.tell(codes, np.full(len(codes), np.nan))
    nxt = opt.ask()
    assert np.isfinite(nxt).all() and nxt.shape == codes.shape


def test_bad_tell_is_refused(name):
    opt = make_optimizer(name, DIM, seed=0)
    codes = opt.ask()
    with pytest.raises(ConfigError, match="one score per code"):
        opt.tell(codes, np.zeros(len(codes) - 1))
    with pytest.raises(ConfigError, match="shape"):
        opt.tell(codes[:, :-1], np.zeros(len(codes)))
    with pytest.raises(ConfigError, match="infinite"):
        opt.tell(codes, np.full(len(codes), np.inf))
    assert opt.generation == 0


def test_improves_on_a_smooth_problem(name):
    settings = {"learning_rate": 0.05, "radius": 0.2} if name in ("nes", "fdgd") else {}
    opt = make_optimizer(name, DIM, seed=2, **settings)
    start = sphere(opt.ask()).mean()
    advance(opt, 60)
    assert sphere(opt.ask()).mean() > start + 0.5 * abs(start)


def test_unknown_settings_and_names_are_refused():
    with pytest.raises(ConfigError, match="unknown optimizer 'sgd'"):
        make_optimizer("sgd", DIM)
    with pytest.raises(ConfigError, match="unknown setting"):
        make_optimizer("ga", DIM, mutation_sise=0.3)
    with pytest.raises(ConfigError, match="population"):
        make_optimizer("cmaes", DIM, population=1)


def test_corrupt_state_is_refused():
    state = make_optimizer("ga", DIM).state_dict()
    del state["rng"]
    with pytest.raises(OptimizerStateError):
        Optimizer.from_state_dict(state)
    with pytest.raises(OptimizerStateError):
        Optimizer.from_state_dict({**make_optimizer("ga", DIM).state_dict(), "optimizer": "x"})


def test_budget_sets_the_schedule_horizon():
    assert make_optimizer("cmaes", DIM, budget=3000).settings.horizon == 75
    assert make_optimizer("cmaes", DIM, budget=3000, population=20).settings.horizon == 150
    assert make_optimizer("cmaes", DIM, budget=3000, horizon=10).settings.horizon == 10


def test_presets_per_generator():
    tuned = make_optimizer("cmaes", DIM, generator="pixel", budget=3000).settings
    assert (tuned.population, tuned.step_size, tuned.sigma0, tuned.sigma_end) == (
        40,
        "decay",
        1.0,
        0.1,
    )
    assert tuned.horizon == 75 and tuned.band_start == 0
    fourier = make_optimizer("cmaes", DIM, generator="fourier", frequencies=np.ones(DIM))
    assert (fourier.settings.sigma0, fourier.settings.band_start) == (3.0, 2.0)
    assert fourier.settings.negative_weight == 1.0
    assert make_optimizer("cmaes", DIM, generator="pixel", population=20).population == 20
    assert make_optimizer("cmaes-chol", DIM, generator="fc6").settings.sigma0 == 3.0
    assert make_optimizer("cmaes-chol", DIM, generator="fourier").settings.band_start == 0
    assert make_optimizer("cmaes", DIM).settings.step_size == "csa"  # textbook without preset


def test_settings_are_type_checked_and_coerced():
    assert make_optimizer("ga", DIM, population=40.0).population == 40
    assert make_optimizer("cmaes", DIM, sigma0=2).settings.sigma0 == 2.0
    for bad in (
        {"population": "40"},
        {"population": 2.5},
        {"population": True},
        {"mutation_rate": "abc"},
    ):
        with pytest.raises(ConfigError, match="must be"):
            make_optimizer("ga", DIM, **bad)
    with pytest.raises(ConfigError, match="step_size must be str"):
        make_optimizer("cmaes", DIM, step_size=1)


def test_every_optimizer_starts_from_given_codes_and_restores_mid_start(name):
    """Started from codes far from the origin (inverted images), the first generation is
    around them (GA: the codes themselves), and a restore at that point changes nothing."""
    given = np.full((3, DIM), 5.0) + np.arange(3)[:, None]
    opt = make_optimizer(name, DIM, seed=2)
    opt.start_from(given)
    restored = Optimizer.from_state_dict(opt.state_dict())
    first = opt.ask()
    np.testing.assert_array_equal(first, restored.ask())
    assert abs(first.mean() - given.mean()) < 1.5  # near the codes, not N(0, 1) around 0
    with pytest.raises(ConfigError, match="before its first generation"):
        opt.start_from(given)
    with pytest.raises(ConfigError, match="shape"):
        make_optimizer(name, DIM).start_from(np.zeros((2, DIM + 1)))


def test_ga_shows_the_codes_and_cmaes_starts_at_their_best_or_mean():
    given = np.stack([np.full(DIM, v) for v in (1.0, 4.0, 2.0)])
    ga = make_optimizer("ga", DIM, population=6)
    ga.start_from(given)
    np.testing.assert_array_equal(ga.ask()[:3], given)

    best = make_optimizer("cmaes", DIM, population=6)
    best.start_from(given)
    seeded = best.ask()
    np.testing.assert_array_equal(seeded[:3], given)  # shown, to find the best
    best.tell(seeded, np.array([np.nan, np.nan, np.nan, 50.0, 0.0, 0.0]))
    again = best.ask()  # no seed answered: they are shown again, not lost to a fill-in
    np.testing.assert_array_equal(again[:3], given)
    np.testing.assert_array_equal(best.mean, given.mean(axis=0))
    scores = np.array([1.0, 9.0, 2.0, 50.0, 0.0, 0.0])  # a fill-in beats them: still a seed
    best.tell(again, scores)
    np.testing.assert_array_equal(best.mean, given[1])
    assert not np.isin(best.ask(), given).all()

    mean = make_optimizer("cmaes", DIM, population=6, seeds="mean")
    mean.start_from(given)
    np.testing.assert_array_equal(mean.mean, given.mean(axis=0))
    assert not np.isin(mean.ask(), given).all()  # sampled around the mean at once
