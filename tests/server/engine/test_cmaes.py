"""Our CMA-ES variants against pycma, the reference implementation.

Measure: generations to reach f < 1e-8 from x0 = 0 (optimum at 3), population 10,
sigma0 1, median over 5 seeds. Tolerance: within 25 % of pycma for the separable variant
(vs pycma's CMA_diagonal) and for the Cholesky variant on the sphere (vs full pycma). On the
ellipsoid, the Cholesky variant, which learns the covariance by rank-one updates only
(Igel et al. 2006), may take up to 2x pycma's rank-mu-and-rank-one full CMA.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from protocol.errors import ConfigError
from server.engine.optimizers import Optimizer, make_optimizer
from server.engine.optimizers.base import OptimizerStateError
from server.engine.optimizers.cmaes import CholeskyCMAES, SepCMAES, recombination_weights

cma = pytest.importorskip("cma")

SEEDS = range(5)


def sphere(x):
    return np.sum((x - 3) ** 2, axis=-1)


def ellipsoid(x):
    d = x.shape[-1]
    return np.sum(10 ** (3 * np.arange(d) / (d - 1)) * (x - 3) ** 2, axis=-1)


def ours(name, f, d, seed, max_gen=3000):
    opt = make_optimizer(name, d, seed=seed, population=10, sigma0=1.0)
    for g in range(max_gen):
        x = opt.ask()
        fx = f(x)
        opt.tell(x, -fx)  # we maximise
        if fx.min() < 1e-8:
            return g + 1
    return max_gen


def reference(diagonal, f, d, seed, max_gen=3000):
    es = cma.CMAEvolutionStrategy(
        np.zeros(d),
        1.0,
        {
            "popsize": 10,
            "CMA_diagonal": diagonal,
            "seed": seed + 1,
            "verbose": -9,
            "tolfun": 0,
            "tolx": 0,
            "tolfunhist": 0,
            "tolflatfitness": 1000,
            "tolstagnation": 10**6,
        },
    )
    for g in range(max_gen):
        x = es.ask()
        fx = f(np.array(x))
        es.tell(x, list(fx))
        if fx.min() < 1e-8:
            return g + 1
    return max_gen


@pytest.mark.parametrize("f", [sphere, ellipsoid])
@pytest.mark.parametrize("d", [10, 20])
def test_separable_matches_pycma_diagonal(f, d):
    ratio = np.median([ours("cmaes", f, d, s) for s in SEEDS]) / np.median(
        [reference(True, f, d, s) for s in SEEDS]
    )
    assert 1 / 1.25 < ratio < 1.25


@pytest.mark.parametrize("f, tolerance", [(sphere, 1.25), (ellipsoid, 2.0)])
def test_cholesky_matches_pycma_full(f, tolerance):
    ratio = np.median([ours("cmaes-chol", f, 10, s) for s in SEEDS]) / np.median(
        [reference(False, f, 10, s) for s in SEEDS]
    )
    assert 1 / 1.25 < ratio < tolerance


def test_cholesky_factors_stay_inverse_and_learn_the_scaling():
    d = 8
    opt = make_optimizer("cmaes-chol", d, seed=0, population=10)
    for _ in range(150):
        x = opt.ask()
        opt.tell(x, -ellipsoid(x))
    assert isinstance(opt, CholeskyCMAES)
    eye = np.eye(d)
    a = opt._colour(eye).T  # columns: A e_i
    a_inv = opt._whiten(eye).T
    np.testing.assert_allclose(a @ a_inv, eye, atol=1e-8)
    c = a @ a.T
    assert np.all(np.linalg.eigvalsh(c) > 0)
    # learned a larger variance along the flattest axis than along the steepest
    assert c[0, 0] > 3 * c[-1, -1]


def test_decay_schedule_is_geometric_and_then_constant():
    opt = make_optimizer("cmaes", 5, step_size="decay", sigma0=2.0, sigma_end=0.5, horizon=4)
    sigmas = []
    for _ in range(6):
        x = opt.ask()
        opt.tell(x, -sphere(x))
        sigmas.append(opt.sigma)
    expected = [2.0 * 0.25 ** (min(g, 4) / 4) for g in range(1, 7)]
    np.testing.assert_allclose(sigmas, expected)


def test_missing_scores_drop_out_of_the_update():
    opt = make_optimizer("cmaes", 10, seed=1, population=10)
    for g in range(400):
        x = opt.ask()
        scores = -sphere(x)
        scores[(g % 10) :: 4] = np.nan  # a quarter to a third missing every generation
        opt.tell(x, scores)
    assert sphere(opt.mean) < 1e-6
    # fewer than two valid scores: nothing to rank, the mean stays
    x = opt.ask()
    mean = opt.mean.copy()
    opt.tell(x, np.r_[1.0, np.full(9, np.nan)])
    np.testing.assert_array_equal(opt.mean, mean)


def test_recombination_weights():
    w = recombination_weights(40)
    assert len(w) == 20 and w.sum() == pytest.approx(1.0)
    assert np.all(np.diff(w) < 0)
    assert w[0] / w[1] == pytest.approx(math.log(20.5) / (math.log(20.5) - math.log(2)))


# Coarse to fine ---------------------------------------------------------------------------


def banded(dim=400, seed=0, **settings):
    """Separable CMA-ES on codes whose coordinate i stands for frequency 1 + i / 10."""
    settings = {"population": 20, "step_size": "decay", "horizon": 50, **settings}
    return make_optimizer("cmaes", dim, seed, frequencies=1 + np.arange(dim) / 10, **settings)


def test_the_band_holds_high_frequencies_back_then_opens():
    opt = banded(band_start=2.0, band_growth=0.5)
    steps = opt.ask() - opt.mean
    low, high = steps[:, :10].std(), steps[:, -10:].std()  # frequencies 1-2, 40-41
    assert low > 100 * high  # (2 / 40) ** 2 = 1/400 of the low coordinates' step
    for _ in range(25):  # half the horizon: the band reaches the top frequency
        x = opt.ask()
        opt.tell(x, -np.sum(x**2, axis=1))
    steps = (opt.ask() - opt.mean) / np.sqrt(opt.variances)
    assert 0.8 < steps[:, -10:].std() / steps[:, :10].std() < 1.25


def test_the_band_finds_a_coarse_optimum_sooner():
    """The optimum sits on the 20 lowest of 400 coordinates; steps on the others only
    blur the ranking (as random fine texture blurs a unit's response to the coarse
    pattern it prefers), so a search that starts coarse gets further."""

    def f(x):
        return -np.sum((x[:, :20] - 2) ** 2, axis=1) - np.sum(x[:, 20:] ** 2, axis=1)

    def final(opt):
        for _ in range(50):
            x = opt.ask()
            opt.tell(x, f(x))
        return float(f(opt.mean[None])[0])

    for seed in range(3):
        coarse, plain = final(banded(seed=seed, band_start=3.0)), final(banded(seed=seed))
        assert coarse > plain / 2  # scores are negative: half the distance or less


def test_a_banded_optimizer_restores_with_its_frequencies():
    opt = banded(band_start=2.0)
    x = opt.ask()
    opt.tell(x, -np.sum(x**2, axis=1))
    restored = type(opt).from_state_dict(opt.state_dict())
    np.testing.assert_array_equal(restored.ask(), opt.ask())


def test_the_band_needs_code_frequencies():
    with pytest.raises(ConfigError, match="spatial frequency of every code"):
        make_optimizer("cmaes", 12, band_start=2.0)
    with pytest.raises(ConfigError, match="12 positive"):
        make_optimizer("cmaes", 12, band_start=2.0, frequencies=np.ones(11))
    assert make_optimizer("cmaes", 12).frequencies is None  # off: no frequencies needed
    with pytest.raises(ConfigError, match="band_growth"):
        make_optimizer("cmaes", 12, band_growth=0.0)
    with pytest.raises(ConfigError, match="band_rolloff"):  # (2 / 34) ** 500 underflows
        make_optimizer("cmaes", 12, band_rolloff=500.0)
    with pytest.raises(ConfigError, match="no code frequencies"):  # built around the plan
        SepCMAES(12, band_start=2.0).ask()


def test_a_saved_band_without_its_frequencies_is_refused():
    state = banded(band_start=2.0).state_dict()
    state["_frequencies"] = np.ones(399)
    with pytest.raises(OptimizerStateError, match="400 positive"):
        Optimizer.from_state_dict(state)
    del state["_frequencies"]
    with pytest.raises(OptimizerStateError, match="frequencies"):
        Optimizer.from_state_dict(state)


def test_negative_weights_move_the_mean_further_up_a_slope():
    """On a linear score in 1,000 dimensions the worst half's pull adds to the best half's
    push: the mean climbs about twice as far for the same random wander."""

    def climb(negative_weight):
        opt = make_optimizer("cmaes", 1000, 3, population=20, step_size="decay", horizon=30,
                             negative_weight=negative_weight)  # fmt: skip
        for _ in range(30):
            x = opt.ask()
            opt.tell(x, x[:, 0])
        return opt.mean[0], np.linalg.norm(opt.mean[1:])

    (up, wander), (up_negative, wander_negative) = climb(0.0), climb(1.0)
    assert up_negative > 1.6 * up
    assert wander_negative < 1.6 * wander  # the random part grows by about sqrt(2)
    with pytest.raises(ConfigError, match="negative_weight"):
        make_optimizer("cmaes", 10, negative_weight=1.5)


def test_a_state_saved_before_negative_weights_restores_without_them():
    """Settings saved by an older version lack negative_weight: the restored optimizer is
    the textbook one it was, even though the fourier preset now sets 1."""
    opt = make_optimizer("cmaes", 12, 4, population=10)
    x = opt.ask()
    opt.tell(x, -np.sum(x**2, axis=1))
    state = opt.state_dict()
    settings = json.loads(state["settings"])
    del settings["negative_weight"], settings["band_start"]
    state["settings"] = json.dumps(settings)
    restored = Optimizer.from_state_dict(state)
    assert restored.settings.negative_weight == 0 and restored.settings.band_start == 0
    np.testing.assert_array_equal(restored.ask(), opt.ask())
