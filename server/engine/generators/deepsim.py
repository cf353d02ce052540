"""DeePSiM generators (Dosovitskiy & Brox 2016) with XDream's converted weight layout.

Eight variants, one per AlexNet layer whose code they invert. Layers are named exactly as in
XDream's converted ``{variant}.pt`` state dicts, and only ``fc5``-``fc7`` and
``conv6``-``conv8`` carry biases, so those files load with ``strict=True`` unchanged.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from server.engine.generators.base import GENERATORS, Generator
from server.engine.generators.weights import load_state_dict, weights_path

# Caffe's BGR mean that the generators were trained to output around.
_BGR_MEAN = (104.0, 117.0, 123.0)


class Layer(NamedTuple):
    name: str
    kind: str  # "linear", "conv" or "tconv"
    c_in: int
    c_out: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    activation: bool = True


def _up(name: str, c_in: int, c_out: int, activation: bool = True) -> Layer:
    """Transposed convolution that doubles the spatial size."""
    return Layer(name, "tconv", c_in, c_out, 4, 2, 1, activation)


def _fc_deconv(c_in: int) -> list[Layer]:
    """The 4x4 -> 256x256 deconvolution stack shared by fc6, fc7, fc8 and pool5."""
    return [
        _up("tconv5_0", c_in, 256),
        Layer("tconv5_1", "tconv", 256, 512),
        _up("tconv4_0", 512, 256),
        Layer("tconv4_1", "tconv", 256, 256),
        _up("tconv3_0", 256, 128),
        Layer("tconv3_1", "tconv", 128, 128),
        _up("tconv2", 128, 64),
        _up("tconv1", 64, 32),
        _up("tconv0", 32, 3, activation=False),
    ]


def _fc_layers(code: int) -> list[Layer]:
    return [
        Layer("fc7", "linear", code, 4096),
        Layer("fc6", "linear", 4096, 4096),
        Layer("fc5", "linear", 4096, 4096),
        *_fc_deconv(256),
    ]


def _conv34_layers() -> list[Layer]:
    return [
        Layer("conv6", "conv", 384, 384, padding=0),
        Layer("conv7", "conv", 384, 512, padding=0),
        Layer("conv8", "conv", 512, 512, kernel=2, padding=0),
        _up("tconv5_0", 512, 256),
        Layer("tconv5_1", "tconv", 256, 256),
        _up("tconv4_0", 256, 128),
        Layer("tconv4_1", "tconv", 128, 128),
        _up("tconv3_0", 128, 128),
        Layer("tconv3_1", "tconv", 128, 128),
        _up("tconv2_0", 128, 64),
        Layer("conv2_1", "conv", 64, 32),
        _up("tconv1_0", 32, 16),
        Layer("conv1_1", "conv", 16, 3, activation=False),
    ]


def _norm_layers(c_code: int, c6: int) -> list[Layer]:
    return [
        Layer("conv6", "conv", c_code, c6, stride=2 if c_code == 96 else 1, padding=2),
        Layer("conv7", "conv", c6, 128),
        Layer("conv8", "conv", 128, 128),
        _up("tconv4_0", 128, 128),
        Layer("conv4_1", "conv", 128, 128),
        _up("tconv3_0", 128, 64),
        Layer("conv3_1", "conv", 64, 64),
        _up("tconv2_0", 64, 32),
        Layer("conv2_1", "conv", 32, 32),
        _up("tconv1_0", 32, 16, activation=False),
        Layer("conv1_1", "conv", 16, 3, activation=False),
    ]


class Variant(NamedTuple):
    code_shape: tuple[int, ...]
    layers: list[Layer]
    tanh_output: bool
    native_size: int


VARIANTS: dict[str, Variant] = {
    "fc6": Variant((4096,), _fc_layers(4096), False, 256),
    "fc7": Variant((4096,), _fc_layers(4096), False, 256),
    "fc8": Variant((1000,), _fc_layers(1000), False, 256),
    "pool5": Variant(
        (256, 6, 6),
        [
            Layer("conv6", "conv", 256, 512),
            Layer("conv7", "conv", 512, 512),
            Layer("conv8", "conv", 512, 512, padding=0),
            *_fc_deconv(512),
        ],
        False,
        256,
    ),
    "conv3": Variant((384, 13, 13), _conv34_layers(), True, 256),
    "conv4": Variant((384, 13, 13), _conv34_layers(), True, 256),
    "norm1": Variant((96, 27, 27), _norm_layers(96, 128), True, 240),
    "norm2": Variant((256, 13, 13), _norm_layers(256, 256), True, 240),
}

_HAS_BIAS = {"fc5", "fc6", "fc7", "conv6", "conv7", "conv8"}


def _module(layer: Layer) -> nn.Module:
    bias = layer.name in _HAS_BIAS
    if layer.kind == "linear":
        return nn.Linear(layer.c_in, layer.c_out, bias=bias)
    cls = nn.Conv2d if layer.kind == "conv" else nn.ConvTranspose2d
    return cls(layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding, bias=bias)


def build_network(variant: str) -> nn.Sequential:
    """The untrained network for ``variant``; its state_dict keys match XDream's files."""
    spec = VARIANTS[variant]
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for layer in spec.layers:
        modules[layer.name] = _module(layer)
        if layer.activation:
            modules[f"{layer.name}_relu"] = nn.LeakyReLU(0.3)
        if layer.name == "fc5":
            modules["reshape"] = nn.Unflatten(1, (256, 4, 4))
    if not spec.code_shape[1:]:
        return nn.Sequential(modules)
    return nn.Sequential(
        OrderedDict([("unflatten", nn.Unflatten(1, spec.code_shape)), *modules.items()])
    )


def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def expected_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of ``variant`` with its tensor shape."""
    return _shapes(build_network(variant))


class DeePSiMGenerator(Generator):
    """One DeePSiM variant with user-supplied weights (``weights`` path or weights dir)."""

    variant: str

    def __init__(self, weights: str | os.PathLike | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        spec = VARIANTS[self.variant]
        self.code_shape = spec.code_shape
        self.native_size = spec.native_size
        self._tanh = spec.tanh_output
        self.weights_file = weights_path(self.variant, weights)
        net = build_network(self.variant)
        state = load_state_dict(self.weights_file, self.variant, _shapes(net))
        net.load_state_dict(state, strict=True)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self._bgr_mean = torch.tensor(_BGR_MEAN, device=self.device).view(1, 3, 1, 1)

    def render(self, codes: torch.Tensor) -> torch.Tensor:
        out = self.net(codes)
        if self._tanh:
            out = torch.tanh(out) * 255.0
        return (out + self._bgr_mean).flip(1)  # BGR -> RGB


def _register(variant: str) -> None:
    cls = type(f"DeePSiM_{variant}", (DeePSiMGenerator,), {"variant": variant})
    GENERATORS.register(variant)(cls)


for _variant in VARIANTS:
    _register(_variant)
