"""The paper's baseline: the code is the image itself (at a coarse resolution)."""

from __future__ import annotations

import torch

from protocol.errors import ConfigError
from server.engine.generators.base import GENERATORS, Generator, pixel_logits


@GENERATORS.register("pixel")
class PixelGenerator(Generator):
    """Each code element is one RGB pixel value of a ``resolution`` x ``resolution`` image.

    Values pass through ``255 * sigmoid(code)`` so that unbounded codes (the optimizers never
    clip) still make valid pixels and gradients never vanish at a hard clip. A code of zeros
    is mid-grey; N(0, 1) codes give the noisy images the paper started from. The image is
    upsampled bilinearly to the requested size.
    """

    invertible = True

    def __init__(self, resolution: int = 32, **kwargs) -> None:
        if not 4 <= resolution <= 512:
            raise ConfigError(f"pixel resolution must be between 4 and 512, got {resolution}")
        self.code_shape = (3, resolution, resolution)
        self.native_size = resolution
        kwargs.setdefault("image_size", 224)
        super().__init__(**kwargs)

    def render(self, codes: torch.Tensor) -> torch.Tensor:
        return 255.0 * torch.sigmoid(codes.view(-1, *self.code_shape))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixel_logits(pixels).reshape(len(pixels), -1)
