"""Run under a display (the Xvfb of tests/rig_clients/test_window.py): one block through the
window presenter's real trial loop and screen, with every frame read back from the GL back
buffer just before its flip. Prints JSON: per frame the photodiode patch's grey level and the
trial it belongs to, the reports the presenter made, and how many frames the presenter read
back itself for its snapshots (saved in the folder given).

Only the server side is stood in for (``Recorded`` takes the reports), so that the frames
can be counted without a network in between: the whole path with a real server is the
end-to-end test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from protocol.messages import PresentationParams, Stimulus
from rig_clients.presenter import Block
from rig_clients.window.display import WindowPresenter
from rig_clients.window.geometry import MonitorProfile
from rig_clients.window.screen import Look, Screen
from rig_clients.window.timing import Pacer

PROFILE = MonitorProfile(distance_cm=57, width_cm=40, resolution=(800, 600))
LOOK = Look(photodiode="bottom-left", photodiode_px=30, fixation_deg=0.5, fixation_rgb=(255, 0, 0))
PARAMS = PresentationParams(on_ms=100, off_ms=50, size_deg=4.0, position_deg=(5.0, -2.0))
HZ = 60.0


def test_image() -> np.ndarray:
    """Top half yellow, bottom half blue: shows size, position and which way is up."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[:16] = (255, 255, 0)
    image[16:] = (0, 0, 255)
    return image


class Recorded:
    """Takes the presenter's reports (in place of a connection to the server)."""

    def __init__(self) -> None:
        self.reports: list[dict] = []
        self.connection = self

    def keep_alive(self) -> None:
        pass

    def report(self, block: Block, presentations: list) -> None:
        self.reports += [p.model_dump() for p in presentations]


def main(out: Path) -> None:
    screen = Screen(PROFILE, LOOK, before_flip=Pacer(HZ).wait)
    frames: list[dict] = []
    flip, capture = screen.flip, screen.capture
    snapshots = [0]

    def counted_flip() -> float:
        frame = capture()
        frames.append({"patch": int(frame[-5, 5, 0]), "trials": len(recorded.reports)})
        return flip()

    def counted_capture() -> np.ndarray:
        snapshots[0] += 1
        return capture()

    screen.flip = counted_flip  # type: ignore[method-assign]
    screen.capture = counted_capture  # type: ignore[method-assign]
    recorded = Recorded()
    stimuli = [
        Stimulus(stimulus_id="g0-e0", buffer=0, repeats=2),
        Stimulus(stimulus_id="g0-e1", buffer=1),
    ]
    block = Block("s1", 0, 0, stimuli, [test_image(), test_image()], PARAMS)
    window = WindowPresenter(recorded, screen, PROFILE, HZ, seed=3, snapshots=out)  # type: ignore[arg-type]
    window.present(block)
    screen.close()
    print(json.dumps({
        "frames": frames, "reports": recorded.reports, "size": screen.size,
        "snapshot_reads": snapshots[0],
    }))  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
