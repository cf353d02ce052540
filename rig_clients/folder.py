"""``xdream present --folder DIR``: exchange blocks through files, as MonkeyLogic rigs did.

For every block the server sends, this writes into ``DIR``:

- ``block{NNN}_{KKK}_{stimulus_id}.png``: the images (NNN counts blocks from 1, KKK the
  image within the block from 1), the naming of the reference XDream;
- ``block{NNN}.json``: session, generation, presentation parameters, and per image its file,
  stimulus id, kind and how many presentations are wanted.

The rig shows the images and writes ``block{NNN}.mat`` (MATLAB ``save -v7.3``, which is HDF5)
or ``block{NNN}.h5`` with two variables: ``stimulusID``, the file name shown in each trial
(a cell array of strings; a name appears once per presentation), and ``tEvokedResp``, the
spike counts, trials x channels. The counts go to the server as responses; then the block's
files move to ``DIR/done``. Like the reference XDream there is no timeout on the rig's side:
the server re-presents stimuli whose responses do not come.

Needs the ``folder`` extra (h5py to read MATLAB v7.3 files, Pillow to write PNG).
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from protocol.errors import ConfigError
from protocol.messages import Response
from rig_clients.connection import Connection, RequestFailed
from rig_clients.presenter import Block, Presenter
from rig_clients.recorder import Recorder

log = logging.getLogger(__name__)


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"folder mode needs {module}: pip install 'xdream-rig[folder]'") from None


def image_name(number: int, position: int, stimulus_id: str) -> str:
    return f"block{number:03d}_{position:03d}_{stimulus_id}.png"


def write_block(folder: Path, number: int, block: Block) -> dict[str, Any]:
    """Write the block's images and manifest; returns the manifest."""
    _require("PIL.Image")
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    stimuli = []
    for position, (stimulus, image) in enumerate(
        zip(block.stimuli, block.images, strict=True), start=1
    ):
        name = image_name(number, position, stimulus.stimulus_id)
        Image.fromarray(np.asarray(image)).save(folder / name)
        stimuli.append(
            {
                "file": name,
                "stimulus_id": stimulus.stimulus_id,
                "kind": stimulus.kind,
                "repeats": stimulus.repeats,
            }
        )
    manifest = {
        "session": block.session,
        "generation": block.generation,
        "block": block.block,
        "params": block.params.model_dump(mode="json"),
        "stimuli": stimuli,
    }
    tmp = folder / f"block{number:03d}.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(folder / f"block{number:03d}.json")  # appears whole, never half-written
    return manifest


def _strings(file: Any, dataset: Any) -> list[str]:
    """``stimulusID`` as Python strings, from a MATLAB cell array or an HDF5 string array."""
    import h5py

    values = dataset[()]
    if h5py.check_ref_dtype(dataset.dtype) is not None:  # MATLAB cell: refs to uint16 chars
        return ["".join(map(chr, np.asarray(file[ref][()]).ravel())) for ref in values.ravel()]
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return [str(v) for v in dataset.asstr()[()].ravel()]
    if values.dtype == np.uint16:  # a single MATLAB char array (one name)
        return ["".join(map(chr, values.ravel()))]
    raise ConfigError(f"stimulusID has type {dataset.dtype}; expected strings")


def read_responses(path: Path) -> tuple[list[str], np.ndarray]:
    """File names and counts (trials x channels) from a ``.mat`` v7.3 or ``.h5`` file."""
    _require("h5py")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "stimulusID" not in f or "tEvokedResp" not in f:
                raise ConfigError(f"{path.name} needs variables stimulusID and tEvokedResp")
            names = _strings(f, f["stimulusID"])
            counts = np.atleast_2d(np.asarray(f["tEvokedResp"][()], dtype=np.float64))
    except OSError as exc:
        raise ConfigError(f"{path.name} is not readable as HDF5 / MATLAB v7.3: {exc}") from None
    n = len(names)
    # MATLAB writes column-major: trials x channels appears as channels x trials.
    matlab = path.suffix == ".mat"
    if counts.shape[0] == n and not (matlab and counts.shape[1] == n):
        pass
    elif counts.shape[1] == n:
        counts = counts.T
    else:
        raise ConfigError(f"{path.name}: {n} stimulusID entries but tEvokedResp {counts.shape}")
    return names, counts


def responses_for(manifest: dict[str, Any], names: list[str], counts: np.ndarray) -> list[Response]:
    """One response per trial; presentation ids count repeats of each file in the block."""
    by_file = {s["file"]: s["stimulus_id"] for s in manifest["stimuli"]}
    seen: collections.Counter[str] = collections.Counter()
    out = []
    for name, row in zip(names, counts, strict=True):
        file = Path(name).name
        if file not in by_file:
            raise ConfigError(f"response for {file}, which block {manifest['block']} did not show")
        stimulus_id = by_file[file]
        repeat = seen[file]
        seen[file] += 1
        out.append(
            Response(
                presentation_id=f"{stimulus_id}-b{manifest['block']}-r{repeat}",
                stimulus_id=stimulus_id,
                counts=row.tolist(),
            )
        )
    return out


class FolderRig:
    """Presenter and recorder in one, through an exchange folder."""

    def __init__(self, connection: Connection, folder: Path, poll_s: float = 0.2) -> None:
        self.presenter = Presenter(connection)
        self.recorder = Recorder(connection)
        self.folder = Path(folder)
        self.poll_s = poll_s
        self.number = self._next_number()
        self.queue: collections.deque[Block] = collections.deque()

    def _next_number(self) -> int:
        """Continue numbering after the blocks already in the folder (a restarted client)."""
        numbers = [
            int(p.stem[5:])
            for d in (self.folder, self.folder / "done")
            if d.is_dir()
            for p in d.glob("block*.json")
            if p.stem[5:].isdigit()
        ]
        return max(numbers, default=0) + 1

    def _wait_for_file(self, number: int, should_stop: Callable[[], bool]) -> Path | None:
        """The block's response file once complete; blocks arriving meanwhile are queued."""
        last_size = -1
        while not should_stop():
            for suffix in (".mat", ".h5"):
                path = self.folder / f"block{number:03d}{suffix}"
                if path.is_file():
                    size = path.stat().st_size
                    if size == last_size:  # unchanged for one poll: the writer is done
                        return path
                    last_size = size
            block = self.presenter.next_block(timeout_s=self.poll_s)
            if block is not None:
                self.queue.append(block)
        return None

    def _archive(self, number: int) -> None:
        done = self.folder / "done"
        done.mkdir(exist_ok=True)
        for path in self.folder.glob(f"block{number:03d}*"):
            shutil.move(str(path), done / path.name)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        while not should_stop():
            block = self.queue.popleft() if self.queue else self.presenter.next_block(0.5)
            if block is None:
                continue
            number, self.number = self.number, self.number + 1
            manifest = write_block(self.folder, number, block)
            log.info(
                "block %03d: generation %d, %d images", number, block.generation, len(block.stimuli)
            )
            path = self._wait_for_file(number, should_stop)
            if path is None:
                return
            try:
                responses = responses_for(manifest, *read_responses(path))
                ack = self.recorder.send(block.session, block.generation, responses)
                log.info("block %03d: %d responses accepted", number, ack.accepted)
            except (ConfigError, RequestFailed) as exc:
                log.error("block %03d: %s", number, exc)
            self._archive(number)


def main(folder: str, connection: Connection) -> int:
    """Exchange blocks through ``folder`` over ``connection`` until interrupted."""
    _require("h5py")
    _require("PIL.Image")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    connection.connect()
    try:
        FolderRig(connection, Path(folder)).run()
    finally:
        connection.close()
    return 0
