"""Natural reference images: random crops of scikit-image's bundled photographs or a folder.

They calibrate the noise (how many spikes a "good" natural stimulus evokes) and give the
yardstick of relative activation: best evolved / best natural. Sessions on a rig show
them among the evolved images as reference stimuli.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protocol.errors import ConfigError

#: scikit-image photographs that ship inside the wheel (no download); grey ones become RGB.
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3].astype(np.uint8)


def load_photos(folder: str | Path | None = None, limit: int | None = None) -> list[np.ndarray]:
    """Source photographs: those in ``folder`` (the first ``limit`` by file name), else
    scikit-image's bundled ones."""
    if folder is None:
        import skimage.data

        return [_as_rgb(getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS]
    from PIL import Image

    path = Path(folder)
    files = (
        sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if path.is_dir()
        else []
    )
    if not files:
        raise ConfigError(f"no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in folder {path}")
    photos = []
    for file in files[:limit]:
        try:
            photos.append(_as_rgb(np.asarray(Image.open(file).convert("RGB"))))
        except OSError as exc:  # PIL's UnidentifiedImageError among them
            raise ConfigError(f"cannot read image {file}: {exc}") from None
    return photos


def random_crops(photos: list[np.ndarray], n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` square crops (40-100 % of the short side, random flips) resized to ``size``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        top, left = rng.integers(h - side + 1), rng.integers(w - side + 1)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crop = crop.resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(crop)
        out[i] = array[:, ::-1] if rng.random() < 0.5 else array
    return out


def centre_squares(photos: list[np.ndarray], size: int) -> np.ndarray:
    """Each photo's centre square resized to ``size`` (reference images from a folder)."""
    from PIL import Image

    out = np.empty((len(photos), size, size, 3), dtype=np.uint8)
    for i, photo in enumerate(photos):
        h, w = photo.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        out[i] = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))
    return out


#: Natural crops drawn from the bundled photographs when no reference folder is given.
BUNDLED_REFERENCES = 100


def reference_crops(size: int, n: int, folder: str | None = None, seed: int = 0) -> np.ndarray:
    """``n`` random crops at ``size`` px of the photos in ``folder`` (else the bundled ones):
    what calibrates in-silico noise."""
    return random_crops(load_photos(folder), n, size, seed=seed)


def session_references(folder: str | None, size: int, seed: int = 0) -> np.ndarray:
    """The reference images a rig session shows: each photo of ``folder`` once (its centre
    square), or :data:`BUNDLED_REFERENCES` crops of the bundled photographs."""
    if folder is None:
        return reference_crops(size, BUNDLED_REFERENCES, seed=seed)
    return centre_squares(load_photos(folder), size)
