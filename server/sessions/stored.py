"""Sessions this server run does not hold (finished or aborted in an earlier run, or files
copied into the data directory): read-only views of their files for the dashboard's
past-sessions list, with the same summary, history and warnings as a live session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.engine.statistics import History
from server.sessions.config import SessionConfig
from server.sessions.session import shared_summary
from server.sessions.states import SessionState
from server.sessions.warnings import Warnings
from server.storage.session_file import SessionFile


class StoredSession:
    """A closed session file: its summary, history and contents, never written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.id = self.path.stem
        store = SessionFile.reopen(self.path, mode="r")
        try:
            record = store.config
            self.state = SessionState(store.status)
            self.done = store.generations_done()
            self.history = History.of(store.generation_scores(self.done))
            self.created = store.created
            #: The warnings the session showed while it ran, re-derived from its event log.
            self.warnings = Warnings.from_events(store.events())
        finally:
            store.close()
        self.config = SessionConfig.model_validate(record["config"])
        self._record = record

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
            "warnings": self.warnings.count,
            "failure": None,
            "created": self.created,
            "data_file": str(self.path),
        }
