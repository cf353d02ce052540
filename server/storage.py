"""One HDF5 file per session: configuration, every generation, and the optimizer's state.

Layout (all under the file root)::

    attrs: format, config (JSON), status (running | finished | aborted), created, updated
    generations/index     (images,)            int32   generation of each image
    generations/codes     (images, code_dim)   float32
    generations/images    (images, H, W, 3)    uint8, gzip, one chunk per image
    generations/scores    (images,)            float64, NaN = no response
    generations/<extra>   (images, ...)        e.g. noiseless activations in silico
    timings               (generations, k)     float64, column names in attrs["columns"]
    optimizer/            latest optimizer state: arrays as datasets, scalars as attrs

Datasets grow along their first axis, and the file is flushed after every generation, so
what is on disk between generations is a complete file: a crash loses at most the generation
in flight. h5py serialises all calls behind one lock: callers in an event loop must write
from a worker thread.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from protocol.errors import ConfigError
from server.engine import GenerationResult

FORMAT = "xdream-rig session 1"
_TIMING_COLUMNS = ("ask_s", "generate_s", "score_s", "tell_s", "store_s")


def _append(group: h5py.Group, name: str, rows: np.ndarray, **create: Any) -> None:
    rows = np.asarray(rows)
    if name not in group:
        group.create_dataset(
            name,
            data=rows,
            maxshape=(None, *rows.shape[1:]),
            chunks=(max(1, min(len(rows), 1024 if rows.ndim == 1 else 1)), *rows.shape[1:]),
            **create,
        )
        return
    ds = group[name]
    ds.resize(ds.shape[0] + len(rows), axis=0)
    ds[-len(rows) :] = rows


def write_state(group: h5py.Group, state: dict[str, Any]) -> None:
    """Replace ``group``'s contents with ``state`` (arrays -> datasets, the rest -> attrs)."""
    for key in list(group):
        del group[key]
    for key in list(group.attrs):
        del group.attrs[key]
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
        else:
            group.attrs[key] = value


def read_state(group: h5py.Group) -> dict[str, Any]:
    """Inverse of :func:`write_state`."""
    state: dict[str, Any] = {key: group[key][()] for key in group}
    for key, value in group.attrs.items():
        state[key] = value.item() if isinstance(value, np.generic) else value
    return state


class SessionFile:
    """Writer for one session's HDF5 file (the only process with it open while it runs)."""

    def __init__(self, path: Path, config: dict[str, Any], overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise ConfigError(f"{self.path} already exists; choose a new --out directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        now = time.time()
        self._file.attrs.update(
            format=FORMAT, config=json.dumps(config), status="running", created=now, updated=now
        )
        self._file.create_group("generations")
        self._file.flush()

    def write_generation(self, result: GenerationResult, optimizer_state: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        g = self._file["generations"]
        n = len(result.scores)
        _append(g, "index", np.full(n, result.index, dtype=np.int32))
        _append(g, "codes", result.codes.astype(np.float32))
        _append(g, "images", result.images, compression="gzip", compression_opts=1)
        _append(g, "scores", result.scores.astype(np.float64))
        for name, values in result.extra.items():
            _append(g, name, np.asarray(values))
        write_state(self._file.require_group("optimizer"), optimizer_state)
        timings = dict(result.timings, store_s=time.perf_counter() - t0)
        first = "timings" not in self._file
        _append(
            self._file, "timings", np.array([[timings.get(c, np.nan) for c in _TIMING_COLUMNS]])
        )
        if first:
            self._file["timings"].attrs["columns"] = list(_TIMING_COLUMNS)
        self._file.attrs["updated"] = time.time()
        self._file.flush()

    def close(self, status: str) -> None:
        """Mark the session ``finished`` or ``aborted`` and close the file."""
        if self._file.id.valid:
            self._file.attrs["status"] = status
            self._file.attrs["updated"] = time.time()
            self._file.close()
