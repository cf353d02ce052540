"""Writing a session file anew from its journal, when a crash left it beyond repair.

The journal holds everything the file got, in order: its attributes, the reference images,
every row, every status change and every complete generation (codes, scores, optimizer
state; not the images, which the session's generator makes again from the codes, as it
made them the first time). The damaged file is kept beside the new one for an expert.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from server.engine.loop import GenerationResult
from server.storage.journal import read_journal
from server.storage.records import SessionFileError
from server.storage.recovery import unique_rows
from server.storage.session_file import SessionFile

#: Makes the images of a generation from its codes (the session's generator).
Render = Callable[[np.ndarray], np.ndarray]


def journal_attributes(journal: Path) -> dict[str, Any]:
    """The file attributes a journal began with, with the last status it recorded."""
    records = read_journal(journal)[0] if journal.exists() else []
    if not records or "attrs" not in records[0]:
        raise SessionFileError(f"{journal.name}: no journal to rebuild the session file from")
    attrs = dict(records[0]["attrs"])
    for record in records:
        if "status" in record:
            attrs["status"] = record["status"]
    return attrs


def rebuild_from_journal(path: Path, journal: Path, render: Render) -> Path:
    """Write ``path`` anew from ``journal``; where the damaged file was moved."""
    records, _ = read_journal(journal)
    journal_attributes(journal)  # refuses a journal without its beginning
    temporary = path.with_name(path.name + ".rebuilding")
    first = records[0]["attrs"]
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
    try:
        for i, record in enumerate(records[1:], start=1):
            if "generation" in record and last[record["generation"]["index"]] != i:
                continue
            if "table" in record:
                known = seen.setdefault(record["table"], set())
                for columns in unique_rows(record["table"], [record["columns"]], known):
                    store.append_rows(record["table"], columns)
                continue
            _replay(store, record, render)
    except BaseException:
        store.close()
        temporary.unlink(missing_ok=True)  # the damaged file stays where it was
        raise
    store.close()
    aside = _free_name(path.with_name(path.name + ".damaged"))
    os.link(path, aside)  # the damaged file stays reachable under its new name ...
    os.replace(temporary, path)  # ... and the rebuilt one replaces it in one step
    return aside


def _replay(store: SessionFile, record: dict[str, Any], render: Render) -> None:
    if "status" in record:
        store.set_status(record["status"])
    elif "references" in record:
        store.write_references(record["references"])
    elif "generation" in record:
        g = record["generation"]
        codes = np.asarray(g["codes"])
        result = GenerationResult(
            g["index"], codes, render(codes), np.asarray(g["scores"]), g["timings"], g["extra"]
        )
        store.write_generation(result, g["optimizer"], [tuple(r) for r in g["reference_scores"]])


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2`` ... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
