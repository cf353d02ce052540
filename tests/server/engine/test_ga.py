"""The genetic algorithm follows XDream's reference rules."""

from __future__ import annotations

import numpy as np
import pytest

from protocol.errors import ConfigError
from server.engine.optimizers import make_optimizer
from server.engine.optimizers.ga import GA_PRESETS, fitness


def ga(dim=8, **settings):
    return make_optimizer("ga", dim, seed=0, **settings)


def test_first_generation_is_standard_normal():
    codes = make_optimizer("ga", 500, seed=1, population=40).ask()
    assert abs(codes.mean()) < 0.02 and abs(codes.std() - 1) < 0.02


def test_elites_pass_unchanged():
    opt = ga(population=10, n_conserve=3, mutation_rate=1.0)
    codes = opt.ask()
    scores = np.arange(10.0)
    opt.tell(codes, scores)
    nxt = opt.ask()
    np.testing.assert_array_equal(nxt[:3], codes[[9, 8, 7]])
    # children are mutated at rate 1, so none equals a parent
    assert not any((nxt[3:] == c).all(axis=1).any() for c in codes)


def test_missing_scores_carry_the_code_over():
    opt = ga(population=10)
    codes = opt.ask()
    scores = np.arange(10.0)
    scores[[2, 5]] = np.nan
    opt.tell(codes, scores)
    nxt = opt.ask()
    assert len(nxt) == 10
    np.testing.assert_array_equal(nxt[-2:], codes[[2, 5]])


def test_fitness_is_softmax_of_selectivity_times_z_with_clipping():
    # by hand: std = 39.41 (of the unclipped scores), kT = std / 2 = 19.71; the 95th
    # percentile clips 100 to 80.6; weights exp((s - 80.6) / 19.71), normalised
    p = fitness(np.array([0.0, 1.0, 2.0, 3.0, 100.0]), selectivity=2.0)
    np.testing.assert_allclose(p, [0.015609, 0.016421, 0.017276, 0.018175, 0.932518], atol=1e-6)
    # equal scores: kT floors at 1e-8 and selection is uniform
    np.testing.assert_allclose(fitness(np.ones(4), 2.0), 0.25)


def test_parents_are_drawn_in_proportion_to_fitness():
    # one code scores far above the rest: with selectivity high, children copy it
    opt = ga(dim=50, population=20, mutation_rate=0.0, selectivity=50.0)
    codes = opt.ask()
    scores = np.zeros(20)
    scores[4] = 10.0
    opt.tell(codes, scores)
    children = opt.ask()
    assert (children == codes[4]).all(axis=1).mean() > 0.9


@pytest.mark.parametrize("heritability", [0.5, 0.75, 0.25])
def test_crossover_takes_parent_one_with_probability_heritability(heritability):
    # 20 all-zero and 20 all-one codes, equal scores, no mutation: a child of one of each
    # holds a fraction h (or 1 - h) of ones; a child of two alike codes holds 0 or 1.
    dim = 2000
    opt = make_optimizer(
        "ga", dim, seed=3, population=40, mutation_rate=0.0, heritability=heritability
    )
    codes = np.concatenate([np.zeros((20, dim)), np.ones((20, dim))])
    opt.tell(codes, np.ones(40))
    fractions = opt.ask().mean(axis=1)
    h = max(heritability, 1 - heritability)
    mixed = np.minimum(np.abs(fractions - h), np.abs(fractions - (1 - h))) < 0.04
    pure = np.minimum(fractions, 1 - fractions) == 0
    assert (mixed | pure).all()
    assert 10 <= mixed.sum() <= 30  # about half the children have unlike parents


def test_mutation_rate_and_size_statistically():
    rate, size, dim = 0.3, 0.7, 20000
    opt = make_optimizer("ga", dim, seed=5, population=2, mutation_rate=rate, mutation_size=size)
    codes = np.zeros((2, dim))
    opt.tell(codes, np.array([0.0, 0.0]))
    delta = opt.ask()
    mutated = delta != 0
    assert mutated.mean() == pytest.approx(rate, abs=0.01)
    assert delta[mutated].std() == pytest.approx(size, rel=0.03)
    assert abs(delta[mutated].mean()) < 0.02


def test_codes_are_never_clipped():
    opt = ga(population=4, mutation_size=50.0, mutation_rate=1.0)
    codes = opt.ask()
    opt.tell(codes, np.arange(4.0))
    assert np.abs(opt.ask()).max() > 20


def test_initial_codes_seed_the_population_and_the_shortfall_is_mated():
    given = np.full((3, 8), 2.0)
    opt = make_optimizer("ga", 8, seed=0, population=6, mutation_rate=0.0)
    opt.start_from(given)
    codes = opt.ask()
    np.testing.assert_array_equal(codes[:3], given)
    np.testing.assert_array_equal(codes[3:], 2.0)  # children of identical parents, unmutated


def test_presets_are_the_papers_table():
    table = {  # generator: (population, rate, size, selectivity, heritability)
        "norm1": (15, 1.0, 1.5, 2, 0.5),
        "norm2": (10, 0.5, 0.7, 4, 0.5),
        "conv3": (12, 0.65, 0.75, 2.25, 0.5),
        "conv4": (10, 0.9, 0.75, 2.5, 0.5),
        "pool5": (10, 0.6, 1.0, 2.5, 0.75),
        "fc6": (20, 0.5, 0.5, 2, 0.5),
        "fc7": (45, 0.6, 0.3, 1.25, 0.5),
        "fc8": (20, 0.2, 0.6, 2, 0.5),
    }
    assert set(GA_PRESETS) == set(table)
    for generator, row in table.items():
        s = make_optimizer("ga", 4, generator=generator).settings
        assert (
            s.population,
            s.mutation_rate,
            s.mutation_size,
            s.selectivity,
            s.heritability,
            s.n_conserve,
        ) == (*row, 0)


def test_invalid_settings():
    for bad in (
        {"mutation_rate": 1.5},
        {"mutation_size": -1},
        {"selectivity": 0},
        {"heritability": 2},
        {"n_conserve": 20},
    ):
        with pytest.raises(ConfigError):
            ga(**bad)
