"""One window on the rig's display, and what each frame shows: the stimulus (or nothing) on
a grey background, the photodiode patch (white on stimulus frames, black otherwise) and an
optional fixation point. pyglet is imported here only, so the rest of the presenter can be
used and tested without a display.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocol.errors import ConfigError
from rig_clients.window.geometry import CORNERS, MonitorProfile, Rect, corner_rect


@dataclass(frozen=True)
class Look:
    """How frames look, beyond the stimulus itself."""

    #: Background grey level, 0-255 (mid-grey keeps mean luminance between images).
    background: int = 128
    #: Corner of the photodiode patch, or None for no patch.
    photodiode: str | None = "bottom-left"
    #: Side of the patch in pixels (the sensor's size on the glass).
    photodiode_px: int = 40
    #: Diameter of the fixation point in degrees, or None for none.
    fixation_deg: float | None = None
    #: Its colour, RGB.
    fixation_rgb: tuple[int, int, int] = (255, 0, 0)

    def __post_init__(self) -> None:
        if self.photodiode is not None and self.photodiode not in CORNERS:
            raise ConfigError(f"photodiode corner must be one of {', '.join(CORNERS)}")
        if not 0 <= self.background <= 255:
            raise ConfigError(f"background must be a grey level 0-255, got {self.background}")


def _pyglet() -> Any:
    try:
        import pyglet
    except ImportError:
        raise ConfigError(
            "the window presenter needs pyglet: pip install 'xdream-rig[window]'"
        ) from None
    try:
        pyglet.display.get_display()
    except Exception as exc:  # pyglet raises its own NoSuchDisplayException
        raise ConfigError(f"no display to open a window on ({exc}); set DISPLAY") from None
    return pyglet


class Screen:
    """A pyglet window that draws frames and flips them, timestamping each flip with
    ``clock`` (the rig clock the presenter reports onsets in).

    The window is ``size`` pixels (None: the profile's resolution) or, ``fullscreen``, the
    whole screen; either way ``profile`` alone says how many pixels a degree is, since the
    monitor's pixels do not change size with the window."""

    def __init__(
        self,
        profile: MonitorProfile,
        look: Look,
        fullscreen: bool = False,
        screen: int = 0,
        clock: Callable[[], float] = time.perf_counter,
        before_flip: Callable[[], None] | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        pyglet = self._pyglet = _pyglet()
        displays = pyglet.display.get_display().get_screens()
        if not 0 <= screen < len(displays):
            raise ConfigError(f"screen {screen} does not exist (this display has {len(displays)})")
        width, height = size or profile.resolution
        self.window = pyglet.window.Window(
            width=None if fullscreen else width,
            height=None if fullscreen else height,
            fullscreen=fullscreen,
            screen=displays[screen],
            vsync=True,
            caption="xdream-rig stimulus",
        )
        self.window.set_mouse_visible(False)
        self.size = (self.window.width, self.window.height)
        self.look = look
        self.closed = False
        self.window.push_handlers(on_close=self._on_close, on_key_press=self._on_key)
        self._clock = clock
        #: Called just before each flip (software pacing on displays without vsync).
        self._before_flip = before_flip
        self._batch = pyglet.graphics.Batch()
        self._patch = None
        if look.photodiode is not None:
            r = corner_rect(self.size, look.photodiode, look.photodiode_px)
            self._patch = pyglet.shapes.Rectangle(r.x, r.y, r.width, r.height, batch=self._batch)
        self._fixation = None
        if look.fixation_deg is not None:
            radius = max(1.0, profile.pixels(look.fixation_deg) / 2)
            cx, cy = self.size[0] / 2, self.size[1] / 2
            self._fixation = pyglet.shapes.Circle(
                cx, cy, radius, color=look.fixation_rgb, batch=self._batch
            )

    def _on_close(self) -> bool:
        self.closed = True
        return True

    def _on_key(self, symbol: int, modifiers: int) -> bool:
        if symbol == self._pyglet.window.key.ESCAPE:
            self.closed = True
        return True

    def texture(self, image: np.ndarray) -> Any:
        """A GPU texture of an (H, W, 3) uint8 image, rows top first (as the server sends)."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"images are (height, width, 3) uint8, got {image.shape}")
        h, w, _ = image.shape
        data = self._pyglet.image.ImageData(w, h, "RGB", image.tobytes(), pitch=-w * 3)
        texture = data.get_texture()
        gl = self._pyglet.gl
        gl.glBindTexture(texture.target, texture.id)
        for axis in (gl.GL_TEXTURE_WRAP_S, gl.GL_TEXTURE_WRAP_T):
            # Scaled, the edge must not blend with the opposite edge (GL's default repeats).
            gl.glTexParameteri(texture.target, axis, gl.GL_CLAMP_TO_EDGE)
        return texture

    def draw(self, texture: Any | None, rect: Rect | None) -> None:
        """Draw a frame into the back buffer: ``texture`` in ``rect`` (a stimulus frame), or
        the blank when ``texture`` is None."""
        self.window.switch_to()
        self.window.dispatch_events()
        grey = self.look.background / 255
        gl = self._pyglet.gl
        gl.glClearColor(grey, grey, grey, 1.0)
        self.window.clear()
        if texture is not None and rect is not None:
            texture.blit(rect.x, rect.y, width=rect.width, height=rect.height)
        if self._patch is not None:
            self._patch.color = (255, 255, 255) if texture is not None else (0, 0, 0)
        self._batch.draw()

    def flip(self) -> float:
        """Show the frame drawn; the clock when it is on screen (after the vertical blank,
        where the driver waits for one).

        The swap is only queued when ``flip`` returns: ``glFinish`` waits until the GPU has
        done it (PsychoPy's ``waitBlanking``), so the time read is not before the frame is
        on screen, where the photodiode sees it."""
        if self._before_flip is not None:
            self._before_flip()
        self.window.flip()
        self._pyglet.gl.glFinish()
        return self._clock()

    def capture(self) -> np.ndarray:
        """The frame drawn but not yet flipped, as an (H, W, 3) uint8 array, rows top first:
        what the photodiode and the animal are about to see."""
        gl = self._pyglet.gl
        w, h = self.size
        buffer = (ctypes.c_ubyte * (w * h * 3))()
        gl.glReadBuffer(gl.GL_BACK)
        gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
        gl.glReadPixels(0, 0, w, h, gl.GL_RGB, gl.GL_UNSIGNED_BYTE, buffer)
        return np.frombuffer(buffer, dtype=np.uint8).reshape(h, w, 3)[::-1].copy()

    def close(self) -> None:
        self.window.close()
