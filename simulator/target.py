"""In-silico units: (network, layer, channel[, x, y]) read with forward hooks.

A :class:`Recording` is the in-silico electrode array: many units of one network, all scored
in a single forward pass that stops right after the deepest recorded layer (an early-layer
unit costs a fraction of a full pass). Units of convolutional layers without a position are
read at the centre of the feature map, as in XDream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from protocol.errors import XDreamError, first_line
from server.engine.device import resolve_device
from server.engine.imaging import resize_square
from simulator.networks import Network


class TargetError(XDreamError, ValueError):
    """An in-silico target names a layer, channel or position the network does not have."""


@dataclass(frozen=True)
class Unit:
    layer: str
    channel: int
    x: int | None = None
    y: int | None = None

    def __str__(self) -> str:
        pos = "" if self.x is None else f":{self.x}:{self.y}"
        return f"{self.layer}:{self.channel}{pos}"


@dataclass(frozen=True)
class TargetSpec:
    """A unit written as ``NETWORK:LAYER:CHANNEL[:X:Y]`` (the network may contain ':')."""

    network: str
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> TargetSpec:
        parts = text.split(":")
        n_net = {"torchvision": 2, "torchscript": 2, "export": 2, "python": 3}.get(parts[0], 1)
        network, rest = ":".join(parts[:n_net]), parts[n_net:]
        numbers = rest[1:]
        if (
            len(rest) not in (2, 4)
            or not all(parts)
            or not all(p.lstrip("-").isdigit() for p in numbers)
        ):
            raise TargetError(
                f"target {text!r} is not NETWORK:LAYER:CHANNEL[:X:Y] "
                "(e.g. efficientnet-lite0:_blocks.10:20 or efficientnet-lite0:_fc:1)"
            )
        return cls(network, Unit(rest[0], *(int(p) for p in numbers)))

    def __str__(self) -> str:
        return f"{self.network}:{self.unit}"


#: The pseudo-layer that is the network's own output (the only one of a TorchScript model).
OUTPUT = "output"


class _StopForward(Exception):
    """Raised by the last hook so the network does not compute layers nobody reads."""


class Recording:
    """Scores images on a fixed list of units of one network."""

    def __init__(
        self,
        network: Network,
        units: Sequence[Unit],
        device: str = "auto",
        input_size: int | None = None,
        batch_size: int = 64,
    ) -> None:
        if not units:
            raise TargetError("a recording needs at least one unit")
        self.network = network
        self.device = resolve_device(device)
        self.module = network.module.to(self.device)
        self.input_size = input_size or network.input_size
        self.batch_size = batch_size
        self._mean = torch.tensor(network.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(network.std, device=self.device).view(1, 3, 1, 1)
        modules = dict(self.module.named_modules()) if network.hooks else {}
        layers = list(dict.fromkeys(u.layer for u in units))
        #: Whether the forward pass's result is recorded (then it runs to the end).
        self._output = OUTPUT in layers and OUTPUT not in modules
        for layer in layers:
            if not network.hooks and layer != OUTPUT:
                raise TargetError(
                    f"{network.name} is TorchScript: its layers cannot be hooked, only "
                    f"{OUTPUT!r} is read (save it with torch.export to record its layers: "
                    "export:PATH)"
                )
            if (layer not in modules or layer == "") and not (self._output and layer == OUTPUT):
                raise TargetError(
                    f"{network.name} has no layer {layer!r}; layers include "
                    f"{', '.join(self.layer_names()[:12])}, ..."
                )
        self._layers = {name: modules[name] for name in layers if name in modules}
        self._captured: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        self._last_layer: str | None = None
        order = self._probe()
        self._last_layer = order[-1]
        self.units = [self._resolve(u) for u in units]

    def layer_names(self) -> list[str]:
        hooked = [n for n, _ in self.module.named_modules() if n] if self.network.hooks else []
        return [*hooked, OUTPUT]

    def _hook(self, name: str):
        def capture(_module, _inputs, output) -> None:
            self._calls[name] = self._calls.get(name, 0) + 1
            self._captured[name] = output
            last = name == self._last_layer and len(self._captured) == len(self._layers)
            if last and not self._output:
                raise _StopForward

        return capture

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward ``x`` with hooks on the recorded layers, attached only for this call so
        that several recordings can share one network."""
        self._captured, self._calls = {}, {}
        hooks = [m.register_forward_hook(self._hook(n)) for n, m in self._layers.items()]
        try:
            result = self.module(x)
            if self._output:
                self._captured[OUTPUT] = result
        except _StopForward:
            pass
        finally:
            for hook in hooks:
                hook.remove()
        return self._captured

    def _probe(self) -> list[str]:
        """Shapes of the recorded layers, and the order in which they are computed."""
        with torch.inference_mode():
            try:
                got = self._run(
                    torch.zeros(1, 3, self.input_size, self.input_size, device=self.device)
                )
            except RuntimeError as exc:  # e.g. a modeller's model wants other inputs
                raise TargetError(
                    f"{self.network.name} fails on a {self.input_size}-px RGB image in "
                    f"float32: {first_line(exc)}"
                ) from None
        reused = {name: n for name, n in self._calls.items() if n > 1}
        if reused:
            name, n = next(iter(reused.items()))
            raise TargetError(
                f"{name} runs {n} times per forward pass (a shared module), so its output "
                "is ambiguous; record the layer that contains the call you mean instead"
            )
        output = got.get(OUTPUT)
        if self._output and not (isinstance(output, torch.Tensor) and output.ndim in (2, 4)):
            raise TargetError(
                f"{self.network.name}'s output is {type(output).__name__} "
                f"{tuple(getattr(output, 'shape', ()))}: record a layer, or return one tensor "
                "(n, C) or (n, C, H, W)"
            )
        self._shapes = {name: tuple(t.shape[1:]) for name, t in got.items()}
        return list(got)

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """Output shape of a recorded layer for one image: ``(C,)`` or ``(C, H, W)``."""
        return self._shapes[layer]

    def _resolve(self, unit: Unit) -> Unit:
        shape = self._shapes[unit.layer]
        if not 0 <= unit.channel < shape[0]:
            raise TargetError(
                f"channel {unit.channel} out of range for {unit.layer} "
                f"({shape[0]} channels: 0..{shape[0] - 1})"
            )
        if len(shape) == 1:
            if unit.x is not None:
                raise TargetError(f"{unit.layer} is not spatial; give LAYER:CHANNEL only")
            return unit
        height, width = shape[-2], shape[-1]
        x = width // 2 if unit.x is None else unit.x
        y = height // 2 if unit.y is None else unit.y
        if not (0 <= x < width and 0 <= y < height):
            raise TargetError(f"position ({x}, {y}) outside {unit.layer}'s {width}x{height} map")
        return Unit(unit.layer, unit.channel, x, y)

    def activations_float(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, n_units)`` activations of RGB ``(n, 3, H, W)`` in [0, 255], differentiable."""
        images = resize_square(images, self.input_size)
        got = self._run((images - self._mean) / self._std)
        columns = []
        for u in self.units:
            act = got[u.layer][:, u.channel]
            columns.append(act if u.x is None else act[:, u.y, u.x])
        return torch.stack(columns, dim=1)

    def activations(self, images: np.ndarray) -> np.ndarray:
        """``(n, n_units)`` float64 activations of uint8 RGB images ``(n, H, W, 3)``."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise TargetError(
                f"expected uint8 images (n, H, W, 3), got {images.dtype} {images.shape}"
            )
        out = np.empty((len(images), len(self.units)))
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = torch.from_numpy(images[start : start + self.batch_size]).to(self.device)
                x = chunk.permute(0, 3, 1, 2).float()
                out[start : start + len(chunk)] = self.activations_float(x).cpu().numpy()
        return out


def channel_targets(target: str, channels: int) -> list[str]:
    """``channels`` neighbouring units, starting at ``target``'s channel."""
    spec = TargetSpec.parse(target)
    return [
        str(replace(spec, unit=replace(spec.unit, channel=spec.unit.channel + k)))
        for k in range(channels)
    ]
