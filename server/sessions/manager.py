"""All sessions of one server: create them, find them, and bring them back after a restart.

Each session lives in ``DATA_DIR/<id>.h5``. On start-up :meth:`SessionManager.restore` reopens
every file whose session was created, running or paused, rebuilds its generator and its
optimizer (from the state saved after the last complete generation) and carries on; a
session that was running continues at once, because an animal may be waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from protocol.errors import UnknownSession, XDreamError
from server.engine.device import resolve_device
from server.engine.generators.weights import weights_dir
from server.engine.loop import Engine
from server.engine.natural_images import session_references
from server.engine.plan import blame, plan_run
from server.engine.pool import GeneratorPool, PooledGenerator
from server.engine.statistics import History
from server.sessions.changes import Changes
from server.sessions.config import SessionConfig
from server.sessions.session import Session, Transport
from server.sessions.states import SessionState
from server.sessions.stored import StoredSession
from server.storage.catalog import (
    creating_path,
    list_stored,
    read_closed,
    remove_unfinished_creations,
    stored_path,
    stored_status,
)
from server.storage.rebuild import journal_attributes, rebuild_from_journal
from server.storage.records import ResumePoint, SessionFileError
from server.storage.recovery import journal_path
from server.storage.session_file import SessionFile

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Parts:
    """What a session is built from: its engine (with a pooled generator), its length, its
    reference images, and what its file records about them."""

    #: The settings, with their paths confined to the server's folders.
    config: SessionConfig
    engine: Engine
    generator: PooledGenerator
    generations: int
    references: np.ndarray | None
    record: dict[str, Any]


class SessionManager:
    """The sessions of one server, by id; shared by the ZeroMQ and the HTTP side."""

    def __init__(
        self,
        data_dir: Path,
        transport: Transport,
        device: str = "auto",
        weights_roots: Sequence[Path] = (),
        reference_roots: Sequence[Path] = (),
    ) -> None:
        #: Where sessions that name no device run (``auto``: the GPU if torch sees one).
        self.device = str(resolve_device(device))
        self.data_dir = Path(data_dir)
        #: The only folders a session's ``weights`` and ``reference_folder`` may name:
        #: by default the weights folder, and ``DATA/references``.
        self.weights_roots = list(weights_roots) or [weights_dir()]
        self.reference_roots = list(reference_roots) or [self.data_dir / "references"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.transport = transport
        self.sessions: dict[str, Session] = {}
        #: Bumped by every session's changes (and by clients coming and going).
        self.changes = Changes()
        #: Generators shared by sessions that use the same one, with batched calls.
        self.generators = GeneratorPool()
        #: Session files that could not be resumed, by id, with what is wrong: listed with
        #: the past sessions as "damaged", left in place for an expert to look at.
        self.damaged: dict[str, str] = {}

    def _parts(
        self,
        config: SessionConfig,
        state: dict[str, Any] | None = None,
        references: np.ndarray | None = None,
    ) -> _Parts:
        """A session's generator (from the pool), optimizer and references (blocking);
        ``state`` and ``references``: those a resumed session stored."""
        config = config.confined(self.weights_roots, self.reference_roots)
        choice = config.generator_choice(self.device)
        generator = self.generators.acquire(choice, choice.build)
        try:
            plan = plan_run(
                generator,
                config.optimizer,
                config.seed,
                config.settings,
                config.population,
                config.budget,
                config.generations,
                state,
            )
            if references is None and config.references_per_generation:
                with blame("reference_folder"):
                    references = session_references(
                        config.reference_folder, generator.image_size, config.seed
                    )
            record = {"config": config.model_dump(mode="json"), **plan.record(generator)}
            engine = Engine(generator, plan.optimizer)
            return _Parts(config, engine, generator, plan.generations, references, record)
        except BaseException:
            generator.close()
            raise

    def get(self, session_id: str | None) -> Session:
        try:
            return self.sessions[session_id or ""]
        except KeyError:
            raise UnknownSession(f"no session {session_id!r} on this server") from None

    async def create(self, config: SessionConfig) -> Session:
        """Build and store a new session (state ``created``); nothing is written on error."""
        parts = await asyncio.to_thread(self._parts, config)
        session_id = secrets.token_hex(4)
        while session_id in self.sessions or any(
            (self.data_dir / f"{session_id}{suffix}").exists() for suffix in (".h5", ".journal")
        ):
            session_id = secrets.token_hex(4)
        record = {"session_id": session_id, **parts.record}

        def create_file() -> SessionFile:
            """Written under a temporary name and renamed when complete: a crash before the
            creation is answered leaves no session file, only a leftover to clean up."""
            path = self.data_dir / f"{session_id}.h5"
            temporary, journal = creating_path(path), journal_path(path)
            created = SessionState.created.value
            store = SessionFile(temporary, record, status=created, journal=journal)
            try:
                if parts.references is not None:
                    store.write_references(parts.references)
                store.log_event(SessionState.created.value)
            except BaseException:
                store.abandon()
                temporary.unlink(missing_ok=True)
                journal.unlink(missing_ok=True)
                raise
            store.close()
            os.replace(temporary, path)
            _sync_folder(self.data_dir)  # the rename is durable before the creation is answered
            return SessionFile.reopen(path, journal=journal)

        try:
            store = await asyncio.to_thread(create_file)
        except BaseException:
            parts.generator.close()
            raise
        return self._add(session_id, parts, store, SessionState.created)

    def _add(
        self,
        session_id: str,
        parts: _Parts,
        store: SessionFile,
        state: SessionState,
    ) -> Session:
        session = Session(
            session_id, parts.config, parts.engine, store, parts.generations, parts.references,
            self.transport, state=state, changes=Changes(self.changes),
            release=parts.generator.close,
        )  # fmt: skip
        self.sessions[session_id] = session
        self.changes.bump()
        return session

    async def restore(self) -> list[str]:
        """Reopen every unfinished session file in the data directory; their ids."""
        for leftover in await asyncio.to_thread(remove_unfinished_creations, self.data_dir):
            log.warning("removed %s: its creation was never completed nor answered", leftover)
        restored = []
        for path in sorted(self.data_dir.glob("*.h5")):
            try:
                session = await self._restore(path)
            except Exception as exc:  # whatever is wrong with one file, the others resume
                log.error("cannot resume %s: %s", path, exc)
                self.damaged[path.stem] = f"cannot be resumed: {exc}"
                self.changes.bump()
                continue
            if session is not None:
                restored.append(session.id)
        return restored

    async def _restore(self, path: Path) -> Session | None:
        def open_parts() -> tuple[SessionFile, _Parts, ResumePoint, History, str] | None:
            stored = self._stored_status(path)
            if stored is None:
                return None
            status, closed = stored
            if SessionState(status).final and closed:  # ended and closed: nothing to do
                return None
            store, notes = self._reopen_repaired(
                path, resume=not SessionState(status).final, repair=not closed
            )
            parts = None
            try:
                if notes:
                    log.warning("repaired %s: %s", path.name, "; ".join(notes))
                    store.log_event("repaired", cut=notes)
                if SessionState(status).final:  # repaired for its readers, not resumed
                    store.close()
                    return None
                config = SessionConfig.model_validate(store.config["config"])
                point = store.resume_point()
                parts = self._parts(config, store.optimizer_state(), store.references())
                store.drop_partial_generation(point.done)
                store.log_event("server_restarted", point.done)
                history = History.of(store.generation_scores(point.done))
                session_id = str(store.config["session_id"])
                return store, parts, point, history, session_id
            except BaseException:
                store.abandon()  # whatever went wrong, the file does not read as closed
                if parts is not None:
                    parts.generator.close()
                raise

        opened = await asyncio.to_thread(open_parts)
        if opened is None:
            return None
        store, parts, point, history, session_id = opened
        session = self._add(session_id, parts, store, SessionState(store.status))
        session.restore(history, point)
        return session

    @staticmethod
    def _stored_status(path: Path) -> tuple[str, bool] | None:
        """The status the file records and whether it was closed, else (a file that cannot
        be read) its journal's status, not closed."""
        try:
            return stored_status(path)
        except Exception:  # unreadable in any way: the journal may know
            return journal_attributes(journal_path(path))["status"], False

    def _reopen_repaired(
        self, path: Path, resume: bool, repair: bool = True
    ) -> tuple[SessionFile, list[str]]:
        """The session file, repaired (unless its writer closed it: then there is nothing to
        repair), or rebuilt from its journal if beyond repair; what was done (blocking). A
        file only repaired (``resume`` False) gets no new journal."""
        journal = journal_path(path)
        try:
            keep = journal if resume or journal.exists() else None
            store = SessionFile.reopen(path, journal=keep)
        except SessionFileError as exc:
            return self._rebuilt(path, journal, exc)
        try:
            return store, store.repair() if repair else []
        except Exception as exc:  # HDF5 fails in many ways on a torn file: all mean damage
            store.abandon()
            return self._rebuilt(path, journal, SessionFileError(f"{path.name}: {exc}"))

    def _rebuilt(
        self, path: Path, journal: Path, damage: SessionFileError
    ) -> tuple[SessionFile, list[str]]:
        """Write the file anew from its journal, the generator making the images again."""
        record = json.loads(journal_attributes(journal)["config"])
        config = SessionConfig.model_validate(record["config"])
        choice = config.confined(self.weights_roots, self.reference_roots).generator_choice(
            self.device
        )
        generator = self.generators.acquire(choice, choice.build)
        try:
            aside = rebuild_from_journal(path, journal, generator.generate)
        finally:
            generator.close()
        store = SessionFile.reopen(path, journal=journal)
        note = f"rebuilt from the journal ({damage}); the damaged file is {aside.name}"
        return store, [note, *store.repair()]

    def past(self) -> list[dict[str, Any]]:
        """Session files in the data directory that this server run does not hold."""
        return list_stored(self.data_dir, set(self.sessions), self.damaged)

    async def read(self, session_id: str, fn: Callable[[SessionFile], T]) -> T:
        """``fn(store)`` on the file of a session of this run (on its I/O thread) or of a
        past one (read-only; no summary or history is read for it)."""
        if session_id in self.sessions:
            return await self.sessions[session_id].read(fn)
        path = stored_path(self.data_dir, session_id)
        try:
            return await asyncio.to_thread(read_closed, path, fn)
        except SessionFileError as exc:
            raise UnknownSession(f"session file {path.name} cannot be read: {exc}") from None

    async def lookup(self, session_id: str) -> Session | StoredSession:
        """A session of this run, or else a read-only view of a past session's file."""
        if session_id in self.sessions:
            return self.sessions[session_id]
        path = stored_path(self.data_dir, session_id)
        try:
            return await asyncio.to_thread(StoredSession, path)
        except (XDreamError, OSError, KeyError, ValueError) as exc:
            raise UnknownSession(f"session file {path.name} cannot be read: {exc}") from None

    def on_client_lost(self, client_id: str) -> None:
        for session in self.sessions.values():
            session.on_client_lost(client_id)

    def on_presenter_ready(self) -> None:
        for session in self.sessions.values():
            session.on_presenter_ready()

    async def close(self) -> None:
        """Close every file; running sessions stay ``running`` on disk and resume next start."""
        for session in self.sessions.values():
            await session.close()


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
