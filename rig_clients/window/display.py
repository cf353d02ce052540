"""The window presenter's trial loop: each block's presentations in random order, each
stimulus on for a whole number of frames and off for another, every onset the flip time of
its first stimulus frame, reported to the server trial by trial.

Each trial is reported as soon as its blank is over, with ``onset`` (first stimulus frame on
screen), ``offset`` (first blank frame), ``frames`` (stimulus frames shown) and
``dropped_frames`` (frames the display missed from the trial's first flip to its last:
the stimulus or the blank lasted longer than asked). With LSL markers on, the onset is also
published on the marker stream, stamped with the same flip time, for an LSL recorder.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocol.messages import Presentation
from rig_clients.connection import Connection
from rig_clients.lsl_markers import MarkerOutlet, require_pylsl
from rig_clients.presenter import Block, Presenter
from rig_clients.window.geometry import MonitorProfile, stimulus_rect
from rig_clients.window.screen import Look, Screen
from rig_clients.window.timing import Pacer, check_rate, dropped_frames, frames_for, measure_rate

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One presentation: which stimulus, which repeat, and its image's texture."""

    stimulus_id: str
    presentation_id: str
    texture: Any
    flips: list[float] = field(default_factory=list)


def trials_of(block: Block, textures: list[Any], rng: random.Random) -> list[Trial]:
    """Every presentation the block asks for (each stimulus ``repeats`` times), shuffled so
    that no image's position in the block is systematic."""
    trials = [
        Trial(s.stimulus_id, block.presentation_id(s.stimulus_id, r), texture)
        for s, texture in zip(block.stimuli, textures, strict=True)
        for r in range(s.repeats)
    ]
    rng.shuffle(trials)
    return trials


class WindowPresenter:
    """Shows blocks from ``presenter`` on ``screen``, counting frames at ``hz``."""

    def __init__(
        self,
        presenter: Presenter,
        screen: Screen,
        profile: MonitorProfile,
        hz: float,
        markers: MarkerOutlet | None = None,
        seed: int | None = None,
        snapshots: Path | None = None,
    ) -> None:
        self.presenter = presenter
        self.screen = screen
        self.profile = profile
        self.hz = hz
        self.markers = markers
        self.rng = random.Random(seed)
        #: Where to save the first stimulus frame and the first blank frame of the first
        #: block (PNG), so the operator can check the patch, size and position; None: don't.
        self.snapshots = snapshots
        self._captured: dict[str, np.ndarray] = {}
        self._saved = False
        self._last_flip: float | None = None
        #: Trials presented and frames dropped since the start.
        self.shown = 0
        self.dropped = 0

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Present blocks until the window is closed (Escape) or ``until()``; a blank
        screen with a black patch in between."""
        while not self.screen.closed and not until():
            block = self.presenter.next_block(timeout_s=0.02)
            if block is None:
                self.screen.draw(None, None)
                self._last_flip = None  # waiting between blocks is not a dropped frame
                self.screen.flip()
                continue
            self.present(block)

    def present(self, block: Block) -> None:
        """Show every trial of ``block`` and report each as it ends."""
        params = block.params
        rect = stimulus_rect(self.profile, self.screen.size, params.size_deg, params.position_deg)
        on = frames_for(params.on_ms, self.hz, at_least=1)
        off = frames_for(params.off_ms, self.hz)
        textures = [self.screen.texture(image) for image in block.images]
        self._last_flip = None  # uploading the textures is not a dropped frame
        log.info(
            "block %d of generation %d: %d images, %d frames on, %d off, %d px at (%d, %d)",
            block.block, block.generation, len(textures), on, off, rect.width, rect.x, rect.y,
        )  # fmt: skip
        for trial in trials_of(block, textures, self.rng):
            if self.screen.closed:
                break  # what was not shown is shown again by the server
            self._show(block, trial, rect, on, off)
        self._save_snapshots()

    def _show(self, block: Block, trial: Trial, rect: Any, on: int, off: int) -> None:
        # At least one blank frame: its flip is the trial's offset.
        for frame in range(on + max(off, 1)):
            stimulus = frame < on
            self.screen.draw(trial.texture if stimulus else None, rect if stimulus else None)
            if frame in (0, on) and self.snapshots is not None:
                name = "stimulus" if stimulus else "blank"
                if name not in self._captured:  # once: reading back stalls the frame's GPU work
                    self._captured[name] = self.screen.capture()
            trial.flips.append(self.screen.flip())
            if frame == 0 and self.markers is not None:
                self.markers.onset(
                    block.session, block.generation, trial.presentation_id, trial.stimulus_id,
                    trial.flips[0],
                )  # fmt: skip
            self.presenter.connection.keep_alive()
        # From the previous trial's last flip: a late onset is a blank that lasted too long.
        flips = ([self._last_flip] if self._last_flip is not None else []) + trial.flips
        dropped = dropped_frames(flips, 1.0 / self.hz)
        self._last_flip = trial.flips[-1]
        self.shown += 1
        self.dropped += dropped
        if dropped:
            log.warning("trial %s: %d dropped frames", trial.presentation_id, dropped)
        self.presenter.report(
            block,
            [
                Presentation(
                    presentation_id=trial.presentation_id, stimulus_id=trial.stimulus_id,
                    onset=trial.flips[0], outcome="ok", offset=trial.flips[on], frames=on,
                    dropped_frames=dropped,
                )
            ],
        )  # fmt: skip

    def _save_snapshots(self) -> None:
        """Write the frames captured during the block (after it: saving takes longer than a
        frame), once per run."""
        if self.snapshots is None or self._saved:
            return
        from PIL import Image

        self.snapshots.mkdir(parents=True, exist_ok=True)
        for name, frame in self._captured.items():
            Image.fromarray(frame).save(self.snapshots / f"{name}.png")
        self._saved = bool(self._captured)


def main(
    connection: Connection,
    profile: MonitorProfile,
    look: Look,
    fullscreen: bool = False,
    screen_index: int = 0,
    size: tuple[int, int] | None = None,
    pace_hz: float | None = None,
    lsl_markers: bool = False,
    seed: int | None = None,
    snapshots: Path | None = None,
) -> int:
    """``xdream present --window``: open the window (``size``, or the profile's resolution;
    the whole screen when ``fullscreen``), measure the refresh rate, and present until the
    window is closed or Escape is pressed. With ``lsl_markers`` every time is in LSL's
    clock, the one an LSL recorder counts spikes in."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    markers: MarkerOutlet | None = None
    clock: Callable[[], float] = time.perf_counter
    if lsl_markers:
        markers = MarkerOutlet(source_id=f"xdream-window-{connection.hello.name}")
        clock = require_pylsl().local_clock
    pacer = Pacer(pace_hz, clock) if pace_hz is not None else None
    screen = Screen(profile, look, fullscreen, screen_index, clock,
                    before_flip=pacer.wait if pacer is not None else None, size=size)  # fmt: skip
    try:
        if fullscreen and screen.size != profile.resolution:
            # Degrees become pixels by the profile's resolution: another mode, other sizes.
            log.warning(
                "the screen is %dx%d but the monitor profile says %dx%d: images will not "
                "have the sizes asked for; fix the display mode or the profile",
                *screen.size, *profile.resolution,
            )  # fmt: skip

        def blank() -> float:
            screen.draw(None, None)
            return screen.flip()

        hz = check_rate(measure_rate(blank), pace_hz or profile.refresh_hz)
        log.info("display %dx%d at %.2f Hz (%s)", *screen.size, hz,
                 "paced in software" if pacer else "vsync")  # fmt: skip
        connection.connect()
        try:
            window = WindowPresenter(Presenter(connection), screen, profile, hz, markers, seed,
                                     snapshots)  # fmt: skip
            window.run()
            log.info("%d trials shown, %d frames dropped", window.shown, window.dropped)
        finally:
            connection.close()
    finally:
        screen.close()
        if markers is not None:
            markers.close()
    return 0
