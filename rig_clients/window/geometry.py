"""Where on the screen a stimulus goes: degrees of visual angle to pixels.

A monitor profile says how far the eye is from the screen and how large the screen is; from
it an image of ``size_deg`` centred ``position_deg`` from the fixation point (the screen's
centre) covers an exact rectangle of pixels. Sizes use the full visual angle of the image
(``2 d tan(size / 2)``) and positions the angle of the image's centre (``d tan(x)``), so a
large or far-out image is placed as the eye sees it, not by a small-angle approximation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import ConfigError


class MonitorProfile(BaseModel):
    """The rig's display as measured by the lab: ``--monitor FILE`` (JSON with these keys).

    ``refresh_hz`` is what the lab expects; the presenter measures the real rate at start
    and refuses to run when the two disagree by more than 10 %."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Eye to screen, along the line of sight to the fixation point.
    distance_cm: float = Field(default=57.0, gt=0, le=1000)
    #: Width of the visible image area (not the bezel).
    width_cm: float = Field(default=53.0, gt=0, le=1000)
    #: The monitor's pixels across and down, which with ``width_cm`` give its pixel density
    #: (also the window's size when neither full screen nor given one).
    resolution: tuple[int, int] = (1920, 1080)
    refresh_hz: float | None = Field(default=None, gt=0, le=1000)

    @classmethod
    def load(cls, path: str | Path) -> MonitorProfile:
        """The profile in ``path``, or a ConfigError naming what is wrong with it."""
        try:
            return cls.model_validate(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, ValidationError) as exc:
            raise ConfigError(f"monitor profile {path}: {exc}") from None

    @property
    def pixels_per_cm(self) -> float:
        return self.resolution[0] / self.width_cm

    def pixels(self, degrees: float) -> float:
        """The on-screen extent, in pixels, of something ``degrees`` across at fixation."""
        return 2 * self.distance_cm * math.tan(math.radians(degrees) / 2) * self.pixels_per_cm

    def offset(self, degrees: float) -> float:
        """Pixels from the screen's centre to a point ``degrees`` away from fixation."""
        return self.distance_cm * math.tan(math.radians(degrees)) * self.pixels_per_cm


@dataclass(frozen=True)
class Rect:
    """A rectangle in window pixels, origin at the bottom left (OpenGL's convention)."""

    x: int
    y: int
    width: int
    height: int


def stimulus_rect(
    profile: MonitorProfile,
    window: tuple[int, int],
    size_deg: float,
    position_deg: tuple[float, float],
) -> Rect:
    """The square an image of ``size_deg`` covers, centred ``position_deg`` (x right, y up)
    from the centre of a ``window`` (width, height) in pixels; rounded to whole pixels. Its
    side and offset come from the monitor's pixel density alone: a smaller window crops
    the view, it does not shrink what is in it."""
    side = max(1, round(profile.pixels(size_deg)))
    cx = window[0] / 2 + profile.offset(position_deg[0])
    cy = window[1] / 2 + profile.offset(position_deg[1])
    return Rect(round(cx - side / 2), round(cy - side / 2), side, side)


#: Corners for the photodiode patch, as named on the command line.
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def corner_rect(window: tuple[int, int], corner: str, side: int) -> Rect:
    """A ``side``-pixel square in ``corner`` of a ``window`` (width, height)."""
    if corner not in CORNERS:
        raise ConfigError(f"photodiode corner must be one of {', '.join(CORNERS)}, got {corner!r}")
    x = 0 if corner.endswith("left") else window[0] - side
    y = 0 if corner.startswith("bottom") else window[1] - side
    return Rect(x, y, side, side)
