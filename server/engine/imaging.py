"""Image tensor helpers shared by the generators and the in-silico networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``(n, C, H, W)`` to ``size`` x ``size``, antialiased when shrinking.

    A no-op when the images already have that size; differentiable.
    """
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images,
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=images.shape[-1] > size,
    )
