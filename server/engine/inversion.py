"""Images into a generator's code space, so an evolution can start from them (the paper's
Fig. 3d; Ponce lab starts from natural images that drive the site).

The weight-free generators (``pixel``, ``fourier``) have an exact inverse
(:meth:`Generator.encode`). The DeePSiM family has none: codes are found by gradient
descent through the generator (Adam on the pixel error, from zero codes), which is what
"code inversion" means in the XDream reference code. Either way the result says how close
the generator gets, in grey levels, so an operator can tell a faithful start from a poor one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protocol.errors import ConfigError
from server.engine.generators import Generator
from server.engine.natural_images import centre_squares, load_photos
from server.engine.optimizers import Optimizer
from server.engine.plan import blame

#: Gradient steps for a generator without an exact inverse, and their learning rate.
STEPS = 200
LEARNING_RATE = 0.1


@dataclass
class Inversion:
    """Codes for the images, and how far their renderings are from them."""

    codes: np.ndarray
    #: ``exact`` or ``gradient``.
    method: str
    #: Mean absolute pixel error (grey levels, 0-255, at the generator's native size), at
    #: the start and after each gradient step (one value for an exact inverse).
    errors: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | str]:
        """What a session file and ``--json`` keep of it."""
        return {"images": len(self.codes), "method": self.method,
                "error_first": self.errors[0], "error_last": self.errors[-1]}  # fmt: skip


def described(summary: dict[str, Any] | None) -> str | None:
    """An :meth:`Inversion.summary` in words, for the operator (None: the optimizer's own
    start)."""
    if summary is None:
        return None
    if summary["method"] == "exact":
        how = f"exact inversion, {summary['error_last']:.1f} grey levels off"
    else:
        how = (f"gradient inversion, {summary['error_first']:.1f} -> "
               f"{summary['error_last']:.1f} grey levels off")  # fmt: skip
    return f"started from {summary['images']} images ({how})"


def images_in(folder: str | Path, limit: int | None = None) -> list[np.ndarray]:
    """The photographs of ``folder``, the first ``limit`` by file name (ConfigError naming
    ``init_images`` if there are none, or one cannot be read)."""
    if not Path(folder).is_dir():
        raise ConfigError(f"init_images {folder} is not a folder", field="init_images")
    try:
        return load_photos(folder, limit)
    except ConfigError as exc:
        raise ConfigError(f"init_images: {exc}", field="init_images") from None


def invert(
    generator: Generator,
    photos: list[np.ndarray],
    steps: int = STEPS,
    learning_rate: float = LEARNING_RATE,
) -> Inversion:
    """Codes whose images are the centre squares of ``photos`` (uint8 RGB arrays)."""
    squares = centre_squares(photos, generator.native_size)
    target = torch.as_tensor(squares, dtype=torch.float32, device=generator.device)
    target = target.permute(0, 3, 1, 2)
    if generator.invertible:
        exact = generator.encode(target)
        with torch.no_grad():
            error = float((generator.render(exact) - target).abs().mean())
        return Inversion(exact.cpu().numpy().astype(np.float64), "exact", [error])
    # In the generator's own batches: autograd keeps every layer's output of a batch.
    parts = [_descend(generator, target[i : i + generator.batch_size], steps, learning_rate)
             for i in range(0, len(target), generator.batch_size)]  # fmt: skip
    sizes = np.array([len(codes) for codes, _ in parts], dtype=np.float64)
    errors = np.stack([e for _, e in parts]).T @ sizes / sizes.sum()
    return Inversion(np.concatenate([c for c, _ in parts]), "gradient", errors.tolist())


def _descend(
    generator: Generator, target: torch.Tensor, steps: int, learning_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Adam on the pixel error from zero codes: the codes, and the mean absolute error
    before each step and after the last."""
    codes = torch.zeros(len(target), generator.code_dim, device=generator.device)
    codes.requires_grad_(True)
    optimizer = torch.optim.Adam([codes], lr=learning_rate)
    errors = []
    for _ in range(steps):
        difference = generator.render(codes) - target
        errors.append(float(difference.detach().abs().mean()))  # before this step
        (codes.grad,) = torch.autograd.grad((difference**2).mean(), codes)  # not the weights'
        optimizer.step()
    with torch.no_grad():
        errors.append(float((generator.render(codes) - target).abs().mean()))
    return codes.detach().cpu().numpy().astype(np.float64), np.array(errors)


def start_from_images(optimizer: Optimizer, generator: Generator, folder: str | Path) -> Inversion:
    """Start ``optimizer`` from the images of ``folder``: the first ``population`` of them
    by file name (no generation shows more, so no more are read or inverted), as codes of
    ``generator``. ConfigErrors name ``init_images``."""
    with blame("init_images"):
        inversion = invert(generator, images_in(folder, optimizer.population))
        optimizer.start_from(inversion.codes)
    return inversion
