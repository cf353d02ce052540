"""Pictures of a run: best image, score curve, montage of the best per generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def save_best(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path)


def save_progress(
    maxima: np.ndarray,
    means: np.ndarray,
    path: Path,
    title: str,
    reference_best: float | None = None,
    images_per_generation: int = 1,
) -> None:
    """Max and mean score per generation against images shown, with the best natural image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = (np.arange(len(maxima)) + 1) * images_per_generation
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot(x, maxima, label="generation max", color="tab:red")
    ax.plot(x, means, label="generation mean", color="tab:blue")
    if reference_best is not None:
        ax.axhline(reference_best, color="grey", linestyle="--", label="best natural image")
    ax.set_xlabel("images presented")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def montage(
    images: list[np.ndarray], labels: list[str], tile: int = 128, columns: int = 6
) -> Image.Image:
    """A grid of ``images`` (uint8 HxWx3) scaled to ``tile`` px, each captioned."""
    rows = -(-len(images) // columns)
    caption = 14
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        x, y = (i % columns) * tile, (i // columns) * (tile + caption)
        sheet.paste(Image.fromarray(image).resize((tile, tile), Image.Resampling.BILINEAR), (x, y))
        draw.text((x + 3, y + tile + 1), label, fill="black")
    return sheet
