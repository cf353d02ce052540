"""The data folder: which session files it holds, finding one by id, and reading one that no
writer holds open."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import h5py

from protocol.errors import UnknownSession
from server.storage.recovery import journal_path
from server.storage.session_file import FORMAT, SessionFile

T = TypeVar("T")
#: The suffix of a session file being created.
CREATING = ".creating"
#: What a session id may look like (also keeps a request from naming a path elsewhere).
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def read_closed(path: Path, fn: Callable[[SessionFile], T]) -> T:
    """``fn(store)`` on a read-only handle of a session file no writer holds open."""
    store = SessionFile.reopen(path, mode="r")
    try:
        return fn(store)
    finally:
        store.close()


def stored_path(data_dir: Path, session_id: str) -> Path:
    """The file of session ``session_id`` in ``data_dir`` (UnknownSession if there is none)."""
    path = data_dir / f"{session_id}.h5"
    if not SESSION_ID.fullmatch(session_id) or not path.is_file():
        raise UnknownSession(f"no session {session_id!r} on this server")
    return path


def stored_status(path: Path) -> tuple[str, bool] | None:
    """The status a session file records, and whether its writer closed it (files from
    before that was recorded count as closed), without opening it as a session (None: the
    file is not a session file)."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            return None
        return str(f.attrs["status"]), bool(f.attrs.get("closed", True))


def list_stored(
    data_dir: Path, skip: set[str], damaged: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Id, name, state, creation time and data file of each session file not in ``skip``
    (from the file's attributes only, so a long list stays quick), newest first.

    A file that cannot be read, or one named in ``damaged`` (id -> what is wrong), is
    listed in state ``damaged`` with its ``problem``, so that it is never silently lost
    nor shown as a session that still runs. Files of other programs are left out."""
    damaged = damaged or {}
    out = []
    for path in data_dir.glob("*.h5"):
        if path.stem in skip or not SESSION_ID.fullmatch(path.stem):  # cannot be opened
            continue
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    continue
                record = json.loads(f.attrs["config"])
                item = {
                    "id": path.stem,
                    "name": record.get("config", {}).get("name", ""),
                    "state": str(f.attrs["status"]),
                    "created": float(f.attrs["created"]),
                    "generator": record.get("generator"),
                    "data_file": str(path),
                }
        except (OSError, KeyError, ValueError, TypeError) as exc:
            item = {"id": path.stem, "name": "", "created": path.stat().st_mtime,
                    "generator": None, "data_file": str(path)}  # fmt: skip
            damaged = {**damaged, path.stem: damaged.get(path.stem, f"cannot be read: {exc}")}
        if path.stem in damaged:
            item.update(state="damaged", problem=damaged[path.stem])
        out.append(item)
    return sorted(out, key=lambda item: -item["created"])


def creating_path(path: Path) -> Path:
    """Where a session file is written until its creation is complete."""
    return path.with_name(path.name + CREATING)


def remove_unfinished_creations(data_dir: Path) -> list[Path]:
    """Delete what a crash during a session's creation left (never answered, so never a
    session anyone knows): the half-written file, and a journal with no session file."""
    removed = []
    for leftover in data_dir.glob(f"*.h5{CREATING}"):
        final = leftover.with_name(leftover.name.removesuffix(CREATING))
        journal = journal_path(final)
        if journal.exists() and not final.exists():
            journal.unlink()
            removed.append(journal)
        leftover.unlink()
        removed.append(leftover)
    return removed
