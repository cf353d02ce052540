"""DeePSiM generators load XDream's converted state dicts and reproduce the published layout.

The expected key -> shape tables and the reference forward pass below are written from the
architecture description (section 5 of the project's facts file), not from the code under
test, so a drift in either the layer names, the shapes, the strides/paddings or the
post-processing makes these tests fail. The weights themselves are not redistributable, so
every test builds a synthetic state dict with the exact keys and shapes.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from protocol.errors import ConfigError, WeightsError
from server.engine.generators import make_generator
from server.engine.generators.deepsim import build_network, expected_shapes
from tests.server.engine.deepsim_layout import (
    BIASED_LAYERS,
    INFO,
    SHAPES,
    random_state,
    reference_render,
    zero_state,
)

VARIANT_NAMES = ["fc6", "fc7", "fc8", "pool5", "conv3", "conv4", "norm1", "norm2"]


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message


# --------------------------------------------------------------------------------------------
# Fixtures: one synthetic file per variant for the whole module (fc6/fc7 are 224 MB each).
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("deepsim_weights")
    yield path
    shutil.rmtree(path, ignore_errors=True)  # do not leave ~1 GB behind in pytest's tmp dirs


@pytest.fixture(scope="module")
def saved(weights_dir):
    """``saved(variant) -> (path, state)``: random weights saved once per variant."""
    states: dict[int, dict[str, torch.Tensor]] = {}  # fc6 and fc7 share one (224 MB) state
    cache: dict[str, tuple] = {}

    def get(variant: str):
        if variant not in cache:
            table = id(SHAPES[variant])
            if table not in states:
                states[table] = random_state(variant)
            path = weights_dir / f"{variant}.pt"
            torch.save(states[table], path)
            cache[variant] = (path, states[table])
        return cache[variant]

    yield get
    cache.clear()
    states.clear()


@pytest.fixture(scope="module")
def loaded(saved):
    """``loaded(variant) -> (generator, path, state)``, built once per variant."""
    cache: dict[str, tuple] = {}

    def get(variant: str):
        if variant not in cache:
            path, state = saved(variant)
            cache[variant] = (make_generator(variant, weights=path, device="cpu"), path, state)
        return cache[variant]

    yield get
    cache.clear()


@pytest.fixture(scope="module")
def zeros_file(tmp_path_factory):
    """``zeros_file(variant) -> path`` of an all-zero state dict (deleted after the module)."""
    root = tmp_path_factory.mktemp("deepsim_zeros")

    def make(variant: str):
        path = root / f"{variant}.pt"
        torch.save(zero_state(variant), path)
        return path

    yield make
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def networks():
    """``networks(variant)``: the untrained network, built once per variant."""
    cache: dict[str, torch.nn.Module] = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = build_network(variant)
        return cache[variant]

    yield get
    cache.clear()


@pytest.fixture
def norm1_zeros(tmp_path):
    """A writable copy of a valid (all-zero) norm1 state dict, for corrupting."""
    return zero_state("norm1"), tmp_path / "norm1.pt"


# --------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_expected_shapes_match_the_published_layout(variant):
    assert expected_shapes(variant) == SHAPES[variant]


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_biases_only_on_fc5_to_fc7_and_conv6_to_conv8(networks, variant):
    net = networks(variant)
    keys = net.state_dict()
    layers = {k.rsplit(".", 1)[0] for k in keys}
    biased = {k.rsplit(".", 1)[0] for k in keys if k.endswith(".bias")}
    assert biased == layers & BIASED_LAYERS
    assert biased  # every variant has at least its first three layers biased
    # and the modules really are built without a bias elsewhere
    for name, module in net.named_children():
        if hasattr(module, "weight"):
            assert (module.bias is not None) == (name in BIASED_LAYERS), name


@pytest.mark.parametrize(("variant", "millions"), [("fc6", 56.1), ("fc7", 56.1), ("fc8", 43.4)])
def test_parameter_counts(networks, variant, millions):
    table_count = sum(math.prod(s) for s in SHAPES[variant].values())
    net_count = sum(p.numel() for p in networks(variant).parameters())
    assert net_count == table_count
    assert abs(net_count / 1e6 - millions) < 0.1


# --------------------------------------------------------------------------------------------
# Loading and generating
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_loads_weights_and_generates(loaded, variant):
    gen, path, state = loaded(variant)
    code_shape, native, _ = INFO[variant]
    assert gen.code_dim == math.prod(code_shape)
    assert gen.native_size == gen.image_size == native
    assert gen.weights_file == path

    # the loaded weights are exactly the saved tensors
    weights = gen.net.state_dict()
    assert set(weights) == set(state)
    for key, tensor in state.items():
        assert torch.equal(weights[key].cpu(), tensor), key

    codes = torch.randn(2, gen.code_dim, generator=torch.Generator().manual_seed(2))
    images = gen.generate(codes.numpy())
    assert images.shape == (2, native, native, 3)
    assert images.dtype == np.uint8

    # Strides, paddings, activations, tanh, mean and BGR->RGB follow the published design:
    # compare with a forward pass written from the facts with torch.nn.functional.
    with torch.no_grad():
        want = reference_render(state, variant, codes).clamp(0, 255).permute(0, 2, 3, 1)
    diff = np.abs(images.astype(float) - want.numpy())
    # Only float noise at a rounding boundary (the sum order differs with thread count).
    assert diff.max() <= 0.5 + 0.02
    # the synthetic weights make varied images, so this comparison has teeth
    mean_rgb = torch.tensor([123.0, 117.0, 104.0])
    assert (want - mean_rgb).std() > 15
    assert np.abs(images[0].astype(int) - images[1]).max() > 10


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_zero_weights_give_the_mean_colour(zeros_file, variant):
    gen = make_generator(variant, weights=zeros_file(variant), device="cpu")
    images = gen.generate(np.random.default_rng(3).standard_normal((1, gen.code_dim)))
    _, native, _ = INFO[variant]
    assert images.shape == (1, native, native, 3)
    # BGR mean (104, 117, 123) flipped to RGB
    assert (images == np.array([123, 117, 104], dtype=np.uint8)).all()


def test_image_size_option_resizes(saved):
    path, _ = saved("norm1")
    gen = make_generator("norm1", weights=path, device="cpu", image_size=100)
    assert gen.image_size == 100
    images = gen.generate(np.zeros((3, gen.code_dim)))
    assert images.shape == (3, 100, 100, 3) and images.dtype == np.uint8


@pytest.mark.parametrize("shape", [(2, 96 * 27 * 27 + 1), (96 * 27 * 27,), (2, 96, 27, 27)])
def test_wrong_code_shape_is_a_config_error(loaded, shape):
    gen, _, _ = loaded("norm1")
    with pytest.raises(ConfigError, match="norm1"):
        gen.generate(np.zeros(shape))


def test_batching_does_not_change_images(loaded):
    gen, path, _ = loaded("norm1")
    assert gen.batch_size == 64
    codes = np.random.default_rng(4).standard_normal((3, gen.code_dim))
    small = make_generator("norm1", weights=path, device="cpu", batch_size=2).generate(codes)
    big = gen.generate(codes)
    # Convolutions may pick batch-size-dependent algorithms, so a pixel sitting on a rounding
    # boundary can move by one grey level; anything more means batches got mixed up.
    diff = np.abs(small.astype(int) - big)
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.999


# --------------------------------------------------------------------------------------------
# Where the weights come from
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["norm1", "pool5"])
def test_weights_found_via_env_var(saved, weights_dir, monkeypatch, variant):
    _, state = saved(variant)
    monkeypatch.setenv("XDREAM_WEIGHTS_DIR", str(weights_dir))
    gen = make_generator(variant, device="cpu")
    assert gen.weights_file == weights_dir / f"{variant}.pt"
    loaded = gen.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_env_var_dir_expands_user(saved, tmp_path, monkeypatch):
    path, _ = saved("norm1")
    (tmp_path / "w").mkdir()
    shutil.copy(path, tmp_path / "w" / "norm1.pt")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDREAM_WEIGHTS_DIR", "~/w")
    gen = make_generator("norm1", device="cpu")
    assert gen.weights_file == tmp_path / "w" / "norm1.pt"


def test_explicit_path_wins_over_env_var(saved, tmp_path, monkeypatch):
    path, _ = saved("norm1")
    monkeypatch.setenv("XDREAM_WEIGHTS_DIR", str(tmp_path))  # empty: would fail
    gen = make_generator("norm1", weights=path, device="cpu")
    assert gen.weights_file == path


# --------------------------------------------------------------------------------------------
# Errors: always WeightsError (a FileNotFoundError), one line, naming the file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_missing_file_error(tmp_path, variant):
    path = tmp_path / "nowhere" / f"{variant}.pt"
    with pytest.raises(WeightsError) as info:
        make_generator(variant, weights=path, device="cpu")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert one_line(message)
    assert str(path) in message
    assert f"DeePSiM-{variant}" in message
    assert "docs/weights.md" in message


def test_missing_file_in_weights_dir_names_the_default_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDREAM_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:  # callers knowing only builtins catch it
        make_generator("norm2", device="cpu")
    assert isinstance(info.value, WeightsError)
    assert str(tmp_path / "norm2.pt") in str(info.value)
    assert one_line(str(info.value))


def test_directory_instead_of_file_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="norm1"):
        make_generator("norm1", weights=tmp_path, device="cpu")


def _mutate(case: str, state: dict[str, torch.Tensor]) -> str:
    """Break ``state`` in one way and return the key that the error must name."""
    if case == "missing":
        del state["conv8.bias"]
        return "conv8.bias"
    if case == "extra":
        state["conv1_1.bias"] = torch.zeros(3)  # a bias the converted files never have
        return "conv1_1.bias"
    if case == "wrong_shape":
        state["conv6.weight"] = torch.zeros(96, 128, 3, 3)  # in/out swapped
        return "conv6.weight"
    if case == "renamed":
        state["tconv4_0.w"] = state.pop("tconv4_0.weight")
        return "tconv4_0.w"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "extra", "wrong_shape", "renamed"])
def test_mismatched_state_dict_is_refused(norm1_zeros, case):
    state, path = norm1_zeros
    key = _mutate(case, state)
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        make_generator("norm1", weights=path, device="cpu")
    message = str(info.value)
    assert one_line(message)
    assert str(path) in message
    assert key in message
    assert "norm1" in message


def test_wrong_variant_file_is_refused(saved, tmp_path):
    """norm2's weights under norm1's name: conv6/conv7 shapes differ."""
    path, _ = saved("norm2")
    with pytest.raises(WeightsError) as info:
        make_generator("norm1", weights=path, device="cpu")
    assert "conv6.weight" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        [torch.zeros(3)],
        {"state_dict": {"conv6.weight": torch.zeros(1)}},
        {"conv6.weight": 1.0},
        torch.zeros(3),
    ],
    ids=["list", "nested_checkpoint", "non_tensor_value", "bare_tensor"],
)
def test_file_that_is_not_a_state_dict_is_refused(tmp_path, payload):
    path = tmp_path / "norm1.pt"
    torch.save(payload, path)
    with pytest.raises(WeightsError) as info:
        make_generator("norm1", weights=path, device="cpu")
    assert str(path) in str(info.value)
    assert one_line(str(info.value))


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "fc8.pt"
    path.write_bytes(np.random.default_rng(5).bytes(4096))
    with pytest.raises(WeightsError) as info:
        make_generator("fc8", weights=path, device="cpu")
    assert str(path) in str(info.value)
    assert one_line(str(info.value))


def test_truncated_file_is_refused(saved, tmp_path):
    path, _ = saved("norm1")
    broken = tmp_path / "norm1.pt"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError) as info:
        make_generator("norm1", weights=broken, device="cpu")
    assert str(broken) in str(info.value)


RAN: list[str] = []


def _record(tag: str) -> str:
    RAN.append(tag)
    return tag


class _Evil:
    def __reduce__(self):
        return (_record, ("executed",))


def test_pickled_code_is_not_run_on_load(tmp_path):
    path = tmp_path / "norm1.pt"
    torch.save({"conv6.weight": _Evil()}, path)
    RAN.clear()
    with pytest.raises(WeightsError):
        make_generator("norm1", weights=path, device="cpu")
    assert RAN == []
