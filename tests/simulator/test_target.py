"""In-silico targets: target strings, the offline network, and Recording's forward hooks."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from protocol.errors import ConfigError, WeightsError
from simulator.networks import load_network
from simulator.target import Recording, TargetError, TargetSpec, Unit

EXPECTED_FORM = "NETWORK:LAYER:CHANNEL[:X:Y]"


# ---------------------------------------------------------------------------------------------
# helpers


def centre_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


def resized(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images (noise blurred by upsampling), so activations are not degenerate."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return np.stack([resized(im, size) for im in small])


def photo_batch(size: int) -> np.ndarray:
    return np.stack(
        [
            resized(centre_square(skimage.data.chelsea()), size),
            resized(centre_square(skimage.data.coffee()), size),
        ]
    )


def full_forward(net, images: np.ndarray, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent reference: the whole network run on images already at their final size,
    with our own hook on ``layer`` (no early stop). Returns (layer output, logits)."""
    module = dict(net.module.named_modules())[layer]
    device = next(net.module.parameters()).device
    got = {}
    handle = module.register_forward_hook(lambda _m, _i, out: got.__setitem__("out", out))
    try:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        mean = torch.tensor(net.mean).view(1, 3, 1, 1)
        std = torch.tensor(net.std).view(1, 3, 1, 1)
        with torch.inference_mode():
            logits = net.module(((x - mean) / std).to(device))
    finally:
        handle.remove()
    return got["out"].cpu(), logits.cpu()


# ---------------------------------------------------------------------------------------------
# TargetSpec.parse


@pytest.mark.parametrize(
    ("text", "network", "unit"),
    [
        ("efficientnet-lite0:_blocks.10:20", "efficientnet-lite0", Unit("_blocks.10", 20)),
        (
            "efficientnet-lite0:_blocks.10:20:3:4",
            "efficientnet-lite0",
            Unit("_blocks.10", 20, 3, 4),
        ),
        ("torchvision:resnet50:layer3.1:5", "torchvision:resnet50", Unit("layer3.1", 5)),
        ("efficientnet-lite0:_fc:1", "efficientnet-lite0", Unit("_fc", 1)),
        ("python:lab.models:make_v4:v4.2:7", "python:lab.models:make_v4", Unit("v4.2", 7)),
        ("torchscript:/models/it.pt:output:3", "torchscript:/models/it.pt", Unit("output", 3)),
    ],
)
def test_parse_valid_targets_and_round_trip(text, network, unit):
    spec = TargetSpec.parse(text)
    assert spec.network == network
    assert spec.unit == unit
    assert str(spec) == text
    assert TargetSpec.parse(str(spec)) == spec


def test_parse_position_fields_are_x_then_y():
    unit = TargetSpec.parse("efficientnet-lite0:_blocks.10:20:3:4").unit
    assert (unit.channel, unit.x, unit.y) == (20, 3, 4)
    assert TargetSpec.parse("efficientnet-lite0:_blocks.10:20").unit.x is None


@pytest.mark.parametrize(
    "text",
    [
        "efficientnet-lite0",
        "efficientnet-lite0:_fc",
        "efficientnet-lite0:_fc:x",
        ":_fc:1",
        "",
        "efficientnet-lite0::1",
    ],
)
def test_parse_rejects_malformed_targets(text):
    with pytest.raises(TargetError, match=EXPECTED_FORM.replace("[", r"\[").replace("]", r"\]")):
        TargetSpec.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        # a position needs both X and Y: NETWORK:LAYER:CHANNEL:X is not a valid target
        "efficientnet-lite0:_fc:1:2",
        "efficientnet-lite0:_blocks.10:20:3",
    ],
)
def test_parse_rejects_x_without_y(text):
    with pytest.raises(TargetError, match=r"NETWORK:LAYER:CHANNEL\[:X:Y\]"):
        TargetSpec.parse(text)


def test_target_error_is_a_value_error():
    with pytest.raises(ValueError):
        TargetSpec.parse("efficientnet-lite0:_fc")


# ---------------------------------------------------------------------------------------------
# load_network


def test_lite0_loads_offline_in_eval_mode(lite0):
    assert lite0.name == "efficientnet-lite0"
    assert lite0.input_size == 224
    assert not lite0.module.training
    assert not any(p.requires_grad for p in lite0.module.parameters())


def test_lite0_classifies_skimage_photos(lite0):
    images = photo_batch(224)
    rec = Recording(lite0, [Unit("_fc", c) for c in range(1000)], device="cpu")
    acts = rec.activations(images)
    assert acts.shape == (2, 1000)
    assert acts.dtype == np.float64
    assert acts[0].argmax() == 285  # Egyptian cat
    assert acts[1].argmax() == 967  # espresso
    # the recorded values are the network's logits
    _, logits = full_forward(lite0, images, "_fc")
    np.testing.assert_allclose(acts, logits.numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_network_is_a_config_error():
    with pytest.raises(ConfigError, match="no-such-net"):
        load_network("no-such-net")


def test_torchvision_without_weights_is_a_weights_error():
    with pytest.raises(WeightsError, match="weights"):
        load_network("torchvision:resnet18")


# ---------------------------------------------------------------------------------------------
# Recording: validation


def test_unknown_layer_lists_real_layers(lite0):
    with pytest.raises(TargetError) as info:
        Recording(lite0, [Unit("_blocks.99", 0)], device="cpu", input_size=64)
    message = str(info.value)
    assert "_blocks.99" in message
    assert "_conv_stem" in message and "_blocks.0" in message


def test_root_module_is_not_a_layer(lite0):
    with pytest.raises(TargetError):
        Recording(lite0, [Unit("", 0)], device="cpu", input_size=64)


def test_empty_unit_list_is_rejected(lite0):
    with pytest.raises(TargetError):
        Recording(lite0, [], device="cpu", input_size=64)


@pytest.mark.parametrize(
    ("layer", "channel", "count"),
    [("_blocks.10", 112, 112), ("_fc", 1000, 1000), ("_fc", -1, 1000)],
)
def test_channel_out_of_range_states_channel_count(lite0, layer, channel, count):
    with pytest.raises(TargetError, match=f"{count} channels"):
        Recording(lite0, [Unit(layer, channel)], device="cpu", input_size=64)


def test_last_channel_is_accepted(lite0):
    rec = Recording(lite0, [Unit("_blocks.10", 111), Unit("_fc", 999)], device="cpu", input_size=64)
    assert [u.channel for u in rec.units] == [111, 999]


@pytest.mark.parametrize(("x", "y"), [(6, 0), (0, 6), (-1, 3), (3, -1), (100, 100)])
def test_position_out_of_range(lite0, x, y):
    # _blocks.10 is a 6x6 map at 96 px
    with pytest.raises(TargetError, match="6x6"):
        Recording(lite0, [Unit("_blocks.10", 0, x, y)], device="cpu", input_size=96)


def test_position_at_map_edge_is_accepted(lite0):
    rec = Recording(
        lite0,
        [Unit("_blocks.10", 0, 5, 0), Unit("_blocks.10", 0, 0, 5)],
        device="cpu",
        input_size=96,
    )
    assert [(u.x, u.y) for u in rec.units] == [(5, 0), (0, 5)]


def test_position_on_non_spatial_layer(lite0):
    with pytest.raises(TargetError, match="_fc"):
        Recording(lite0, [Unit("_fc", 1, 0, 0)], device="cpu", input_size=64)


def test_conv_unit_without_position_reads_centre(lite0):
    rec = Recording(
        lite0,
        [Unit("_blocks.10", 5), Unit("_blocks.1", 3), Unit("_fc", 7)],
        device="cpu",
        input_size=96,
    )
    assert rec.layer_shape("_blocks.10") == (112, 6, 6)
    assert rec.layer_shape("_blocks.1") == (24, 24, 24)
    assert rec.layer_shape("_fc") == (1000,)
    assert rec.units == [Unit("_blocks.10", 5, 3, 3), Unit("_blocks.1", 3, 12, 12), Unit("_fc", 7)]
    # and the value really is the one at the centre of the map
    images = random_images(2, 96, seed=1)
    ref, _ = full_forward(lite0, images, "_blocks.1")
    np.testing.assert_allclose(
        rec.activations(images)[:, 1], ref[:, 3, 12, 12].numpy(), rtol=1e-5, atol=1e-5
    )


def test_explicit_position_reads_that_position(lite0):
    images = random_images(2, 96, seed=2)
    ref, _ = full_forward(lite0, images, "_blocks.10")
    rec = Recording(lite0, [Unit("_blocks.10", 9, 1, 4)], device="cpu", input_size=96)
    # x is the column, y the row
    np.testing.assert_allclose(
        rec.activations(images)[:, 0], ref[:, 9, 4, 1].numpy(), rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(ref[:, 9, 4, 1].numpy(), ref[:, 9, 1, 4].numpy())


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((1, 32, 32, 3), dtype=np.float32),
        np.zeros((1, 32, 32, 3), dtype=np.int64),
        np.zeros((32, 32, 3), dtype=np.uint8),
        np.zeros((1, 3, 32, 32), dtype=np.uint8),
        np.zeros((1, 32, 32, 4), dtype=np.uint8),
        np.zeros((1, 32, 32), dtype=np.uint8),
    ],
)
def test_activations_reject_bad_images(lite0, images):
    rec = Recording(lite0, [Unit("_blocks.1", 0)], device="cpu", input_size=32)
    with pytest.raises(TargetError, match="uint8"):
        rec.activations(images)


# ---------------------------------------------------------------------------------------------
# Recording: results


MIXED_UNITS = [
    Unit("_blocks.1", 4),
    Unit("_blocks.10", 20, 1, 4),
    Unit("_blocks.10", 21),
    Unit("_conv_head", 100),
    Unit("_fc", 285),
    Unit("_blocks.3", 0),
]


def test_many_units_equal_single_unit_recordings(lite0):
    images = random_images(2, 96, seed=3)
    together = Recording(lite0, MIXED_UNITS, device="cpu", input_size=96).activations(images)
    assert together.shape == (2, len(MIXED_UNITS))
    for i, unit in enumerate(MIXED_UNITS):
        alone = Recording(lite0, [unit], device="cpu", input_size=96).activations(images)
        np.testing.assert_array_equal(together[:, i], alone[:, 0], err_msg=str(unit))


def test_early_stop_matches_full_forward_and_skips_later_layers(lite0):
    images = random_images(2, 96, seed=4)
    ref, _ = full_forward(lite0, images, "_blocks.3")
    calls = []
    handle = lite0.module._fc.register_forward_hook(lambda *_: calls.append(1))
    try:
        rec = Recording(lite0, [Unit("_blocks.3", 2, 1, 2)], device="cpu", input_size=96)
        calls.clear()  # construction probes the network once; only count activations()
        acts = rec.activations(images)
    finally:
        handle.remove()
    np.testing.assert_allclose(acts[:, 0], ref[:, 2, 2, 1].numpy(), rtol=1e-5, atol=1e-6)
    assert calls == []  # the forward pass stopped before the classifier


def test_recording_removes_its_hooks(lite0):
    rec = Recording(lite0, [Unit("_blocks.1", 0)], device="cpu", input_size=64)
    rec.activations(random_images(2, 64))
    for name, module in lite0.module.named_modules():
        assert not module._forward_hooks, name
    # a plain forward pass of the shared module still runs to the end
    with torch.inference_mode():
        assert lite0.module(torch.zeros(2, 3, 64, 64, device=rec.device)).shape == (2, 1000)


def test_two_recordings_on_one_network_do_not_interfere(lite0):
    images_a = random_images(2, 96, seed=5)
    images_b = random_images(2, 96, seed=6)
    rec_a = Recording(lite0, [Unit("_blocks.2", 1)], device="cpu", input_size=96)
    rec_b = Recording(lite0, [Unit("_fc", 967), Unit("_blocks.12", 3)], device="cpu", input_size=96)
    alone_a = Recording(lite0, [Unit("_blocks.2", 1)], device="cpu", input_size=96).activations(
        images_a
    )
    _, logits = full_forward(lite0, images_b, "_fc")
    got = [
        rec_a.activations(images_a),
        rec_b.activations(images_b),
        rec_a.activations(images_a),
        rec_b.activations(images_b),
    ]
    for a in got[0::2]:
        np.testing.assert_array_equal(a, alone_a)
    for b in got[1::2]:
        assert b.shape == (2, 2)
        np.testing.assert_allclose(b[:, 0], logits[:, 967].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(b, got[1])


def test_activations_float_is_differentiable(lite0):
    rec = Recording(lite0, [Unit("_blocks.10", 20), Unit("_fc", 1)], device="cpu", input_size=96)
    base = torch.from_numpy(random_images(2, 96, seed=7)).permute(0, 3, 1, 2).float()
    x = base.clone().requires_grad_(True)
    out = rec.activations_float(x)
    assert out.shape == (2, 2)
    assert out.requires_grad
    out[:, 1].sum().backward()
    grad = x.grad
    assert grad is not None and grad.shape == x.shape
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # first-order check: a small step along the gradient raises the score by about |g|^2 * eps
    eps = 1e-2 / grad.norm()
    with torch.no_grad():
        before = rec.activations_float(base)[:, 1].sum()
        after = rec.activations_float(base + eps * grad)[:, 1].sum()
    predicted = float(eps * grad.norm() ** 2)
    assert float(after - before) == pytest.approx(predicted, rel=0.2)


def test_activations_float_differentiable_through_resize(lite0):
    rec = Recording(lite0, [Unit("_blocks.3", 0)], device="cpu", input_size=64)
    x = torch.full((1, 3, 128, 128), 120.0, requires_grad=True)
    rec.activations_float(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_batch_size_does_not_change_results(lite0):
    images = random_images(3, 64, seed=8)
    units = [Unit("_blocks.5", 7), Unit("_fc", 3)]
    one = Recording(lite0, units, device="cpu", input_size=64, batch_size=1).activations(images)
    two = Recording(lite0, units, device="cpu", input_size=64, batch_size=2).activations(images)
    big = Recording(lite0, units, device="cpu", input_size=64, batch_size=64).activations(images)
    assert one.shape == two.shape == big.shape == (3, 2)
    np.testing.assert_allclose(one, big, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(two, big, rtol=1e-4, atol=1e-4)
    # rows belong to their own images (a chunking bug would shuffle or repeat rows)
    assert len({round(v, 4) for v in big[:, 1]}) == 3


def test_input_size_option_resizes(lite0):
    rec = Recording(lite0, [Unit("_blocks.10", 30), Unit("_fc", 285)], device="cpu", input_size=96)
    assert rec.input_size == 96
    assert rec.layer_shape("_blocks.10") == (112, 6, 6)
    assert rec.units[0] == Unit("_blocks.10", 30, 3, 3)
    # images already at 96 px are read as they are
    small = photo_batch(96)
    ref, logits = full_forward(lite0, small, "_blocks.10")
    at_96 = rec.activations(small)
    np.testing.assert_allclose(at_96[:, 0], ref[:, 30, 3, 3].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(at_96[:, 1], logits[:, 285].numpy(), rtol=1e-5, atol=1e-5)
    # bigger images are shrunk to 96 px first: close to shrinking them ourselves
    from_224 = rec.activations(photo_batch(224))
    np.testing.assert_allclose(from_224, at_96, rtol=0.15, atol=0.5)


def test_default_input_size_is_the_networks(lite0):
    rec = Recording(lite0, [Unit("_blocks.10", 0)], device="cpu")
    assert rec.input_size == 224
    assert rec.layer_shape("_blocks.10") == (112, 14, 14)
    assert rec.units == [Unit("_blocks.10", 0, 7, 7)]


# ---------------------------------------------------------------------------------------------
# modules that run more than once per forward pass


@pytest.mark.parametrize("layer", ["_swish", "_blocks.1._swish"])
def test_module_that_runs_twice_per_pass_is_refused(lite0, layer):
    """``_swish`` modules (ReLU6) run more than once per pass: the top-level one after the stem
    and after the head, a block's one after its expand and its depthwise conv. Which call a
    unit would read is ambiguous, so such layers are refused with a clear message, alone or
    next to a later layer."""
    for units in ([Unit(layer, 0)], [Unit(layer, 0), Unit("_fc", 0)]):
        with pytest.raises(TargetError, match=f"{layer} runs 2 times per forward pass"):
            Recording(lite0, units, device="cpu", input_size=96)
