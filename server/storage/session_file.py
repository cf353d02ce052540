"""One HDF5 file per session: configuration, every generation, every response, events.

Layout (all under the file root)::

    attrs: format, config (JSON), status, created, updated
    generations/index     (images,)            int32   generation of each image
    generations/codes     (images, code_dim)   float32
    generations/images    (images, H, W, 3)    uint8, gzip, one chunk per image
    generations/scores    (images,)            float64, NaN = no response
    generations/<extra>   (images, ...)        e.g. noiseless activations, responses counted
    timings               (generations, k)     float64, column names in attrs["columns"]:
                          ask, generate, score (in silico: the neuron; on a rig: first
                          block sent to last response), tell, store; seconds
    optimizer/            state after the last complete generation (arrays -> datasets);
                          written last, so its ``generation`` counts the complete ones
    references/images     (refs, H, W, 3)      the session's natural reference images
    references/generation, /index, /score      one row per reference shown and scored
    presentations/...     one row per reported presentation (rig onset, outcome, block)
    responses/...         one row per accepted response (counts per channel, rig windows)
    late_responses/...    responses that arrived after their generation completed
    events/...            time, generation, kind, detail (JSON): the session's log

Tables grow along their first axis and the file is flushed after every write the server
acknowledges, so what is on disk is always a readable file: a crash (even ``kill -9``) loses
at most the generation in flight, never an acknowledged response. h5py serialises all calls
behind one lock: callers in an event loop must write from a worker thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from protocol.errors import ConfigError
from server.engine.loop import GenerationResult

FORMAT = "xdream-rig session 1"
_TIMING_COLUMNS = ("ask_s", "generate_s", "score_s", "tell_s", "store_s")
_STR = h5py.string_dtype()
T = TypeVar("T")


def _append(group: h5py.Group, name: str, rows: Any, **create: Any) -> None:
    """Append ``rows`` to dataset ``name`` (created resizable on first use)."""
    rows = np.asarray(rows)
    if rows.dtype.kind in "UO":  # text: stored as variable-length UTF-8
        rows = rows.astype(object)
        create.setdefault("dtype", _STR)
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


def _append_table(group: h5py.Group, columns: dict[str, Any]) -> None:
    """Append rows to a table stored as one dataset per column (equal lengths)."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"table columns differ in length: {lengths}")
    if lengths == {0}:
        return
    for name, values in columns.items():
        _append(group, name, values)


def _read_table(
    group: h5py.Group | None,
    rows: np.ndarray | None = None,
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Columns of a table (strings decoded): all or those named, all rows or those a mask
    selects."""
    if group is None:
        return {}
    out: dict[str, Any] = {}
    for name, ds in group.items():
        if columns is not None and name not in columns:
            continue
        values = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
        out[name] = values if rows is None else values[rows]
    return out


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

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        overwrite: bool = False,
        status: str = "running",
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise ConfigError(f"{self.path} already exists; choose a new --out directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        now = time.time()
        self._file.attrs.update(
            format=FORMAT, config=json.dumps(config), status=status, created=now, updated=now
        )
        self._file.create_group("generations")
        self._file.flush()

    @classmethod
    def reopen(cls, path: Path, mode: str = "r+") -> SessionFile:
        """Open an existing session file: ``r+`` to continue it (e.g. after a server
        restart), ``r`` to read a closed one."""
        self = cls.__new__(cls)
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, mode)
        except OSError as exc:
            raise ConfigError(f"{self.path} cannot be opened as a session file: {exc}") from None
        if self._file.attrs.get("format") != FORMAT:
            self._file.close()
            raise ConfigError(f"{self.path} is not an xdream-rig session file")
        return self

    # -- what a resumed session needs ---------------------------------------------------
    @property
    def is_open(self) -> bool:
        return bool(self._file.id.valid)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self._file.attrs["config"])

    @property
    def status(self) -> str:
        return str(self._file.attrs["status"])

    @property
    def created(self) -> float:
        """When the session was created (seconds since the epoch)."""
        return float(self._file.attrs["created"])

    def optimizer_state(self) -> dict[str, Any] | None:
        """The state after the last complete generation (None before the first)."""
        group = self._file.get("optimizer") or self._file.get("optimizer.new")
        return read_state(group) if group is not None and len(group.attrs) else None

    def generations_done(self) -> int:
        """Complete generations: those the saved optimizer state has been told about."""
        state = self.optimizer_state()
        return 0 if state is None else int(state["generation"])

    def drop_partial_generation(self, done: int) -> None:
        """Remove rows a crash left of generation ``done`` (written before its optimizer
        state was), so that the resumed session stores that generation exactly once."""
        g = self._file["generations"]
        if "index" in g:
            keep = int(np.sum(g["index"][()] < done))
            for ds in g.values():
                ds.resize(keep, axis=0)
        refs = self._file.get("references")
        if refs is not None and "generation" in refs:
            keep = int(np.sum(refs["generation"][()] < done))
            for name in ("generation", "index", "score"):
                refs[name].resize(keep, axis=0)
        if "timings" in self._file:
            self._file["timings"].resize(min(done, self._file["timings"].shape[0]), axis=0)
        self._touch_and_flush()

    def table(
        self, name: str, generation: int | None = None, columns: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """A table's columns (all, or those named: ``generations`` holds every image), all
        rows or only those of ``generation``."""
        group = self._file.get(name)
        if group is None or generation is None:
            return _read_table(group, columns=columns)
        return _read_table(group, group["generation"][()] == generation, columns)

    def references(self) -> np.ndarray | None:
        ds = self._file.get("references/images")
        return None if ds is None else ds[()]

    # -- writing ------------------------------------------------------------------------
    def _touch_and_flush(self) -> None:
        self._file.attrs["updated"] = time.time()
        self._file.flush()

    def flush(self) -> None:
        self._file.flush()

    def set_status(self, status: str) -> None:
        self._file.attrs["status"] = status
        self._touch_and_flush()

    def write_references(self, images: np.ndarray) -> None:
        self._file.require_group("references").create_dataset(
            "images",
            data=images,
            chunks=(1, *images.shape[1:]),
            compression="gzip",
            compression_opts=1,
        )
        self._touch_and_flush()

    def append_rows(self, table: str, columns: dict[str, Any]) -> None:
        """Append rows to ``table`` (presentations, responses, ...) and flush."""
        _append_table(self._file.require_group(table), columns)
        self._touch_and_flush()

    def log_event(self, kind: str, generation: int = -1, **detail: Any) -> None:
        self.append_rows(
            "events",
            {
                "time": [time.time()],
                "generation": np.array([generation], dtype=np.int32),
                "kind": [kind],
                "detail": [json.dumps(detail, default=str)],
            },
        )

    def write_generation(
        self,
        result: GenerationResult,
        optimizer_state: dict[str, Any],
        reference_scores: Sequence[tuple[int, float]] = (),
    ) -> None:
        """Store a complete generation, the optimizer state after it, and reference scores."""
        t0 = time.perf_counter()
        g = self._file["generations"]
        n = len(result.scores)
        _append(g, "index", np.full(n, result.index, dtype=np.int32))
        _append(g, "codes", result.codes.astype(np.float32))
        _append(g, "images", result.images, compression="gzip", compression_opts=1)
        _append(g, "scores", result.scores.astype(np.float64))
        for name, values in result.extra.items():
            _append(g, name, np.asarray(values))
        if reference_scores:
            _append_table(
                self._file.require_group("references"),
                {
                    "generation": np.full(len(reference_scores), result.index, dtype=np.int32),
                    "index": np.array([i for i, _ in reference_scores], dtype=np.int32),
                    "score": np.array([s for _, s in reference_scores], dtype=np.float64),
                },
            )
        timings = dict(result.timings, store_s=time.perf_counter() - t0)
        first = "timings" not in self._file
        _append(
            self._file, "timings", np.array([[timings.get(c, np.nan) for c in _TIMING_COLUMNS]])
        )
        if first:
            self._file["timings"].attrs["columns"] = list(_TIMING_COLUMNS)
        self._write_optimizer_state(optimizer_state)
        self._touch_and_flush()

    def _write_optimizer_state(self, state: dict[str, Any]) -> None:
        """Written last and swapped in whole: the saved state marks a generation complete."""
        if "optimizer.new" in self._file:
            del self._file["optimizer.new"]
        write_state(self._file.create_group("optimizer.new"), state)
        if "optimizer" in self._file:
            del self._file["optimizer"]
        self._file.move("optimizer.new", "optimizer")

    def read_image(self, generation: int, position: int) -> np.ndarray:
        """Image ``position`` of ``generation`` (ConfigError if it is not stored)."""
        g = self._file["generations"]
        if "index" not in g:
            raise ConfigError(f"generation {generation} is not stored")
        rows = np.flatnonzero(g["index"][()] == generation)
        if not 0 <= position < len(rows):
            raise ConfigError(f"generation {generation} has no image {position}")
        return g["images"][rows[position]]

    def best(self) -> tuple[int, float, np.ndarray] | None:
        """Generation, score and image of the best-scored image so far."""
        g = self._file["generations"]
        if "scores" not in g:
            return None
        scores = g["scores"][()]
        if np.isnan(scores).all():
            return None
        row = int(np.nanargmax(scores))
        return int(g["index"][row]), float(scores[row]), g["images"][row]

    def best_per_generation(self) -> list[tuple[int, float, np.ndarray]]:
        """Generation, score and image of each generation's best image (unscored ones left
        out), in generation order."""
        g = self._file["generations"]
        if "scores" not in g:
            return []
        index, scores = g["index"][()], g["scores"][()]
        rows = []
        for generation in np.unique(index):
            mine = np.flatnonzero((index == generation) & ~np.isnan(scores))
            if mine.size:
                row = int(mine[np.argmax(scores[mine])])
                rows.append((int(generation), float(scores[row]), g["images"][row]))
        return rows

    def close(self, status: str | None = None) -> None:
        """Close the file, first marking it ``status`` (e.g. finished, aborted) if given."""
        if self._file.id.valid:
            if status is not None:
                self._file.attrs["status"] = status
                self._file.attrs["updated"] = time.time()
            self._file.close()


def rows(table: dict[str, Any], *columns: str) -> Iterator[tuple[Any, ...]]:
    """The rows of a table read by :meth:`SessionFile.table`, as tuples of ``columns``
    (none if the table does not exist yet)."""
    return zip(*(table.get(name, []) for name in columns), strict=True)


def read_closed(path: Path, fn: Callable[[SessionFile], T]) -> T:
    """``fn(store)`` on a read-only handle of a session file no writer holds open."""
    store = SessionFile.reopen(path, mode="r")
    try:
        return fn(store)
    finally:
        store.close()
