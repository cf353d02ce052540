"""The weight-free generators (pixel, fourier), the generator registry and the default choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protocol.errors import ConfigError
from server.engine.generators import (
    OFFLINE_DEFAULT,
    available_generators,
    default_generator,
    make_generator,
)
from server.engine.generators.deepsim import VARIANTS, expected_shapes

DEEPSIM = ["fc6", "fc7", "fc8", "pool5", "conv3", "conv4", "norm1", "norm2"]
WEIGHT_FREE = ["pixel", "fourier"]
# code dimension with default settings: pixel 3 x 32 x 32; fourier 3 x 48 x (48 // 2 + 1) x 2
CODE_DIM = {"pixel": 3 * 32 * 32, "fourier": 3 * 48 * 25 * 2}


def codes_for(gen, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, gen.code_dim))


@pytest.fixture(scope="module")
def gens():
    """One default generator of each weight-free kind (batch size 64)."""
    return {name: make_generator(name, device="cpu") for name in WEIGHT_FREE}


# --------------------------------------------------------------------------------------------
# Common behaviour
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_default_output_shape_and_dtype(gens, name):
    gen = gens[name]
    assert gen.code_dim == CODE_DIM[name]
    assert gen.image_size == 224
    images = gen.generate(codes_for(gen, 3))
    assert images.shape == (3, 224, 224, 3)
    assert images.dtype == np.uint8


@pytest.mark.parametrize("name", WEIGHT_FREE)
@pytest.mark.parametrize("size", [16, 64, 100])
def test_image_size_option(name, size):
    gen = make_generator(name, image_size=size, device="cpu")
    assert gen.image_size == size
    images = gen.generate(codes_for(gen, 2))
    assert images.shape == (2, size, size, 3) and images.dtype == np.uint8


@pytest.mark.parametrize(("name", "resolution"), [("pixel", 8), ("fourier", 16)])
def test_resolution_option_sets_code_size(name, resolution):
    gen = make_generator(name, resolution=resolution, image_size=32, device="cpu")
    expected = 3 * resolution * resolution if name == "pixel" else 3 * resolution * 9 * 2
    assert gen.code_dim == expected
    assert gen.generate(codes_for(gen, 2)).shape == (2, 32, 32, 3)


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_deterministic(gens, name):
    gen = gens[name]
    codes = codes_for(gen, 4, seed=1)
    first = gen.generate(codes)
    np.testing.assert_array_equal(first, gen.generate(codes))
    # a fresh instance (fourier recalibrates its gain) gives the same images too
    np.testing.assert_array_equal(first, make_generator(name, device="cpu").generate(codes))
    # and different codes give different images
    assert not np.array_equal(first[0], first[1])


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_batching_does_not_change_results(gens, name):
    big = gens[name]
    assert big.batch_size == 64
    small = make_generator(name, batch_size=3, device="cpu")
    codes = codes_for(big, 8, seed=2)  # 3 + 3 + 2: includes a partial last batch
    np.testing.assert_array_equal(small.generate(codes), big.generate(codes))


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_each_image_depends_only_on_its_own_code(gens, name):
    gen = gens[name]
    codes = codes_for(gen, 5, seed=3)
    together = gen.generate(codes)
    for i in (0, 4):
        np.testing.assert_array_equal(together[i], gen.generate(codes[i : i + 1])[0])


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_empty_batch(gens, name):
    images = gens[name].generate(np.zeros((0, CODE_DIM[name])))
    assert images.shape == (0, 224, 224, 3) and images.dtype == np.uint8


@pytest.mark.parametrize("name", WEIGHT_FREE)
@pytest.mark.parametrize("kind", ["one_dim", "too_long", "too_short", "three_dim"])
def test_wrong_code_shape_is_a_config_error(gens, name, kind):
    dim = CODE_DIM[name]
    shape = {
        "one_dim": (dim,),
        "too_long": (2, dim + 1),
        "too_short": (2, dim - 1),
        "three_dim": (2, dim, 1),
    }[kind]
    with pytest.raises(ConfigError, match=str(dim)):
        gens[name].generate(np.zeros(shape))


@pytest.mark.parametrize("name", WEIGHT_FREE)
@pytest.mark.parametrize("size", [0, 8, 15, 1025, -1])
def test_invalid_image_size_is_a_config_error(name, size):
    with pytest.raises(ConfigError, match="image size"):
        make_generator(name, image_size=size, device="cpu")


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_invalid_batch_size_is_a_config_error(name):
    with pytest.raises(ConfigError, match="batch size"):
        make_generator(name, batch_size=0, device="cpu")


@pytest.mark.parametrize(
    ("name", "resolution"),
    [("pixel", 3), ("pixel", 0), ("pixel", 513), ("fourier", 7), ("fourier", 257)],
)
def test_invalid_resolution_is_a_config_error(name, resolution):
    with pytest.raises(ConfigError, match="resolution"):
        make_generator(name, resolution=resolution, device="cpu")


@pytest.mark.parametrize("decay", [-0.5, 3.5])
def test_invalid_fourier_decay_is_a_config_error(decay):
    with pytest.raises(ConfigError, match="decay"):
        make_generator("fourier", decay=decay, device="cpu")


def test_unknown_generator_lists_the_known_names():
    with pytest.raises(ConfigError) as info:
        make_generator("fc9", device="cpu")
    message = str(info.value)
    assert "fc9" in message
    for name in [*DEEPSIM, *WEIGHT_FREE]:
        assert name in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_render_resized_is_differentiable(gens, name):
    gen = gens[name]
    codes = torch.as_tensor(codes_for(gen, 2, seed=4), dtype=torch.float32).requires_grad_(True)
    images = gen.render_resized(codes)
    assert images.shape == (2, 3, 224, 224)
    images.mean().backward()
    grad = codes.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad.abs().max() > 0
    assert (grad != 0).float().mean() > 0.5  # not just a few stray elements
    # the gradient points uphill: a small step along it raises the mean
    with torch.no_grad():
        step = codes + 0.5 * grad / grad.norm()
        assert gen.render_resized(step).mean() > images.mean()


# --------------------------------------------------------------------------------------------
# pixel
# --------------------------------------------------------------------------------------------


def test_pixel_zero_code_is_mid_grey(gens):
    images = gens["pixel"].generate(np.zeros((2, CODE_DIM["pixel"])))
    assert np.abs(images.astype(int) - 128).max() <= 1


@pytest.mark.parametrize(("value", "level"), [(50.0, 255), (-50.0, 0)])
def test_pixel_extreme_codes_saturate(gens, value, level):
    images = gens["pixel"].generate(np.full((1, CODE_DIM["pixel"]), value))
    assert (images == level).all()


def test_pixel_code_is_the_image():
    """At native size, code element (c, y, x) is pixel (y, x) of colour channel c."""
    gen = make_generator("pixel", resolution=16, image_size=16, device="cpu")
    codes = codes_for(gen, 2, seed=5)
    images = gen.generate(codes)
    want = 255.0 / (1.0 + np.exp(-codes.reshape(2, 3, 16, 16)))
    np.testing.assert_allclose(images, want.transpose(0, 2, 3, 1), atol=0.5 + 1e-3)


# --------------------------------------------------------------------------------------------
# fourier
# --------------------------------------------------------------------------------------------


def test_fourier_zero_code_is_uniform_mid_grey(gens):
    images = gens["fourier"].generate(np.zeros((2, CODE_DIM["fourier"])))
    assert np.abs(images.astype(int) - 128).max() <= 1


def test_fourier_normal_codes_give_varied_images(gens):
    images = gens["fourier"].generate(codes_for(gens["fourier"], 6, seed=6)).astype(float)
    assert images.std(axis=(1, 2, 3)).min() > 10
    assert np.abs(images[0] - images[1]).mean() > 10


def _low_high_power_ratio(images: np.ndarray) -> float:
    """Mean power in the lowest spatial frequencies over mean power in the highest."""
    x = images.astype(float).mean(axis=-1)
    x -= x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0)
    size = x.shape[1]
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    low = power[(f > 0) & (f <= 3 / size)].mean()
    high = power[f >= 0.35].mean()
    return low / high


def test_fourier_spectrum_falls_with_frequency():
    """Natural-image-like 1/f prior, measured at native resolution (no resize smoothing)."""
    n = 16
    gen = make_generator("fourier", image_size=48, device="cpu")
    ratio = _low_high_power_ratio(gen.generate(codes_for(gen, n, seed=7)))
    assert ratio > 10
    # control: with no 1/f decay the same measure sees a flat spectrum
    flat = make_generator("fourier", image_size=48, decay=0.0, device="cpu")
    assert _low_high_power_ratio(flat.generate(codes_for(flat, n, seed=7))) < 3


def test_fourier_code_frequencies_are_what_the_image_shows():
    """A code with one coordinate set draws a grating at that coordinate's frequency."""
    gen = make_generator("fourier", resolution=32, device="cpu")
    cycles = gen.code_frequencies()
    assert cycles.shape == (gen.code_dim,) and cycles.min() == 1.0
    assert cycles.max() == pytest.approx(16 * np.sqrt(2))
    for index in (np.flatnonzero(cycles == 3.0)[0], np.flatnonzero(cycles == 5.0)[-1]):
        code = torch.zeros(1, gen.code_dim)
        code[0, index] = 20.0
        with torch.no_grad():
            grey = gen.render(code)[0].mean(0).numpy()
        power = np.abs(np.fft.fft2(grey - grey.mean()))
        ky, kx = np.unravel_index(power.argmax(), power.shape)
        shown = np.hypot(min(ky, 32 - ky), min(kx, 32 - kx))
        assert shown == pytest.approx(cycles[index])
    assert make_generator("pixel", device="cpu").code_frequencies() is None


def test_fourier_gain_calibrated_to_unit_logit_std():
    """N(0, 1) codes give pre-sigmoid pixels of about unit std, for any resolution/decay."""
    for kwargs in ({}, {"resolution": 16, "decay": 2.0}):
        gen = make_generator("fourier", device="cpu", **kwargs)
        codes = torch.randn(64, gen.code_dim, generator=torch.Generator().manual_seed(8))
        with torch.no_grad():
            images = gen.render(codes) / 255.0
        logits = torch.logit(images.clamp(1e-6, 1 - 1e-6))
        assert 0.8 < float(logits.std()) < 1.2, kwargs


# --------------------------------------------------------------------------------------------
# Availability and the default generator
# --------------------------------------------------------------------------------------------


def test_offline_default_is_fourier():
    assert OFFLINE_DEFAULT == "fourier"


def test_availability_follows_the_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDREAM_WEIGHTS_DIR", str(tmp_path))
    available = available_generators()
    assert set(available) == {*DEEPSIM, *WEIGHT_FREE}
    assert set(VARIANTS) == set(DEEPSIM)
    assert not any(available[v] for v in DEEPSIM)
    assert available["pixel"] and available["fourier"]
    assert default_generator() == "fourier"

    # a valid synthetic fc6 state dict makes fc6 available, and the default
    torch.save({k: torch.zeros(s) for k, s in expected_shapes("fc6").items()}, tmp_path / "fc6.pt")
    available = available_generators()
    assert available["fc6"]
    assert not any(available[v] for v in DEEPSIM if v != "fc6")
    assert available["pixel"] and available["fourier"]
    assert default_generator() == "fc6"
    gen = make_generator(default_generator(), device="cpu")
    assert gen.weights_file == tmp_path / "fc6.pt"

    (tmp_path / "fc6.pt").unlink()
    assert default_generator() == "fourier"


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_half_precision_changes_images_by_about_a_grey_level(precision):
    """The bound docs/BENCHMARKS.md reports for the fourier generator on the CPU."""
    exact = make_generator("fourier", device="cpu")
    half = make_generator("fourier", device="cpu", precision=precision)
    codes = np.random.default_rng(3).normal(0.0, 1.0, (8, exact.code_dim))
    diff = np.abs(exact.generate(codes).astype(int) - half.generate(codes).astype(int))
    assert diff.mean() <= 0.5 and diff.max() <= 3, (diff.mean(), diff.max())
    with pytest.raises(ConfigError, match="precision must be one of"):
        make_generator("fourier", device="cpu", precision="float8")
