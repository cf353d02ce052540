"""The DeePSiM layout as the project's facts file describes it, written independently of the
code under test: the key -> shape table of every variant's state dict, the layer operations,
a reference forward pass, and synthetic state dicts (the real weights are not
redistributable). Test data for tests/server/engine/test_deepsim.py."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# Expected state-dict layout, written from the facts file.
# ConvTranspose2d weights are (c_in, c_out, k, k); Conv2d weights (c_out, c_in, k, k);
# Linear weights (out, in).
# --------------------------------------------------------------------------------------------


def _fc_deconv_shapes(c_in: int) -> dict[str, tuple[int, ...]]:
    """The 4x4 -> 256x256 deconvolution stack shared by fc6, fc7, fc8 and pool5."""
    return {
        "tconv5_0.weight": (c_in, 256, 4, 4),
        "tconv5_1.weight": (256, 512, 3, 3),
        "tconv4_0.weight": (512, 256, 4, 4),
        "tconv4_1.weight": (256, 256, 3, 3),
        "tconv3_0.weight": (256, 128, 4, 4),
        "tconv3_1.weight": (128, 128, 3, 3),
        "tconv2.weight": (128, 64, 4, 4),
        "tconv1.weight": (64, 32, 4, 4),
        "tconv0.weight": (32, 3, 4, 4),
    }


def _fc_shapes(code: int) -> dict[str, tuple[int, ...]]:
    return {
        "fc7.weight": (4096, code),
        "fc7.bias": (4096,),
        "fc6.weight": (4096, 4096),
        "fc6.bias": (4096,),
        "fc5.weight": (4096, 4096),
        "fc5.bias": (4096,),
        **_fc_deconv_shapes(256),
    }


_POOL5_SHAPES = {
    "conv6.weight": (512, 256, 3, 3),
    "conv6.bias": (512,),
    "conv7.weight": (512, 512, 3, 3),
    "conv7.bias": (512,),
    "conv8.weight": (512, 512, 3, 3),
    "conv8.bias": (512,),
    **_fc_deconv_shapes(512),
}

_CONV34_SHAPES = {
    "conv6.weight": (384, 384, 3, 3),
    "conv6.bias": (384,),
    "conv7.weight": (512, 384, 3, 3),
    "conv7.bias": (512,),
    "conv8.weight": (512, 512, 2, 2),
    "conv8.bias": (512,),
    "tconv5_0.weight": (512, 256, 4, 4),
    "tconv5_1.weight": (256, 256, 3, 3),
    "tconv4_0.weight": (256, 128, 4, 4),
    "tconv4_1.weight": (128, 128, 3, 3),
    "tconv3_0.weight": (128, 128, 4, 4),
    "tconv3_1.weight": (128, 128, 3, 3),
    "tconv2_0.weight": (128, 64, 4, 4),
    "conv2_1.weight": (32, 64, 3, 3),
    "tconv1_0.weight": (32, 16, 4, 4),
    "conv1_1.weight": (3, 16, 3, 3),
}


def _norm_shapes(c_code: int, c6: int) -> dict[str, tuple[int, ...]]:
    return {
        "conv6.weight": (c6, c_code, 3, 3),
        "conv6.bias": (c6,),
        "conv7.weight": (128, c6, 3, 3),
        "conv7.bias": (128,),
        "conv8.weight": (128, 128, 3, 3),
        "conv8.bias": (128,),
        "tconv4_0.weight": (128, 128, 4, 4),
        "conv4_1.weight": (128, 128, 3, 3),
        "tconv3_0.weight": (128, 64, 4, 4),
        "conv3_1.weight": (64, 64, 3, 3),
        "tconv2_0.weight": (64, 32, 4, 4),
        "conv2_1.weight": (32, 32, 3, 3),
        "tconv1_0.weight": (32, 16, 4, 4),
        "conv1_1.weight": (3, 16, 3, 3),
    }


SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "fc6": _fc_shapes(4096),
    "fc7": _fc_shapes(4096),
    "fc8": _fc_shapes(1000),
    "pool5": _POOL5_SHAPES,
    "conv3": _CONV34_SHAPES,
    "conv4": _CONV34_SHAPES,
    "norm1": _norm_shapes(96, 128),
    "norm2": _norm_shapes(256, 256),
}

# (code shape, native output size, tanh x 255 on the output)
INFO: dict[str, tuple[tuple[int, ...], int, bool]] = {
    "fc6": ((4096,), 256, False),
    "fc7": ((4096,), 256, False),
    "fc8": ((1000,), 256, False),
    "pool5": ((256, 6, 6), 256, False),
    "conv3": ((384, 13, 13), 256, True),
    "conv4": ((384, 13, 13), 256, True),
    "norm1": ((96, 27, 27), 240, True),
    "norm2": ((256, 13, 13), 240, True),
}

# Forward pass per variant: (layer, op, stride, padding, LeakyReLU(0.3) after it).
# op: "linear", "conv", "tconv", or "reshape" (to 256x4x4).
_FC_DECONV_OPS = [
    ("tconv5_0", "tconv", 2, 1, True),
    ("tconv5_1", "tconv", 1, 1, True),
    ("tconv4_0", "tconv", 2, 1, True),
    ("tconv4_1", "tconv", 1, 1, True),
    ("tconv3_0", "tconv", 2, 1, True),
    ("tconv3_1", "tconv", 1, 1, True),
    ("tconv2", "tconv", 2, 1, True),
    ("tconv1", "tconv", 2, 1, True),
    ("tconv0", "tconv", 2, 1, False),
]
_FC_OPS = [
    ("fc7", "linear", 0, 0, True),
    ("fc6", "linear", 0, 0, True),
    ("fc5", "linear", 0, 0, True),
    ("reshape", "reshape", 0, 0, False),
    *_FC_DECONV_OPS,
]
_CONV34_OPS = [
    ("conv6", "conv", 1, 0, True),
    ("conv7", "conv", 1, 0, True),
    ("conv8", "conv", 1, 0, True),
    ("tconv5_0", "tconv", 2, 1, True),
    ("tconv5_1", "tconv", 1, 1, True),
    ("tconv4_0", "tconv", 2, 1, True),
    ("tconv4_1", "tconv", 1, 1, True),
    ("tconv3_0", "tconv", 2, 1, True),
    ("tconv3_1", "tconv", 1, 1, True),
    ("tconv2_0", "tconv", 2, 1, True),
    ("conv2_1", "conv", 1, 1, True),
    ("tconv1_0", "tconv", 2, 1, True),
    ("conv1_1", "conv", 1, 1, False),
]


def _norm_ops(conv6_stride: int) -> list[tuple[str, str, int, int, bool]]:
    return [
        ("conv6", "conv", conv6_stride, 2, True),
        ("conv7", "conv", 1, 1, True),
        ("conv8", "conv", 1, 1, True),
        ("tconv4_0", "tconv", 2, 1, True),
        ("conv4_1", "conv", 1, 1, True),
        ("tconv3_0", "tconv", 2, 1, True),
        ("conv3_1", "conv", 1, 1, True),
        ("tconv2_0", "tconv", 2, 1, True),
        ("conv2_1", "conv", 1, 1, True),
        ("tconv1_0", "tconv", 2, 1, False),
        ("conv1_1", "conv", 1, 1, False),
    ]


OPS = {
    "fc6": _FC_OPS,
    "fc7": _FC_OPS,
    "fc8": _FC_OPS,
    "pool5": [
        ("conv6", "conv", 1, 1, True),
        ("conv7", "conv", 1, 1, True),
        ("conv8", "conv", 1, 0, True),
        *_FC_DECONV_OPS,
    ],
    "conv3": _CONV34_OPS,
    "conv4": _CONV34_OPS,
    "norm1": _norm_ops(2),
    "norm2": _norm_ops(1),
}

BIASED_LAYERS = {"fc5", "fc6", "fc7", "conv6", "conv7", "conv8"}
BGR_MEAN = (104.0, 117.0, 123.0)


def reference_render(state: dict[str, torch.Tensor], variant: str, codes: torch.Tensor):
    """Float RGB images computed straight from the facts file with torch.nn.functional."""
    code_shape, _, tanh = INFO[variant]
    x = codes.view(len(codes), *code_shape)
    for name, op, stride, padding, act in OPS[variant]:
        if op == "reshape":
            x = x.view(len(x), 256, 4, 4)
            continue
        w, b = state[f"{name}.weight"], state.get(f"{name}.bias")
        if op == "linear":
            x = F.linear(x, w, b)
        elif op == "conv":
            x = F.conv2d(x, w, b, stride=stride, padding=padding)
        else:
            x = F.conv_transpose2d(x, w, b, stride=stride, padding=padding)
        if act:
            x = F.leaky_relu(x, 0.3)
    if tanh:
        x = torch.tanh(x) * 255.0
    x = x + torch.tensor(BGR_MEAN).view(1, 3, 1, 1)
    return x.flip(1)  # BGR -> RGB


# Extra gain on the last layer so the synthetic images span a wide range of grey levels:
# up for the linear-output variants, down for the tanh ones (to keep tanh off saturation).
_LAST_LAYER_GAIN = {"tconv0.weight": 30.0, "conv1_1.weight": 0.3}


def random_state(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with He-like scaling for LeakyReLU(0.3), so signals stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    gain = math.sqrt(2.0 / (1.0 + 0.3**2))
    state = {}
    for key, shape in SHAPES[variant].items():
        if key.endswith(".bias"):
            std = 0.1
        elif key.startswith("tconv"):
            c_in, _, k, _ = shape
            std = gain / math.sqrt(c_in * k * k / (4 if k == 4 else 1))
        else:
            std = gain / math.sqrt(math.prod(shape[1:]))
        std *= _LAST_LAYER_GAIN.get(key, 1.0)
        state[key] = torch.randn(shape, generator=g) * std
    return state


def zero_state(variant: str) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(s) for k, s in SHAPES[variant].items()}
