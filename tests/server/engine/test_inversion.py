"""Images into a generator's codes (server/engine/inversion.py): the exact inverses of the
weight-free generators, gradient inversion through a DeePSiM generator with synthetic
weights, and what a folder without images is told."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from protocol.errors import ConfigError
from server.engine.generators import make_generator
from server.engine.inversion import described, images_in, invert, start_from_images
from server.engine.natural_images import centre_squares, load_photos
from server.engine.optimizers import make_optimizer
from tests.server.engine.deepsim_layout import random_state


@pytest.mark.parametrize(
    "name, options", [("pixel", {"resolution": 24}), ("fourier", {"resolution": 32})]
)
def test_the_weight_free_generators_invert_exactly(name, options):
    """Rendering the inverted codes gives the photos back (to the half grey level the
    sigmoid cannot reach at 0 and 255), at the generator's own size."""
    generator = make_generator(name, image_size=64, device="cpu", **options)
    photos = load_photos()[:3]
    inversion = invert(generator, photos)
    assert inversion.method == "exact" and inversion.codes.shape == (3, generator.code_dim)
    with torch.no_grad():
        rendered = generator.render(torch.as_tensor(inversion.codes, dtype=torch.float32))
    squares = centre_squares(photos, generator.native_size).transpose(0, 3, 1, 2)
    assert np.abs(rendered.numpy() - squares).max() <= 0.51
    assert inversion.errors[0] < 0.3  # mean grey levels, as the summary reports it
    assert inversion.summary() == {
        "images": 3, "method": "exact",
        "error_first": inversion.errors[0], "error_last": inversion.errors[0],
    }  # fmt: skip


def test_a_deepsim_generator_is_inverted_by_gradient_descent(tmp_path):
    """Synthetic fc8 weights (the real ones are not redistributable): images the generator
    can make (its renderings of random codes) are found again from zero codes, the pixel
    error falling to under a fifth of where it started; in the generator's batches (here
    one image each), the errors reported over all of them."""
    path = tmp_path / "fc8.pt"
    torch.save(random_state("fc8"), path)
    generator = make_generator("fc8", weights=path, device="cpu", batch_size=1)
    torch.manual_seed(0)
    with torch.no_grad():
        made = generator.render(torch.randn(2, generator.code_dim))
    photos = list(made.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy())
    inversion = invert(generator, photos, steps=60)
    assert inversion.method == "gradient" and len(inversion.errors) == 61
    assert inversion.errors[-1] < inversion.errors[0] / 5, inversion.errors[::10]
    assert inversion.codes.shape == (2, 1000) and np.isfinite(inversion.codes).all()
    with torch.no_grad():
        again = generator.render(torch.as_tensor(inversion.codes, dtype=torch.float32))
    target = torch.as_tensor(np.stack(photos), dtype=torch.float32).permute(0, 3, 1, 2)
    assert abs(float((again - target).abs().mean()) - inversion.errors[-1]) < 1e-3
    first, last = inversion.errors[0], inversion.errors[-1]
    assert described(inversion.summary()) == (
        f"started from 2 images (gradient inversion, {first:.1f} -> {last:.1f} grey levels off)"
    )
    assert described(None) is None


def test_a_folder_without_images_is_named_in_the_error(tmp_path):
    with pytest.raises(ConfigError, match="not a folder") as missing:
        images_in(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("no pictures here")
    with pytest.raises(ConfigError, match="no images") as empty:
        images_in(tmp_path)
    assert missing.value.field == empty.value.field == "init_images"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "green.png")
    assert [p.shape for p in images_in(tmp_path)] == [(30, 40, 3)]
    (tmp_path / "notes.jpg").write_text("not a picture either")
    with pytest.raises(ConfigError, match=r"cannot read image .*notes\.jpg") as unreadable:
        images_in(tmp_path)
    assert unreadable.value.field == "init_images"
    assert len(images_in(tmp_path, limit=1)) == 1  # green.png, before notes.jpg by name


def test_an_optimizer_starts_from_the_first_population_of_a_folder(tmp_path):
    """Five images for a GA of three: the first three by file name are inverted (no
    generation would show the others) and are its first generation."""
    for i in range(5):
        Image.new("RGB", (20, 20), (40 * i + 10, 100, 100)).save(tmp_path / f"{i}.png")
    generator = make_generator("pixel", resolution=8, image_size=16, device="cpu")
    optimizer = make_optimizer("ga", generator.code_dim, population=3)
    inversion = start_from_images(optimizer, generator, tmp_path)
    assert inversion.summary()["images"] == 3
    images = generator.generate(optimizer.ask())
    assert [round(float(image[..., 0].mean())) for image in images] == [10, 50, 90]
    with pytest.raises(ConfigError, match="before its first generation") as late:
        start_from_images(optimizer, generator, tmp_path)
    assert late.value.field == "init_images"
