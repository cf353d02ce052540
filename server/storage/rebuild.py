"""Writing a session file anew from its journal, whenever a crash left it unclosed.

HDF5 is not crash-consistent, and writing on into a file a kill left mid-flush can make it
worse: its superblock may record less space than its objects use, so new space is handed
out over live data (a kill inside the start-up's repair, then a second repair, lost
acknowledged responses that way; tests/server/test_fault_injection.py). So the file a crash
left is only ever read, and a new one is written beside it and renamed over it in one step;
a kill during the rebuild leaves the old file as it was, for the next start to rebuild from.

The journal holds everything the file got, in order: its attributes, the reference images,
every row, every status change and every complete generation (codes, scores, optimizer
state; not the images). The images are taken from the old file for each generation whose
stored codes are the journal's, and made again by the session's generator from the codes
(as it made them the first time) for the others. A damaged old file is kept beside the new
one for an expert; one that was only unclosed is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from server.engine.loop import GenerationResult
from server.storage.disk import sync_path
from server.storage.journal import read_journal
from server.storage.records import SessionFileError, ThreadGeneration
from server.storage.recovery import unique_rows
from server.storage.session_file import SessionFile
from server.storage.tables import thread_path

#: Makes the images of a generation of a thread from its codes (the thread's generator).
Render = Callable[[int, np.ndarray], np.ndarray]
#: A generation's images, by thread, generation and codes.
Images = Callable[[int, int, np.ndarray], np.ndarray]


def _beginning(records: list[dict[str, Any]], journal: Path) -> dict[str, Any]:
    """The file attributes ``journal``'s records begin with (SessionFileError: none)."""
    if not records or "attrs" not in records[0]:
        raise SessionFileError(f"{journal.name}: no journal to rebuild the session file from")
    return dict(records[0]["attrs"])


def journal_attributes(journal: Path) -> dict[str, Any]:
    """The file attributes a journal began with, with the last status it recorded."""
    records = read_journal(journal)[0] if journal.exists() else []
    attrs = _beginning(records, journal)
    for record in records:
        if "status" in record:
            attrs["status"] = record["status"]
    return attrs


@dataclass
class Rebuilt:
    """What a rebuild did."""

    #: Where the old file was kept (None: it was replaced).
    aside: Path | None
    #: Generations whose images came from the old file, and those made again.
    reused: int = 0
    rendered: int = 0


#: A thread's stored codes and images, and the rows of each generation both hold.
_Stored = tuple[h5py.Dataset, h5py.Dataset, dict[int, np.ndarray]]


class _OldImages:
    """The images of the generations a crash-left file still holds intact (read only);
    ``damaged`` once the file, or a generation it holds, proved unreadable or not the
    journal's."""

    def __init__(self, path: Path) -> None:
        self.damaged = False
        self._file: h5py.File | None = None
        #: Per thread: its codes, images and each generation's rows (None: none stored).
        self._threads: dict[int, _Stored | None] = {}
        try:
            self._file = h5py.File(path, "r")
        except Exception:  # unreadable in any way: every image is made again
            self.damaged = True

    def _thread(self, thread: int) -> _Stored | None:
        """``thread``'s codes, images and the rows of each generation that both hold."""
        if thread not in self._threads:
            assert self._file is not None
            g = self._file.get(thread_path(thread, "generations"))
            if g is None or "index" not in g:  # killed before its first generation
                self._threads[thread] = None
                return None
            by_generation: dict[int, np.ndarray] = {}
            index, codes, images = g["index"][()], g["codes"], g["images"]
            for generation in np.unique(index):
                rows = np.flatnonzero(index == generation)
                if rows[-1] < min(codes.shape[0], images.shape[0]):
                    by_generation[int(generation)] = rows
            self._threads[thread] = (codes, images, by_generation)
        return self._threads[thread]

    def images(self, thread: int, generation: int, codes: np.ndarray) -> np.ndarray | None:
        """The stored images of ``thread``'s ``generation`` if its stored codes are ``codes``."""
        if self._file is None:
            return None
        try:
            found = self._thread(thread)
            rows = None if found is None else found[2].get(generation)
            if found is None or rows is None:
                return None
            stored_codes, images, _ = found
            stored = stored_codes[rows[0] : rows[-1] + 1]
            same = stored.shape == codes.shape and np.array_equal(stored, codes)
            if same and _written(images, rows[0], rows[-1]):
                return images[rows[0] : rows[-1] + 1]
        except Exception:  # unreadable, or a chunk a crash tore: make it again
            pass
        self.damaged = True
        return None

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()


def _written(images: h5py.Dataset, first: int, last: int) -> bool:
    """Whether rows ``first``..``last`` of ``images`` are on the disk: a kill inside a flush
    can leave a chunk unallocated, which HDF5 reads back as zeros without an error."""
    if images.chunks is None:
        return True
    step = images.chunks[0]
    rest = (0,) * (images.ndim - 1)
    for start in range(first - first % step, last + 1, step):
        if images.id.get_chunk_info_by_coord((start, *rest)).byte_offset is None:
            return False
    return True


def rebuild_from_journal(
    path: Path, journal: Path, render: Render, keep_old: bool = True
) -> Rebuilt:
    """Write ``path`` anew from ``journal`` (images from the old file where it still holds
    them); the old file is kept beside it if it is damaged (``keep_old``: known to be, or
    found so here), else replaced."""
    records, _ = read_journal(journal)
    first = _beginning(records, journal)  # refuses a journal without its beginning
    temporary = path.with_name(path.name + ".rebuilding")
    store = SessionFile(
        temporary,
        json.loads(first["config"]),
        overwrite=True,
        status=first["status"],
        created=float(first["created"]),
    )
    # A generation completed again after a restart counts as its last record: later ones
    # were built on that one's optimizer state.
    last = {r["generation"]["index"]: i for i, r in enumerate(records) if "generation" in r}
    seen: dict[str, set[str]] = {}
    old = _OldImages(path) if path.exists() else None
    done = Rebuilt(None)

    def images(thread: int, generation: int, codes: np.ndarray) -> np.ndarray:
        stored = None if old is None else old.images(thread, generation, codes)
        if stored is not None:
            done.reused += 1
            return stored
        done.rendered += 1
        return render(thread, codes)

    try:
        for i, record in enumerate(records[1:], start=1):
            if "generation" in record and last[record["generation"]["index"]] != i:
                continue
            if "table" in record:
                known = seen.setdefault(record["table"], set())
                for columns in unique_rows(record["table"], [record["columns"]], known):
                    store.append_rows(record["table"], columns)
                continue
            _replay(store, record, images)
    except BaseException:
        store.close()
        temporary.unlink(missing_ok=True)  # the old file stays where it was
        raise
    finally:
        if old is not None:
            old.close()
    store.close()
    sync_path(temporary)  # on the disk before it takes the old file's place
    if path.exists() and (keep_old or (old is not None and old.damaged)):
        done.aside = _free_name(path.with_name(path.name + ".damaged"))
        os.link(path, done.aside)  # the damaged file stays reachable under its new name ...
    os.replace(temporary, path)  # ... and the rebuilt one replaces it in one step
    sync_path(path.parent)
    return done


def _replay(store: SessionFile, record: dict[str, Any], images: Images) -> None:
    if "status" in record:
        store.set_status(record["status"])
    elif "references" in record:
        store.write_references(record["references"])
    elif "generation" in record:
        g = record["generation"]
        first, *rest = [
            _generation(thread, r, images) for thread, r in enumerate([g, *g.get("threads", [])])
        ]
        store.write_generation(
            first.result, first.optimizer_state, first.reference_scores, threads=rest
        )


def _generation(thread: int, g: dict[str, Any], images: Images) -> ThreadGeneration:
    """A journalled generation of ``thread``, with its images."""
    codes = np.asarray(g["codes"])
    result = GenerationResult(
        g["index"],
        codes,
        images(thread, g["index"], codes),
        np.asarray(g["scores"]),
        g["timings"],
        g["extra"],
    )
    return ThreadGeneration(result, g["optimizer"], [tuple(r) for r in g["reference_scores"]])


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2`` ... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
