"""Poisson spiking noise, natural reference images, and the simulated neurons built on them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from protocol.errors import ConfigError
from server.engine.natural_images import SKIMAGE_PHOTOS, load_photos, random_crops, reference_crops
from simulator.neuron import build_neurons
from simulator.noise import PoissonNoise, expected_max, parse_noise
from simulator.target import Recording, TargetSpec

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


# ---------------------------------------------------------------------------------------------
# reference images


def test_random_crops_shape_and_dtype():
    photos = [np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)]
    crops = random_crops(photos, 5, 32, seed=0)
    assert crops.shape == (5, 32, 32, 3)
    assert crops.dtype == np.uint8


def test_random_crops_are_seeded():
    photos = load_photos()[:3]
    a = random_crops(photos, 4, 24, seed=1)
    b = random_crops(photos, 4, 24, seed=1)
    c = random_crops(photos, 4, 24, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # crops within one call differ from each other
    assert len({im.tobytes() for im in a}) == 4


def test_random_crops_come_from_the_photos():
    red = np.zeros((50, 50, 3), dtype=np.uint8)
    red[..., 0] = 200
    crops = random_crops([red], 3, 16, seed=0)
    assert (crops[..., 0] == 200).all() and (crops[..., 1:] == 0).all()


def test_load_photos_offline_rgb_uint8(monkeypatch):
    import socket

    def no_network(*_args, **_kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    photos = load_photos()
    assert len(photos) == len(SKIMAGE_PHOTOS)
    for photo in photos:
        assert photo.dtype == np.uint8
        assert photo.ndim == 3 and photo.shape[2] == 3
        assert photo.std() > 0
    grey = photos[SKIMAGE_PHOTOS.index("camera")]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_load_photos_from_folder(tmp_path):
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(grey, mode="L").save(tmp_path / "b.PNG")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    photos = load_photos(tmp_path)
    assert len(photos) == 3
    for photo in photos:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    np.testing.assert_array_equal(photos[0], rgb)
    np.testing.assert_array_equal(photos[1], np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(photos[2], rgba[..., :3])
    assert len(load_photos(str(tmp_path))) == 3


def test_load_photos_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="no images"):
        load_photos(tmp_path)
    (tmp_path / "readme.txt").write_text("still no images")
    with pytest.raises(ConfigError):
        load_photos(tmp_path)
    with pytest.raises(ConfigError):
        load_photos(tmp_path / "missing")


def test_reference_images_from_folder(tmp_path):
    Image.fromarray(np.full((40, 40, 3), 9, dtype=np.uint8)).save(tmp_path / "x.png")
    refs = reference_crops(16, 3, folder=str(tmp_path), seed=0)
    assert refs.shape == (3, 16, 16, 3) and refs.dtype == np.uint8
    assert (refs == 9).all()


# ---------------------------------------------------------------------------------------------
# build_neurons

TARGETS = ["efficientnet-lite0:_fc:1", "efficientnet-lite0:_blocks.3:0:2:2"]


def test_targets_on_two_networks_rejected():
    with pytest.raises(ConfigError, match="one network"):
        build_neurons(["efficientnet-lite0:_fc:1", "torchvision:resnet18:fc:1"], None, None)


@pytest.fixture
def shared_lite0(lite0, monkeypatch):
    """build_neurons with the session's network instead of loading a fresh copy."""
    import simulator.neuron

    def load(name, weights=None):
        assert (name, weights) == ("efficientnet-lite0", None)
        return lite0

    monkeypatch.setattr(simulator.neuron, "load_network", load)
    return lite0


def test_spikes_need_references(shared_lite0):
    with pytest.raises(ConfigError, match="reference"):
        build_neurons(TARGETS, 20.0, None, input_size=64, device="cpu")
    with pytest.raises(ConfigError, match="reference"):
        build_neurons(
            TARGETS, 20.0, np.zeros((0, 64, 64, 3), np.uint8), input_size=64, device="cpu"
        )


def test_without_noise_observed_is_true(shared_lite0):
    lite0 = shared_lite0
    neurons, ref_acts = build_neurons(TARGETS, None, None, input_size=64, device="cpu")
    assert ref_acts is None and neurons.noise is None
    images = random_crops(load_photos()[:2], 2, 64, seed=0)
    observed, true = neurons.respond(images)
    assert true.shape == (2, 2)
    np.testing.assert_array_equal(observed, true)
    # the responses are those of the named units
    direct = Recording(
        lite0, [TargetSpec.parse(t).unit for t in TARGETS], device="cpu", input_size=64
    ).activations(images)
    np.testing.assert_allclose(true, direct, rtol=1e-5, atol=1e-5)


def test_with_noise_calibrated_on_references(shared_lite0):
    refs = reference_crops(64, 3, seed=0)
    targets = ["efficientnet-lite0:_blocks.3:0:2:2", "efficientnet-lite0:_conv_head:2"]
    neurons, ref_acts = build_neurons(targets, 10.0, refs, repeats=2, input_size=64, device="cpu")
    assert ref_acts.shape == (3, 2)
    assert (ref_acts.max(axis=0) > 0).all()  # precondition for calibration
    good = np.array([expected_max(ref_acts[:, i], 2500) for i in range(2)])
    np.testing.assert_allclose(neurons.noise.scale * good, 10.0, rtol=1e-12)
    assert neurons.noise.repeats == 2
    observed, true = neurons.respond(refs[:2])
    np.testing.assert_allclose(true, ref_acts[:2], rtol=1e-5, atol=1e-5)
    assert not np.array_equal(observed, true)
    assert (observed >= 0).all()
