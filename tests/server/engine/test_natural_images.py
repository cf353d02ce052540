"""Natural reference images: bundled photographs, folders, crops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from protocol.errors import ConfigError
from server.engine.natural_images import SKIMAGE_PHOTOS, load_photos, random_crops, reference_crops

# ---------------------------------------------------------------------------------------------
# reference images


def test_random_crops_shape_and_dtype():
    photos = [np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)]
    crops = random_crops(photos, 5, 32, seed=0)
    assert crops.shape == (5, 32, 32, 3)
    assert crops.dtype == np.uint8


def test_random_crops_are_seeded():
    photos = load_photos()[:3]
    a = random_crops(photos, 4, 24, seed=1)
    b = random_crops(photos, 4, 24, seed=1)
    c = random_crops(photos, 4, 24, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # crops within one call differ from each other
    assert len({im.tobytes() for im in a}) == 4


def test_random_crops_come_from_the_photos():
    red = np.zeros((50, 50, 3), dtype=np.uint8)
    red[..., 0] = 200
    crops = random_crops([red], 3, 16, seed=0)
    assert (crops[..., 0] == 200).all() and (crops[..., 1:] == 0).all()


def test_load_photos_offline_rgb_uint8(monkeypatch):
    import socket

    def no_network(*_args, **_kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    photos = load_photos()
    assert len(photos) == len(SKIMAGE_PHOTOS)
    for photo in photos:
        assert photo.dtype == np.uint8
        assert photo.ndim == 3 and photo.shape[2] == 3
        assert photo.std() > 0
    grey = photos[SKIMAGE_PHOTOS.index("camera")]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_load_photos_from_folder(tmp_path):
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(grey, mode="L").save(tmp_path / "b.PNG")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    photos = load_photos(tmp_path)
    assert len(photos) == 3
    for photo in photos:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    np.testing.assert_array_equal(photos[0], rgb)
    np.testing.assert_array_equal(photos[1], np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(photos[2], rgba[..., :3])
    assert len(load_photos(str(tmp_path))) == 3


def test_load_photos_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="no images"):
        load_photos(tmp_path)
    (tmp_path / "readme.txt").write_text("still no images")
    with pytest.raises(ConfigError):
        load_photos(tmp_path)
    with pytest.raises(ConfigError):
        load_photos(tmp_path / "missing")


def test_reference_images_from_folder(tmp_path):
    Image.fromarray(np.full((40, 40, 3), 9, dtype=np.uint8)).save(tmp_path / "x.png")
    refs = reference_crops(16, 3, folder=str(tmp_path), seed=0)
    assert refs.shape == (3, 16, 16, 3) and refs.dtype == np.uint8
    assert (refs == 9).all()


# ---------------------------------------------------------------------------------------------
# build_neurons
