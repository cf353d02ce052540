"""Images over HTTP: encoded on a worker thread (PNG or JPEG encoding of a large image takes
tens of milliseconds, which would stall every other request and the live stream), with
cache headers that let browsers keep what never changes.
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi.responses import Response

if TYPE_CHECKING:
    from PIL.Image import Image as Picture

#: Images of finished generations are immutable: browsers may keep them.
IMAGE_CACHE = "private, max-age=86400"
#: Thumbnails are JPEG: a third of PNG's encoding time, for a picture only to look at.
THUMBNAIL_QUALITY = 90

Kind = Literal["png", "jpeg"]


def binary(media_type: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry saying that the 200 answer is a ``media_type`` file. (Routes
    that use it keep ``response_class=Response``: a response class with its own media type
    would make FastAPI list the JSON error bodies under that media type too.)"""
    schema = {"type": "string", "format": "binary"}
    return {200: {"content": {media_type: {"schema": schema}}}}


def encode(image: np.ndarray | Picture, size: int | None = None, kind: Kind = "png") -> bytes:
    """PNG (lossless) or JPEG bytes of a uint8 image array or a PIL image, scaled to
    ``size`` px if given."""
    from PIL import Image  # only the HTTP side needs Pillow at import time

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if size is not None and size != picture.width:
        picture = picture.resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    options = {"quality": THUMBNAIL_QUALITY} if kind == "jpeg" else {}
    picture.save(buffer, format=kind.upper(), **options)
    return buffer.getvalue()


def image_response(
    data: bytes, kind: Kind = "png", cache: bool = False, filename: str | None = None
) -> Response:
    """``data`` as an image answer; ``cache`` for images that can never change;
    ``filename``: the name a browser saves it under (shown inline all the same)."""
    headers = {"Cache-Control": IMAGE_CACHE if cache else "no-store"}
    if filename is not None:
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return Response(data, media_type=f"image/{kind}", headers=headers)


async def respond(
    image: np.ndarray | Picture,
    size: int | None = None,
    kind: Kind = "png",
    cache: bool = False,
    filename: str | None = None,
) -> Response:
    """``image`` encoded off the event loop, as an answer."""
    data = await asyncio.to_thread(encode, image, size, kind)
    return image_response(data, kind, cache, filename)
