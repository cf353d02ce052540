"""Sessions this server run does not hold (finished or aborted in an earlier run, or files
copied into the data directory): read-only views of their files for the dashboard's
past-sessions list, with the same summary and history as a live session."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import h5py

from protocol.errors import UnknownSession
from server.http.live import warning_for
from server.sessions.config import SessionConfig
from server.sessions.session import WARNINGS_KEPT, History, shared_summary
from server.storage.session_file import FORMAT, SessionFile, rows

#: What a session id may look like (also keeps a request from naming a path elsewhere).
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class StoredSession:
    """A closed session file: its summary, history and contents, never written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.id = self.path.stem
        store = SessionFile.reopen(self.path, mode="r")
        try:
            record = store.config
            self.state = store.status
            self.done = store.generations_done()
            self.history = History.from_store(store, self.done)
            self.created = float(store.created)
            events = store.table("events", columns=("time", "generation", "kind", "detail"))
        finally:
            store.close()
        self.config = SessionConfig.model_validate(record["config"])
        self._record = record
        #: The warnings the session showed while it ran, re-derived from its event log.
        self.warnings = warnings_from_events(events)

    def summary(self) -> dict[str, Any]:
        """The keys of :meth:`server.sessions.session.Session.summary`, from the file."""
        return {
            **shared_summary(self.id, self.config, self.state, self.done, self.history),
            "generations": self._record["generations"],
            "population": self._record["population"],
            "generator": self._record["generator"],
            "optimizer": self._record["optimizer"],
            "device": self._record.get("device"),  # None in files from before it was recorded
            "current": None,
            "warnings": len(self.warnings),
            "failure": None,
            "created": self.created,
            "data_file": str(self.path),
        }


def warnings_from_events(events: dict[str, Any]) -> list[dict[str, Any]]:
    """The operator warnings among a session file's events (as a live session keeps them)."""
    out: list[dict[str, Any]] = []
    for when, generation, kind, detail in rows(events, "time", "generation", "kind", "detail"):
        message = warning_for(str(kind), json.loads(detail))
        if message is not None:
            out.append(
                {"seq": len(out) + 1, "time": float(when), "generation": int(generation),
                 "kind": str(kind), "message": message}
            )  # fmt: skip
    return out[-WARNINGS_KEPT:]


def stored_path(data_dir: Path, session_id: str) -> Path:
    """The file of session ``session_id`` in ``data_dir`` (UnknownSession if there is none)."""
    path = data_dir / f"{session_id}.h5"
    if not SESSION_ID.fullmatch(session_id) or not path.is_file():
        raise UnknownSession(f"no session {session_id!r} on this server")
    return path


def list_stored(data_dir: Path, skip: set[str]) -> list[dict[str, Any]]:
    """Id, name, state, creation time and data file of each session file not in ``skip``
    (from the file's attributes only, so a long list stays quick), newest first."""
    out = []
    for path in data_dir.glob("*.h5"):
        if path.stem in skip or not SESSION_ID.fullmatch(path.stem):  # cannot be opened
            continue
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != FORMAT:
                    continue
                record = json.loads(f.attrs["config"])
                out.append(
                    {
                        "id": path.stem,
                        "name": record.get("config", {}).get("name", ""),
                        "state": str(f.attrs["status"]),
                        "created": float(f.attrs["created"]),
                        "generator": record.get("generator"),
                        "data_file": str(path),
                    }
                )
        except (OSError, KeyError, ValueError):  # not ours, or damaged: not listed
            continue
    return sorted(out, key=lambda item: -item["created"])
