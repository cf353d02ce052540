"""Bringing a session file that a crash left mid-write back to everything acknowledged.

Two kinds of damage, found by the fault-injection sweep (docs/RELIABILITY.md):

- Rows are appended one column at a time, so a kill between two columns leaves a table's
  columns of different lengths. A row is acknowledged only once all its columns are
  flushed, so :func:`cut_to_acknowledged` cuts every column to the shortest and loses
  nothing that was acknowledged.
- A kill inside HDF5's flush can leave a dataset unreadable (``addr overflow``). For the
  tables of what the rig reported, :func:`recover_rows` rebuilds them from the session's
  journal (:mod:`server.storage.journal`), which holds every row, fsynced before it was
  acknowledged; rows the file lost (a power cut takes unflushed pages) are appended again.
- A power cut can also leave readable but stale or zeroed pages, since the HDF5 file is
  never fsynced while it is written. :func:`check_generations` compares what a resumed
  session is built on (the optimizer state, each generation's scores, its codes at both
  ends) with the journal's generation records.

Anything else unreadable or disagreeing is beyond repair here: :class:`SessionFileError`
names it, and the server rebuilds the file from the journal (or lists it as damaged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from server.storage.journal import read_journal
from server.storage.records import SessionFileError
from server.storage.tables import append_table, read_state, thread_path, with_missing_columns

#: Tables of one row per thing the rig reported or the session did (all journalled).
ROW_TABLES = ("presentations", "responses", "late_responses", "events")
#: Datasets up to this size are read whole to check them; larger ones at both ends.
CHECK_WHOLE_BYTES = 16 << 20


def journal_path(session_file: Path) -> Path:
    """Where the journal of ``session_file`` lives: beside it, ``<id>.journal``."""
    return Path(session_file).with_suffix(".journal")


def check_readable(file: h5py.File, where: str, ds: h5py.Dataset) -> None:
    """Read ``ds``: whole, or its first and last rows if it is large (images, codes)."""
    try:
        if ds.ndim and ds.shape[0] and ds.size * ds.dtype.itemsize > CHECK_WHOLE_BYTES:
            _ = ds[0], ds[-1]
        else:
            _ = ds[()]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        name = Path(file.filename).name
        raise SessionFileError(f"{name}: {where} cannot be read ({exc})") from None


def cut_to_acknowledged(file: h5py.File) -> list[str]:
    """Cut each table's columns to the shortest (see above); what was cut."""
    _check_everything(file)
    cut = []
    threads = [f"threads/{k}" for k in file.get("threads", {})]
    per_thread = [f"{t}/{name}" for t in threads for name in ("generations", "references")]
    for name in (*ROW_TABLES, "generations", "references", *per_thread):
        group = file.get(name)
        if group is None:
            continue
        columns = {k: ds for k, ds in group.items() if f"{name}/{k}" != "references/images"}
        lengths = {ds.shape[0] for ds in columns.values()}
        if len(lengths) > 1:
            keep = min(lengths)
            for key, ds in columns.items():
                if ds.shape[0] > keep:
                    cut.append(f"{name}/{key}: {ds.shape[0]} -> {keep} rows")
                    ds.resize(keep, axis=0)
    return cut + _settle_optimizer_state(file)


def _settle_optimizer_state(file: h5py.File) -> list[str]:
    """Finish or undo a swap of the optimizer state that a crash interrupted: the new state
    is written whole to ``optimizer.new`` before the old one is deleted and it is renamed."""
    if "optimizer.new" not in file:
        return []
    try:
        if "optimizer" in file:  # the new state was not complete: the old one counts
            del file["optimizer.new"]
            return ["optimizer.new: an unfinished state, removed"]
        file.move("optimizer.new", "optimizer")  # complete, only not renamed yet
        return ["optimizer.new: a complete state, renamed to optimizer"]
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise SessionFileError(f"{Path(file.filename).name}: optimizer state ({exc})") from None


def _check_everything(file: h5py.File) -> None:
    """Read every dataset and attribute of the file once (SessionFileError naming the
    first that cannot be read)."""

    def visit(name: str, item: h5py.HLObject) -> None:
        _ = dict(item.attrs)
        if isinstance(item, h5py.Dataset):
            check_readable(file, name, item)

    try:
        _ = dict(file.attrs)
        file.visititems(visit)
    except SessionFileError:
        raise
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise SessionFileError(f"{Path(file.filename).name}: {exc}") from None


def journal_records(journal: Path | None) -> list[dict[str, Any]]:
    """The journal's intact records, if it began with its file (else there is nothing to
    compare the file with: no journal, or one begun after the file had rows)."""
    records = read_journal(journal)[0] if journal is not None and journal.exists() else []
    return records if records and "attrs" in records[0] else []


def recover_rows(file: h5py.File, records: list[dict[str, Any]]) -> list[str]:
    """Make each journalled table hold the journal's rows; what was done."""
    notes: list[str] = []
    for table in ROW_TABLES:
        appends = unique_rows(table, [r["columns"] for r in records if r.get("table") == table])
        journalled = _row_count(appends)
        have = _trusted_rows(file, table, appends, journalled, notes)
        if have < journalled:
            group = file.require_group(table)
            for ds in group.values():  # longer columns hold only unacknowledged rows
                ds.resize(have, axis=0)
            _append_from(group, appends, skip=have)
            notes.append(f"{table}: {journalled - have} rows restored from the journal")
    return notes


def _trusted_rows(
    file: h5py.File, table: str, appends: list[dict[str, Any]], journalled: int, notes: list[str]
) -> int:
    """How many of ``table``'s rows are readable and, column by column, the journal's
    first rows; a table that is unreadable or disagrees with the journal is dropped (0)."""
    group = file.get(table)
    if group is None:
        return 0
    try:
        for key, ds in group.items():
            check_readable(file, f"{table}/{key}", ds)
        have = min((ds.shape[0] for ds in group.values()), default=0)
        if have > journalled:
            raise SessionFileError(f"{table} has rows its journal does not")
        full = [with_missing_columns(group, columns) for columns in appends]  # older records
        for key, ds in group.items():
            stored = ds.asstr()[:have] if h5py.check_string_dtype(ds.dtype) else ds[:have]
            wanted = [v for columns in full for v in np.asarray(columns[key]).tolist()]
            if not _same(np.asarray(stored), np.asarray(wanted[:have], dtype=stored.dtype)):
                raise SessionFileError(f"{table}/{key} differs from the journal")
        return have
    except (SessionFileError, ValueError) as exc:  # ValueError: a record lacks a column
        del file[table]
        notes.append(f"{table}: {exc}; rebuilt from the journal")
        return 0


def check_generations(file: h5py.File, records: list[dict[str, Any]]) -> None:
    """SessionFileError unless the file's complete generations are the journal's: the same
    optimizer state, scores and codes (first and last of each generation), of every thread.
    The file may be one generation behind (a kill between the journal record and the file's
    write): the resumed session completes that one again from its stored responses."""
    if not records:
        return
    name = Path(file.filename).name
    journalled = {r["generation"]["index"]: r["generation"] for r in records if "generation" in r}
    group = file.get("optimizer")
    state = read_state(group) if group is not None and len(group.attrs) else None
    done = 0 if state is None else int(state["generation"])
    if done not in (len(journalled), len(journalled) - 1):
        raise SessionFileError(
            f"{name}: {done} complete generations, its journal {len(journalled)}"
        )
    if done == 0:
        return
    last = journalled[done - 1]
    for thread, wanted in enumerate([last, *last.get("threads", [])]):
        stored = group if thread == 0 else group.get(f"threads/{thread}")
        if stored is None or not _same_state(read_state(stored), wanted["optimizer"]):
            raise SessionFileError(
                f"{name}: thread {thread}'s optimizer state differs from the journal's"
            )
        g = file.get(thread_path(thread, "generations"))
        index = g["index"][()] if g is not None and "index" in g else np.zeros(0, np.int32)
        for i in range(done):
            record = journalled[i] if thread == 0 else journalled[i]["threads"][thread - 1]
            _check_generation(name, g, np.flatnonzero(index == i), i, record)


def _check_generation(
    name: str, g: h5py.Group | None, rows: np.ndarray, i: int, wanted: dict[str, Any]
) -> None:
    """SessionFileError unless ``rows`` of ``g`` are generation ``i`` as journalled."""
    codes = np.asarray(wanted["codes"])
    if g is None or len(rows) != len(codes) or not _same(
        g["scores"][rows], np.asarray(wanted["scores"])
    ):
        raise SessionFileError(f"{name}: generation {i} differs from the journal's")
    if not _same(g["codes"][[rows[0], rows[-1]]], codes[[0, -1]]):
        raise SessionFileError(f"{name}: generation {i}'s codes differ from the journal's")


def _same_state(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if stored.keys() != wanted.keys():
        return False
    for key, value in stored.items():
        a, b = np.asarray(value), np.asarray(wanted[key])
        if a.dtype.kind in "OSU" or b.dtype.kind in "OSU":
            if str(value) != str(wanted[key]):
                return False
        elif a.shape != b.shape or not _same(a, b.astype(a.dtype)):
            return False
    return True


def _same(stored: np.ndarray, wanted: np.ndarray) -> bool:
    if stored.dtype.kind in "fc":
        return bool(np.array_equal(stored, wanted, equal_nan=True))
    return bool(np.array_equal(stored, wanted))


def _row_count(appends: list[dict[str, Any]]) -> int:
    return sum(len(next(iter(columns.values()))) for columns in appends)


def unique_rows(
    table: str, appends: list[dict[str, Any]], seen: set[str] | None = None
) -> list[dict[str, Any]]:
    """``appends`` without the rows of a presentation seen before (in them, or in ``seen``,
    which is updated): a write that failed after its journal record was fsynced was not
    acknowledged, and the rig sent it again."""
    if table == "events":
        return appends
    seen = set() if seen is None else seen
    out = []
    for columns in appends:
        ids = [str(i) for i in np.asarray(columns["presentation_id"]).tolist()]
        keep = []
        for i, pid in enumerate(ids):
            if pid not in seen:
                seen.add(pid)
                keep.append(i)
        if len(keep) == len(ids):
            out.append(columns)
        elif keep:
            out.append({k: np.asarray(v)[keep] for k, v in columns.items()})
    return out


def _append_from(group: h5py.Group, appends: list[dict[str, Any]], skip: int) -> None:
    """Append the rows of ``appends`` after the first ``skip``."""
    for columns in appends:
        n = len(next(iter(columns.values())))
        if skip >= n:
            skip -= n
            continue
        rest = {k: np.asarray(v)[skip:] for k, v in with_missing_columns(group, columns).items()}
        append_table(group, rest)
        skip = 0
