"""Poisson spiking noise: calibration, repeats, seeds, and the parser of ``--noise``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from protocol.errors import ConfigError
from simulator.noise import PoissonNoise, expected_max, parse_noise

# ---------------------------------------------------------------------------------------------
# expected_max


@pytest.mark.parametrize(("n", "expected"), [(1, 1.5), (2, 1.75), (3, 1.875)])
def test_expected_max_two_values(n, expected):
    assert expected_max(np.array([1.0, 2.0]), n) == pytest.approx(expected, abs=1e-12)


def test_expected_max_matches_enumeration():
    values = np.array([3.0, -1.0, 2.0, 2.0, 7.5])  # unsorted, with a tie and a negative
    for n in (1, 2, 3):
        draws = itertools.product(values, repeat=n)
        brute = np.mean([max(d) for d in draws])
        assert expected_max(values, n) == pytest.approx(brute, abs=1e-12)


def test_expected_max_n1_is_the_mean_and_large_n_approaches_the_max():
    rng = np.random.default_rng(0)
    values = rng.normal(size=200)
    assert expected_max(values, 1) == pytest.approx(values.mean(), abs=1e-12)
    big = expected_max(values, 100_000)
    assert big <= values.max()
    assert big == pytest.approx(values.max(), abs=1e-9)
    # monotone in n
    maxima = [expected_max(values, n) for n in (1, 5, 50, 500)]
    assert maxima == sorted(maxima) and maxima[0] < maxima[-1]


def test_expected_max_of_constant():
    assert expected_max(np.full(10, 4.0), 2500) == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------
# parse_noise


def test_parse_noise_none():
    assert parse_noise("none") is None


@pytest.mark.parametrize(("text", "spikes"), [("poisson:20", 20.0), ("poisson:2.5", 2.5)])
def test_parse_noise_poisson(text, spikes):
    value = parse_noise(text)
    assert value == spikes
    assert isinstance(value, float)


@pytest.mark.parametrize(
    "text",
    ["poisson", "poisson:", "poisson:-1", "poisson:0", "gauss:3", "poisson:abc", "", "None"],
)
def test_parse_noise_rejects_bad_forms(text):
    with pytest.raises(ConfigError, match="poisson:K"):
        parse_noise(text)


# ---------------------------------------------------------------------------------------------
# PoissonNoise


def test_mean_of_noisy_responses_is_the_rectified_activation():
    n = 20_000
    acts = np.array([0.5, 3.0, 10.0, -2.0])
    scale = np.array([4.0, 2.0, 0.5, 1.0])
    noise = PoissonNoise(scale, seed=1)
    out = noise(np.tile(acts, (n, 1)))
    assert out.shape == (n, 4)
    rect = np.maximum(acts, 0.0)
    # observed = Poisson(a * s) / s: mean a, variance a / s
    sem = np.sqrt(rect / scale / n)
    np.testing.assert_array_less(np.abs(out.mean(axis=0) - rect)[:3], 5 * sem[:3])
    np.testing.assert_allclose(out.var(axis=0)[:3], (rect / scale)[:3], rtol=0.1)
    # observations are spike counts divided by the scale
    counts = out * scale
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


def test_negative_and_zero_activations_give_zero():
    noise = PoissonNoise(np.array([3.0, 3.0]), seed=2)
    out = noise(np.tile([-5.0, 0.0], (1000, 1)))
    assert (out == 0).all()


def test_repeats_reduce_variance_fourfold():
    n = 20_000
    acts = np.full((n, 1), 2.0)
    one = PoissonNoise(np.array([1.5]), repeats=1, seed=3)(acts)
    four = PoissonNoise(np.array([1.5]), repeats=4, seed=3)(acts)
    ratio = one.var() / four.var()
    assert 3.3 < ratio < 4.8
    assert four.mean() == pytest.approx(2.0, abs=5 * np.sqrt(2.0 / 1.5 / 4 / n))
    # averaged counts come in steps of 1/repeats
    steps = four * 1.5 * 4
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)


def test_calibrated_scale_gives_k_spikes_to_the_expected_best_reference():
    rng = np.random.default_rng(4)
    refs = np.column_stack(
        [rng.gamma(2.0, 1.0, 300), rng.normal(0.5, 1.0, 300), rng.uniform(0, 10, 300)]
    )
    for spikes, n_best in [(20.0, 2500), (5.0, 10)]:
        noise = PoissonNoise.calibrated(refs, spikes, n_best=n_best)
        assert noise.scale.shape == (3,)
        good = np.array([expected_max(refs[:, i], n_best) for i in range(3)])
        np.testing.assert_allclose(noise.scale * good, spikes, rtol=1e-12)


def test_calibrated_passes_repeats_and_seed():
    refs = np.array([[1.0], [2.0], [3.0]])
    noise = PoissonNoise.calibrated(refs, 10.0, n_best=5, repeats=3, seed=7)
    assert noise.repeats == 3
    again = PoissonNoise.calibrated(refs, 10.0, n_best=5, repeats=3, seed=7)
    acts = np.tile([2.0], (50, 1))
    np.testing.assert_array_equal(noise(acts), again(acts))


def test_calibration_needs_a_unit_that_responds():
    refs = np.column_stack([np.linspace(0.1, 1.0, 20), np.linspace(-3.0, 0.0, 20)])
    with pytest.raises(ConfigError, match=r"\[1\]"):
        PoissonNoise.calibrated(refs, 20.0)


def test_bad_scale_or_repeats_rejected():
    with pytest.raises(ConfigError):
        PoissonNoise(np.array([1.0, 0.0]))
    with pytest.raises(ConfigError):
        PoissonNoise(np.array([np.inf]))
    with pytest.raises(ConfigError):
        PoissonNoise(np.array([1.0]), repeats=0)


def test_seeded_noise_is_reproducible():
    acts = np.random.default_rng(5).uniform(0, 5, (200, 3))
    scale = np.array([1.0, 2.0, 3.0])
    a = PoissonNoise(scale, seed=11)(acts)
    b = PoissonNoise(scale, seed=11)(acts)
    c = PoissonNoise(scale, seed=12)(acts)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # successive calls of one generator draw fresh noise
    noise = PoissonNoise(scale, seed=11)
    assert not np.array_equal(noise(acts), noise(acts))
