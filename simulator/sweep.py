"""``xdream sweep CONFIG``: a grid of in-silico evolutions (targets x configurations x
seeds), each one ``xdream evolve`` run, on a local process pool or a Ray cluster.

The grid is a JSON file::

    {"targets": ["efficientnet-lite0:_blocks.8:76", "efficientnet-lite1:_fc:5"],
     "configurations": [{"label": "cma", "generator": "fourier", "optimizer": "cmaes"},
                        {"label": "ga", "generator": "fourier", "optimizer": "ga"}],
     "seeds": [0, 1],
     "common": {"budget": 1000, "noise": "poisson:20", "image_size": 64}}

``common`` and each configuration hold :class:`~simulator.evolve.EvolveConfig` fields (a
configuration's win). With ``"ceiling": {}`` (or settings of its own: ``generator``,
``image_size``, ... and ``starts``, ``steps``, ``lr``), every target and seed also gets a
``white-box`` cell: the gradient ceiling (:mod:`simulator.ceiling`) with ``common``'s
generator, which the report holds each configuration against. Every finished cell is one
line of ``OUT/results.jsonl`` (the run's ``--json`` summary with its label, target and
seed), written as it finishes, so a sweep
that is stopped goes on where it was when started again: cells with a result are skipped,
cells that failed (their line carries ``error``: one whose worker died running it alone,
say) are run again, and so are cells whose
settings changed since their line (it keeps the settings it ran with). A cell's session
file and pictures are kept under ``OUT/runs/`` with ``keep_runs``; else only its line is.
On Ray, every node needs xdream-rig (with the server extra) installed, and the files a
grid names (exported or TorchScript models, image folders) at the same paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from multiprocessing import get_context
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocol.errors import ConfigError, one_line

RESULTS = "results.jsonl"
#: A configuration's label: also a folder name under OUT/runs.
LABEL = re.compile(r"[A-Za-z0-9._+-]+")
#: EvolveConfig fields a grid may set (``target``, ``seed`` and ``out`` are the sweep's).
_OWN = ("target", "seed", "out")
#: The label of the white-box ceiling's cells.
CEILING = "white-box"
#: What the ceiling takes of ``common``: the generator and the recording, not the search.
_CEILING_FIELDS = (
    "generator", "weights", "image_size", "input_size", "device", "references",
    "reference_folder", "network_weights", "generator_settings",
)  # fmt: skip


class SweepConfig(BaseModel):
    """The grid, as its JSON file says it."""

    model_config = ConfigDict(extra="forbid")

    targets: Annotated[list[str], Field(min_length=1)]
    configurations: Annotated[list[dict[str, Any]], Field(min_length=1)]
    seeds: Annotated[list[int], Field(min_length=1)] = [0]
    common: dict[str, Any] = {}
    #: Also the white-box ceiling of every target and seed (None: not run).
    ceiling: dict[str, Any] | None = None
    #: Keep each cell's session file and pictures (OUT/runs/...).
    keep_runs: bool = False

    @field_validator("configurations")
    @classmethod
    def _labelled(cls, configurations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        labels = [c.get("label") for c in configurations]
        if not all(isinstance(label, str) and LABEL.fullmatch(label) for label in labels):
            raise ValueError("every configuration needs a label of letters, digits and ._+-")
        if len(set(labels)) != len(labels):
            raise ValueError("configuration labels must differ")
        if CEILING in labels:
            raise ValueError(f"{CEILING!r} is the ceiling's label")
        return configurations

    @field_validator("targets", "seeds")
    @classmethod
    def _distinct(cls, values: list[Any]) -> list[Any]:
        if len(set(values)) != len(values):
            raise ValueError("must not repeat an entry (the same cell would run twice)")
        return values

    @classmethod
    def load(cls, path: str | Path) -> SweepConfig:
        """The grid of a JSON file; ConfigError saying what is wrong."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"sweep config {path}: {exc}") from None
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise ConfigError(f"sweep config {path}: {where}: {first['msg']}") from None
        try:  # every field known, before anything runs
            for configuration in config.configurations:
                config.settings_for(configuration)
            config.ceiling_settings()
        except ConfigError as exc:
            raise ConfigError(f"sweep config {path}: {exc}") from None
        return config

    def ceiling_settings(self) -> dict[str, Any] | None:
        """The ceiling cells' settings: ``common``'s generator and recording fields, with
        the ``ceiling``'s own and how it climbs (None: no ceiling)."""
        from simulator.ceiling import Climb

        if self.ceiling is None:
            return None
        climb = {f.name for f in fields(Climb)}
        unknown = sorted(set(self.ceiling) - set(_CEILING_FIELDS) - climb)
        if unknown:
            raise ConfigError(
                f"ceiling: unknown setting(s) {', '.join(unknown)}; it takes "
                f"{', '.join([*_CEILING_FIELDS, *sorted(climb)])}"
            )
        Climb(**{k: v for k, v in self.ceiling.items() if k in climb})  # checks them
        merged = {k: v for k, v in self.common.items() if k in _CEILING_FIELDS}
        merged.update(self.ceiling)
        if "generator" not in merged:
            raise ConfigError("ceiling: names no generator (in ceiling or common)")
        return merged

    def settings_for(self, configuration: dict[str, Any]) -> dict[str, Any]:
        """EvolveConfig fields of a configuration's cells (without target, seed and out)."""
        from simulator.evolve import EvolveConfig

        merged = {**self.common, **configuration}
        merged.pop("label")
        known = {f.name for f in fields(EvolveConfig)} - set(_OWN)
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ConfigError(
                f"configuration {configuration['label']!r}: unknown setting(s) "
                f"{', '.join(unknown)}; settings are xdream evolve's: {', '.join(sorted(known))}"
            )
        for needed in ("generator", "optimizer"):
            if needed not in merged:
                raise ConfigError(f"configuration {configuration['label']!r} names no {needed}")
        return merged


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    label: str
    target: str
    seed: int
    settings: tuple[tuple[str, Any], ...]

    @property
    def is_ceiling(self) -> bool:
        return self.label == CEILING

    def identity(self) -> dict[str, Any]:
        """What every line of this cell begins with: its key and the settings it ran with."""
        return {"label": self.label, "target": self.target, "seed": self.seed,
                "settings": dict(self.settings)}  # fmt: skip

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.label, self.target, self.seed)

    def done_by(self, row: dict[str, Any]) -> bool:
        """``row`` is this cell's result: same key, no error, the same settings."""
        same = (row.get("label"), row.get("target"), row.get("seed")) == self.key
        return same and "error" not in row and row.get("settings") == dict(self.settings)

    def folder(self, out: Path) -> Path:
        """Where the run writes (the target's colons and slashes made file-name safe)."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.target)
        return out / "runs" / self.label / safe / f"seed-{self.seed}"


def cells(config: SweepConfig) -> list[Cell]:
    """Every cell, configuration by configuration (the ceiling last), target by target,
    seed by seed."""
    grid = [(c["label"], config.settings_for(c)) for c in config.configurations]
    ceiling = config.ceiling_settings()
    if ceiling is not None:
        grid.append((CEILING, ceiling))
    return [
        Cell(label, target, seed, tuple(sorted(settings.items())))
        for label, settings in grid
        for target in config.targets
        for seed in config.seeds
    ]


def results(out: Path) -> list[dict[str, Any]]:
    """The lines of ``OUT/results.jsonl`` (a torn last line, from a kill, left out)."""
    path = out / RESULTS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def latest(config: SweepConfig, out: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Each cell's result (the last line that is one), by key: rows of cells no longer in
    the grid, failed ones and those of other settings left out."""
    by_key: dict[tuple[Any, ...], Cell] = {cell.key: cell for cell in cells(config)}
    found = {}
    for row in results(out):
        cell = by_key.get((row.get("label"), row.get("target"), row.get("seed")))
        if cell is not None and cell.done_by(row):
            found[cell.key] = row
    return found


def to_do(config: SweepConfig, out: Path) -> list[Cell]:
    """The cells without a result yet: failed ones again, and those whose settings changed
    since their result (a line keeps the settings it ran with)."""
    done = latest(config, out)
    return [cell for cell in cells(config) if cell.key not in done]


#: A worker's scratch folders in use (removed by its parent watch if the sweep dies).
_SCRATCH: set[Path] = set()


def run_cell(cell: Cell, out: str, keep: bool, torch_threads: int) -> dict[str, Any]:
    """Run one cell (in a worker): its summary line, or its error."""
    import torch

    from simulator import evolve

    if _STARTED is not None:  # put() writes at once: a worker killed next is still heard
        _STARTED.put(cell.key)
    torch.set_num_threads(torch_threads)
    scratch = None if keep else Path(tempfile.mkdtemp(prefix="xdream-sweep-"))
    if scratch is not None:
        _SCRATCH.add(scratch)
    folder = cell.folder(Path(out)) if scratch is None else scratch / "run"
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted run left
    key = cell.identity()
    try:
        if cell.is_ceiling:
            summary = _ceiling(cell)
        else:
            config = evolve.EvolveConfig(
                target=cell.target, seed=cell.seed, out=str(folder), **dict(cell.settings)
            )
            summary = evolve.run(evolve.prepare(config))
    except Exception as exc:  # one bad cell must not end a long sweep: its line says why
        return {**key, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            _SCRATCH.discard(scratch)
    if scratch is not None:
        summary.pop("data_file", None)
    return {**key, **summary}


def _ceiling(cell: Cell) -> dict[str, Any]:
    """A ceiling cell's summary (noiseless: the optimizer and noise are the evolutions')."""
    from simulator import evolve
    from simulator.ceiling import Climb, ceiling

    settings = dict(cell.settings)
    climb = Climb(**{f.name: settings.pop(f.name) for f in fields(Climb) if f.name in settings})
    config = evolve.EvolveConfig(  # no search, no file: optimizer and out go unused
        target=cell.target, seed=cell.seed, out="", optimizer="none", **settings
    )
    return ceiling(config, climb)


Runner = Callable[[list[Cell], Path, bool], Iterator[dict[str, Any]]]


def on_local_pool(workers: int) -> Runner:
    """Cells on ``workers`` processes (spawned: torch and fork do not mix), the machine's
    cores shared out among them. A worker that dies (killed, out of memory) takes the pool
    down with every cell in it: the cells that were running then run again one at a time,
    so that only a cell that kills its worker alone gets an error line, and the rest of the
    sweep goes on in a new pool."""

    def run(todo: list[Cell], out: Path, keep: bool) -> Iterator[dict[str, Any]]:
        threads = max(1, (os.cpu_count() or 1) // max(1, min(workers, len(todo))))
        remaining = list(todo)
        while remaining:
            n, before = min(workers, len(remaining)), len(remaining)
            running, remaining = yield from _on_pool(remaining, n, threads, out, keep)
            if not running and len(remaining) == before:  # broke before any cell began
                for cell in remaining:
                    yield {**cell.identity(), "error": _DIED}
                return
            for cell in running:  # back in either list if the pool broke again
                if any((yield from _on_pool([cell], 1, threads, out, keep))):
                    yield {**cell.identity(), "error": _DIED_ALONE}

    return run


_DIED = "BrokenProcessPool: a worker died before any cell began (killed, or out of memory)"
_DIED_ALONE = (
    "BrokenProcessPool: the worker died running this cell on its own (killed, or out of memory)"
)
#: Where a pool worker says which cell it begins (set by :func:`_worker`).
_STARTED: SimpleQueue | None = None


def _on_pool(
    todo: list[Cell], n: int, threads: int, out: Path, keep: bool
) -> Generator[dict[str, Any], None, tuple[list[Cell], list[Cell]]]:
    """Run ``todo`` on a pool of ``n`` workers, yielding each result as it comes. If a
    worker dies, the cells without a result come back: those that had begun, and the
    others (both empty when all ran)."""
    context = get_context("spawn")
    started: SimpleQueue = context.SimpleQueue()
    pool = ProcessPoolExecutor(
        n, mp_context=context, initializer=_worker, initargs=(os.getpid(), started)
    )
    began: set[tuple[str, str, int]] = set()
    try:
        futures: dict[Future, Cell] = {}
        try:
            for cell in todo:
                futures[pool.submit(run_cell, cell, str(out), keep, threads)] = cell
        except BrokenProcessPool:  # a worker died while the cells were handed out
            pass
        finished = set()
        for future in as_completed(futures):
            _drain(started, began)  # read as they come: a full pipe would block the workers
            if isinstance(future.exception(), BrokenProcessPool):
                break
            finished.add(futures[future].key)
            yield future.result()
        else:
            if len(futures) == len(todo):
                return [], []
        for future, cell in futures.items():  # those done before the pool broke
            if cell.key not in finished and future.exception() is None:
                finished.add(cell.key)
                yield future.result()
    finally:  # Ctrl-C or an error here: queued cells are not run for nothing
        pool.shutdown(wait=True, cancel_futures=True)
        _drain(started, began)
        started.close()
    left = [cell for cell in todo if cell.key not in finished]
    return [c for c in left if c.key in began], [c for c in left if c.key not in began]


def _drain(started: SimpleQueue, began: set[tuple[str, str, int]]) -> None:
    """Add the keys waiting in ``started`` to ``began``."""
    while not started.empty():
        began.add(started.get())


def _worker(sweep: int, started: SimpleQueue | None = None) -> None:
    """A pool worker leaves Ctrl-C to the ``sweep``'s own process, which stops the pool,
    and ends when that process is gone (killed, so it could not stop the pool): else it
    would run its cell on, unseen, taking a core from whatever runs next. It tells
    ``started`` which cell it begins."""
    global _STARTED
    _STARTED = started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(sweep,), daemon=True).start()


def _exit_with(parent: int, every: float = 1.0) -> None:
    """Exit this process, its scratch folders removed, once ``parent`` is not its parent
    (also when the sweep died before this worker started watching)."""
    while os.getppid() == parent:
        time.sleep(every)
    for scratch in list(_SCRATCH):
        shutil.rmtree(scratch, ignore_errors=True)
    os._exit(1)


def on_ray(address: str) -> Runner:
    """Cells as Ray tasks on the cluster at ``address`` (``local``: a Ray started here). A
    task whose worker dies is retried by Ray; one that still fails gets an error line."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'xdream-rig[cluster]'") from None

    def run(todo: list[Cell], out: Path, keep: bool) -> Iterator[dict[str, Any]]:
        if address == "local":  # no dashboard: it is a few more processes on a small machine
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=1)(run_cell)
            tasks = {remote.remote(cell, str(out), keep, 1): cell for cell in todo}
            pending = list(tasks)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                try:
                    yield ray.get(ready[0])
                except ray.exceptions.RayError as exc:  # its worker died, as Ray retried it
                    yield {**tasks[ready[0]].identity(), "error": one_line(exc)}
        finally:
            ray.shutdown()

    return run


def sweep(
    config: SweepConfig,
    out: Path,
    runner: Runner,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
) -> int:
    """Run the cells still to do, appending each result as it comes; how many failed. One
    sweep at a time writes to ``out`` (a second is refused)."""
    out = out.resolve()  # Ray workers and spawned processes may have another working folder
    out.mkdir(parents=True, exist_ok=True)
    with _only_writer(out):
        return _sweep(config, out, runner, progress)


@contextlib.contextmanager
def _only_writer(out: Path) -> Iterator[None]:
    """Hold ``OUT/.lock`` while the sweep runs (ConfigError if another sweep holds it)."""
    with (out / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another sweep is writing to {out}") from None
        yield


def _sweep(
    config: SweepConfig,
    out: Path,
    runner: Runner,
    progress: Callable[[dict[str, Any], int, int], None] | None,
) -> int:
    todo = to_do(config, out)
    failed = 0
    path = out / RESULTS
    torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a") as f:
        if torn:  # a kill mid-line: end it, so that the next result is a line of its own
            f.write("\n")
        for n, row in enumerate(runner(todo, out, config.keep_runs), start=1):
            f.write(json.dumps(row) + "\n")
            f.flush()
            failed += "error" in row
            if progress is not None:
                progress(row, n, len(todo))
    return failed


def report(config: SweepConfig, out: Path, baseline: str | None = None) -> str:
    """Per configuration: cells done, and the median over them of the best noiseless
    activation, of its ratio to the best reference image, (``baseline``: a label) of its
    ratio to the baseline's best on the same target and seed, and (with a ``ceiling``) of
    its ratio to the white-box ceiling there."""
    rows = list(latest(config, out).values())
    against = [label for label in (baseline, CEILING if config.ceiling is not None else None)
               if label]  # fmt: skip
    bests = {label: {(r["target"], r["seed"]): r["best_activation"] for r in rows
                     if r["label"] == label} for label in against}  # fmt: skip
    header = "| configuration | cells | median best activation | median best / best natural |"
    lines = [header + "".join(f" median best / {label}'s |" for label in against),
             "|---|---|---|---|" + "---|" * len(against)]  # fmt: skip
    total = len(config.targets) * len(config.seeds)
    labels = [c["label"] for c in config.configurations]
    for label in labels + ([CEILING] if config.ceiling is not None else []):
        mine = [r for r in rows if r["label"] == label]
        best = [r["best_activation"] for r in mine]
        natural = [r["best_activation"] / r["best_reference"] for r in mine
                   if r.get("best_reference")]  # fmt: skip
        line = f"| {label} | {len(mine)}/{total} | {_median(best)} | {_median(natural)} |"
        for other in against:
            base = bests[other]
            paired = [r["best_activation"] / base[r["target"], r["seed"]] for r in mine
                      if base.get((r["target"], r["seed"]))]  # fmt: skip
            line += f" {_median(paired)} |"
        lines.append(line)
    return "\n".join(lines)


def _median(values: list[float]) -> str:
    return f"{np.median(values):.3f}" if values else "-"
