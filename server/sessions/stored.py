"""Sessions this server run does not hold live: read-only views with the same summary,
history and warnings as a live session.

- :class:`StoredSession`: a session file (finished or aborted in an earlier run, or copied
  into the data directory), read when asked for.
- :class:`EndedSession`: what is left in memory of a session that ended in this run, once
  its optimizer, images and file are let go: a few numbers per generation, so a dashboard
  still watching it and late requests are answered without reading the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.engine.inversion import described
from server.engine.statistics import History
from server.sessions.alarms import Alarms
from server.sessions.config import SessionConfig
from server.sessions.progress import Progress
from server.sessions.replay import Logged
from server.sessions.session import shared_summary
from server.sessions.states import SessionState
from server.sessions.threads import thread_summary
from server.sessions.warnings import Warnings
from server.storage.session_file import SessionFile

if TYPE_CHECKING:
    from server.sessions.session import Session


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
            #: Each thread's history (one, unless the session ran several threads).
            self.histories = [
                History.of(store.generation_scores(self.done, k)) for k in range(store.threads)
            ]
            self.history = self.histories[0]
            self.created = store.created
            #: The warnings the session showed while it ran, re-derived from its event log.
            logged = Logged.of(store.events(), live=False)
            self.warnings = logged.warnings
            #: The alarms it raised, acknowledged and cleared.
            self.alarms = logged.alarms
            self.progress = logged.progress
            self.notes = logged.notes
        finally:
            store.close()
        self.config = SessionConfig.from_stored(record["config"])
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
            "start": described(self._record.get("inversion")),
            "threads": self._threads(),
            "current": None,
            "warnings": self.warnings.count,
            "alarms": self.alarms.as_json(active_only=True),
            "pause_reason": None,
            "progress": self.progress.as_json(self.done, self._record["generations"]),
            "failure": None,
            "created": self.created,
            "data_file": str(self.path),
        }


    def _threads(self) -> list[dict[str, Any]]:
        """Each thread's summary, from what the file records of it."""
        records = self._record.get("threads", [self._record])
        objectives = [c.scoring().describe() for c in self.config.thread_configs()]
        return [
            thread_summary(
                k, record.get("name", ""), record, objective,
                described(record.get("inversion")), history,
            )
            for k, (record, objective, history) in enumerate(
                zip(records, objectives, self.histories, strict=True)
            )
        ]  # fmt: skip


@dataclass(frozen=True)
class EndedSession:
    """A session of this run that is finished or aborted, as it last was."""

    id: str
    state: SessionState
    config: SessionConfig
    #: Each thread's history.
    histories: list[History]
    warnings: Warnings
    alarms: Alarms
    progress: Progress
    notes: list[dict[str, Any]]
    last_summary: dict[str, Any]

    @classmethod
    def of(cls, session: Session) -> EndedSession:
        return cls(
            session.id, session.state, session.config, session.histories, session.warnings,
            session.alarms, session.progress, session.notes,
            {**session.summary(), "current": None},
        )  # fmt: skip

    @property
    def history(self) -> History:
        """Thread 0's history (the session's, with one thread)."""
        return self.histories[0]

    def summary(self) -> dict[str, Any]:
        return dict(self.last_summary)
