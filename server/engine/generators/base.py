"""The generator interface: latent codes in, RGB uint8 images out, in batches."""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch

from protocol.errors import ConfigError
from server.engine.device import resolve_device
from server.engine.imaging import resize_square
from server.engine.registry import Registry

#: Arithmetic the generator may run in: float32, or a half precision under autocast
#: (convolutions and matrix products in 16 bits; faster on GPUs, images change slightly:
#: docs/BENCHMARKS.md, "Half precision").
PRECISIONS = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Generator(ABC):
    """Turns codes of shape ``(n, code_dim)`` into images of shape ``(n, size, size, 3)``.

    Subclasses implement :meth:`render`, a differentiable torch function returning float RGB
    in [0, 255] at the generator's native resolution. This base class handles batching,
    resizing to the requested size and conversion to uint8, so every generator behaves the
    same on the wire. ``render`` staying differentiable is what lets the benchmark compute a
    white-box ceiling by gradient ascent through the same generator.
    """

    name: ClassVar[str]
    #: Whether :meth:`encode` inverts :meth:`render` exactly (else images are inverted by
    #: gradient descent through the generator: server/engine/inversion.py).
    invertible: ClassVar[bool] = False
    #: Shape of one code before flattening (e.g. ``(4096,)`` or ``(256, 6, 6)``).
    code_shape: tuple[int, ...]
    #: Side of the square image that :meth:`render` produces.
    native_size: int

    def __init__(
        self,
        image_size: int | None = None,
        device: str = "auto",
        batch_size: int = 64,
        precision: str = "float32",
    ) -> None:
        if image_size is not None and not 16 <= image_size <= 1024:
            raise ConfigError(f"image size must be between 16 and 1024 px, got {image_size}")
        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.precision = precision
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self._image_size = image_size

    @property
    def image_size(self) -> int:
        return self._image_size or self.native_size

    @property
    def code_dim(self) -> int:
        return math.prod(self.code_shape)

    def code_frequencies(self) -> np.ndarray | None:
        """The spatial frequency (cycles per image) each code coordinate stands for, or
        None where codes have no such order (pixels, DeePSiM). A search can use it to go
        coarse to fine (CMA-ES's ``band_start``)."""
        return None

    @abstractmethod
    def render(self, codes: torch.Tensor) -> torch.Tensor:
        """Map ``(n, code_dim)`` float codes to ``(n, 3, native, native)`` RGB in [0, 255]."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Codes ``(n, code_dim)`` that :meth:`render` maps back to ``pixels``
        ``(n, 3, native, native)`` (float RGB in [0, 255]), for an :attr:`invertible`
        generator. Pixels at 0 or 255 come back half a grey level inside (the sigmoid
        never reaches them)."""
        raise NotImplementedError(f"{self.name} has no exact inverse")

    def render_resized(self, codes: torch.Tensor) -> torch.Tensor:
        """:meth:`render` followed by resizing to ``image_size`` (still float, differentiable)."""
        return resize_square(self.render(codes), self.image_size).clamp(0.0, 255.0)

    def generate(self, codes: np.ndarray) -> np.ndarray:
        """Images for ``codes`` as a ``(n, size, size, 3)`` uint8 array, computed in batches."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.code_dim:
            raise ConfigError(
                f"{self.name} expects codes of shape (n, {self.code_dim}), got {codes.shape}"
            )
        out = np.empty((len(codes), self.image_size, self.image_size, 3), dtype=np.uint8)
        reduced = PRECISIONS[self.precision]
        with (
            torch.inference_mode(),
            (
                torch.autocast(self.device.type, dtype=reduced)
                if reduced
                else contextlib.nullcontext()
            ),
        ):
            for start in range(0, len(codes), self.batch_size):
                chunk = torch.as_tensor(
                    codes[start : start + self.batch_size], dtype=torch.float32
                ).to(self.device)
                images = self.render_resized(chunk).float().round_().to(torch.uint8)
                out[start : start + len(chunk)] = images.permute(0, 2, 3, 1).cpu().numpy()
        return out


def pixel_logits(pixels: torch.Tensor) -> torch.Tensor:
    """The inverse of ``255 * sigmoid``, pixels kept half a grey level inside [0, 255]."""
    return torch.logit(pixels.clamp(0.5, 254.5) / 255.0)


GENERATORS: Registry[Generator] = Registry("generator")
