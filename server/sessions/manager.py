"""All sessions of one server: create them, find them, and bring them back after a restart.

Each session lives in ``DATA_DIR/<id>.h5``. On start-up :meth:`SessionManager.restore` reopens
every file whose session was created, running or paused, rebuilds its generator and its
optimizer (from the state saved after the last complete generation) and carries on; a
session that was running continues at once, because an animal may be waiting.

A session that ends (finished or stopped) is let go at once: its optimizer, images and file
are released and only an :class:`~server.sessions.stored.EndedSession` stays, so the server
does not grow with every session it has run. At most ``max_sessions`` are live at a time.
An ended session can be archived: its files move to ``DATA_DIR/archive/`` and leave the list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from protocol.codec import MAX_BUFFERS
from protocol.errors import (
    ConfigError,
    SessionLimit,
    SessionStateError,
    UnknownSession,
    XDreamError,
)
from protocol.messages import Presented, Responses, ResponsesAck
from server.engine.device import resolve_device
from server.engine.generators.weights import weights_dir
from server.engine.inversion import described, start_from_images
from server.engine.loop import Engine
from server.engine.natural_images import session_references
from server.engine.plan import blame, plan_run, within
from server.engine.pool import GeneratorPool, PooledGenerator
from server.engine.statistics import History
from server.sessions.changes import Changes
from server.sessions.config import SessionConfig
from server.sessions.session import Session
from server.sessions.states import SessionState
from server.sessions.stored import EndedSession, StoredSession
from server.sessions.threads import SessionThread
from server.sessions.transport import Transport
from server.storage.catalog import (
    creating_path,
    list_stored,
    read_closed,
    remove_unfinished_creations,
    stored_path,
    stored_status,
)
from server.storage.disk import sync_path
from server.storage.rebuild import journal_attributes, rebuild_from_journal
from server.storage.records import Event, ResumePoint, SessionFileError
from server.storage.recovery import journal_path
from server.storage.session_file import SessionFile

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Where archived sessions' files go, inside the data folder.
ARCHIVE = "archive"
#: How long an archive waits for a session that just ended to close its file.
RETIRE_WAIT_S = 30.0


@dataclass
class _Parts:
    """What a session is built from: its threads' engines (with pooled generators), its
    length, its reference images, and what its file records about them."""

    #: The settings, with their paths confined to the server's folders.
    config: SessionConfig
    threads: list[SessionThread]
    generators: list[PooledGenerator]
    generations: int
    references: np.ndarray | None
    record: dict[str, Any]

    def close(self) -> None:
        """Give the generators back to the pool."""
        for generator in self.generators:
            generator.close()


class SessionManager:
    """The sessions of one server, by id; shared by the ZeroMQ and the HTTP side."""

    def __init__(
        self,
        data_dir: Path,
        transport: Transport,
        device: str = "auto",
        weights_roots: Sequence[Path] = (),
        reference_roots: Sequence[Path] = (),
        max_sessions: int = 8,
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
        #: The live sessions (created, running, paused), by id.
        self.sessions: dict[str, Session] = {}
        #: Sessions that ended in this run, as they last were.
        self.ended: dict[str, EndedSession] = {}
        self.max_sessions = max_sessions
        self._creating = 0  # creations under way, counted against max_sessions
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
        states: Sequence[dict[str, Any] | None] = (),
        references: np.ndarray | None = None,
        inversions: Sequence[dict[str, Any] | None] = (),
    ) -> _Parts:
        """A session's threads (generators from the pool, optimizers) and references
        (blocking); ``states``, ``references`` and ``inversions``: what a resumed session
        stored (its optimizers go on from their states, so nothing is inverted again).

        Thread 0 sets the pace: every other thread runs as many generations as it (a
        ``budget`` counts thread 0's images) and, unless ``image_size`` is set, makes
        images of its size, since all are shown alike in the same blocks."""
        config = config.confined(self.weights_roots, self.reference_roots)
        own = config.thread_settings()
        generators: list[PooledGenerator] = []
        try:
            threads: list[SessionThread] = []
            records: list[dict[str, Any]] = []
            for k, (mine, name) in enumerate(
                zip(config.thread_configs(), config.thread_names(), strict=True)
            ):
                if k:  # in step with thread 0
                    mine = mine.model_copy(update={
                        "budget": None, "generations": records[0]["generations"],
                        "image_size": mine.image_size or generators[0].image_size,
                    })  # fmt: skip
                state = states[k] if states else None
                # A thread of the request's list is named in its errors (not one per channel).
                named = within(f"threads.{k}", own[k]) if config.threads else None
                with named or contextlib.nullcontext():
                    thread, record = self._thread(mine, name, state, generators)
                if state is not None and inversions and inversions[k] is not None:
                    record["inversion"] = inversions[k]  # inverted when made, not again now
                thread.started_from = described(record.get("inversion"))
                threads.append(thread)
                records.append(record)
            shown = sum(t.engine.optimizer.population for t in threads)
            if shown + config.references_per_generation > MAX_BUFFERS:
                raise ConfigError(
                    f"a block would hold {shown} evolved and "
                    f"{config.references_per_generation} reference images, more than the "
                    f"{MAX_BUFFERS} a generation message carries",
                    field="threads" if len(threads) > 1 else "population",
                )
            if references is None and config.references_per_generation:
                with blame("reference_folder"):
                    references = session_references(
                        config.reference_folder, generators[0].image_size, config.seed
                    )
            first = {k: v for k, v in records[0].items() if k != "name"}
            record = {"config": config.model_dump(mode="json"), **first}
            if own:
                record["threads"] = records
            generations = records[0]["generations"]
            return _Parts(config, threads, generators, generations, references, record)
        except BaseException:
            for generator in generators:
                generator.close()
            raise

    def _thread(
        self,
        config: SessionConfig,
        name: str,
        state: dict[str, Any] | None,
        generators: list[PooledGenerator],
    ) -> tuple[SessionThread, dict[str, Any]]:
        """One thread of ``config`` (a one-thread session's settings; its generator added to
        ``generators``) and what the file records about it."""
        choice = config.generator_choice(self.device)
        generator = self.generators.acquire(choice, choice.build)
        generators.append(generator)
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
        record: dict[str, Any] = {"name": name, **plan.record(generator)}
        if state is None and config.init_images is not None:
            inversion = start_from_images(plan.optimizer, generator.generator, config.init_images)
            record["inversion"] = inversion.summary()
        return SessionThread(name, config, Engine(generator, plan.optimizer)), record

    def get(self, session_id: str | None) -> Session:
        """A live session; an ended one is a SessionStateError (it takes nothing more)."""
        if session_id in self.ended:
            state = self.ended[session_id].state
            raise SessionStateError(f"session {session_id} is {state}: it takes nothing more")
        try:
            return self.sessions[session_id or ""]
        except KeyError:
            raise UnknownSession(f"no session {session_id!r} on this server") from None

    async def ingest_responses(
        self, session_id: str | None, msg: Responses, source: str, client: str
    ) -> ResponsesAck:
        """Counts for a session, over ZeroMQ and HTTP alike. One that has ended takes
        nothing more, but a resend of counts it already holds is answered as duplicates: a
        rig whose acknowledgement was lost then stops resending."""
        session = self.sessions.get(session_id or "")
        if session is not None:
            return await session.ingest_responses(msg, source, client)
        ids = [r.presentation_id for r in msg.responses]
        await self._all_stored(session_id, "responses", ids)
        return ResponsesAck(accepted=0, duplicates=len(ids))

    async def ingest_presented(
        self, session_id: str | None, msg: Presented, source: str, client: str
    ) -> int:
        """Presentations for a session (how many were new), as :meth:`ingest_responses`."""
        session = self.sessions.get(session_id or "")
        if session is not None:
            return await session.ingest_presented(msg, source, client)
        ids = [p.presentation_id for p in msg.presentations]
        await self._all_stored(session_id, "presentations", ids)
        return 0

    async def _all_stored(self, session_id: str | None, table: str, ids: list[str]) -> None:
        """Nothing if the session, which is not live, holds every one of ``ids`` in
        ``table``; else why it takes nothing (UnknownSession, SessionStateError)."""
        path = stored_path(self.data_dir, session_id or "")

        def stored(store: SessionFile) -> tuple[str, set[str]]:
            rows = store.table(table, columns=("presentation_id",))
            return store.status, set(rows.get("presentation_id", []))

        ended = self.ended.get(session_id or "")
        try:
            state, held = await asyncio.to_thread(read_closed, path, stored)
        except Exception:  # not a session file, damaged, or still being closed: no match
            state, held = "unreadable", set()
        state = ended.state if ended is not None else state
        if session_id in self.damaged:
            state = "damaged"
        missing = sum(1 for i in ids if i not in held)
        if missing:
            raise SessionStateError(
                f"session {session_id} is {state}: it takes nothing more "
                f"({missing} of these {len(ids)} {table} are not stored)"
            )

    def watched(self, session_id: str) -> Session | EndedSession:
        """A session of this run, live or ended, for the dashboard's live view."""
        found = self.sessions.get(session_id) or self.ended.get(session_id)
        if found is None:
            raise UnknownSession(f"no session {session_id!r} in this server run")
        return found

    async def create(self, config: SessionConfig) -> Session:
        """Build and store a new session (state ``created``); nothing is written on error.
        Channels beyond what the rig's recorder sends now are refused here rather than
        in every response later."""
        recorded = self.transport.recorded_channels(config.rig)
        needed = max(config.channels_used())
        if recorded is not None and needed >= recorded:
            rig = f"rig {config.rig}" if config.rig else "the connected recorder"
            raise ConfigError(
                f"{rig} records {recorded} channels (0 to {recorded - 1}); "
                f"channel {needed} is not one of them",
                field="channels" if config.objective is None else "objective",
            )
        if len(self.sessions) + self._creating >= self.max_sessions:
            raise SessionLimit(
                f"the server holds {len(self.sessions)} live sessions, as many as it may "
                f"(xdream serve --max-sessions {self.max_sessions}): stop or finish one first"
            )
        self._creating += 1
        try:
            return await self._create(config)
        finally:
            self._creating -= 1

    async def _create(self, config: SessionConfig) -> Session:
        parts = await asyncio.to_thread(self._parts, config)
        session_id = secrets.token_hex(4)
        while session_id in self.sessions or any(
            (folder / f"{session_id}{suffix}").exists()
            for folder in (self.data_dir, self.data_dir / ARCHIVE)
            for suffix in (".h5", ".journal")
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
            sync_path(self.data_dir)  # the rename is durable before the creation is answered
            return SessionFile.reopen(path, journal=journal)

        try:
            store = await asyncio.to_thread(create_file)
        except BaseException:
            parts.close()
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
            session_id, parts.config, parts.threads, store, parts.generations,
            parts.references, self.transport, state=state, changes=Changes(self.changes),
            release=parts.close, retire=self._retire,
        )  # fmt: skip
        self.sessions[session_id] = session
        self.changes.bump()
        return session

    def _retire(self, session: Session) -> None:
        """Let go of a session that ended (its file is closed by now)."""
        self.ended[session.id] = EndedSession.of(session)
        self.sessions.pop(session.id, None)
        self.changes.bump()

    async def archive(self, session_id: str) -> None:
        """Move an ended (or damaged) session's files to ``DATA_DIR/archive/``; a live one
        must be stopped first. Archiving again finishes an archive a crash interrupted."""
        session = self.sessions.get(session_id)
        if session is not None:
            if not session.state.final:
                raise SessionStateError(f"session {session_id} is {session.state}: stop it first")
            try:  # it ended a moment ago and is closing its file
                await asyncio.wait_for(session.retired(), RETIRE_WAIT_S)
            except asyncio.TimeoutError:  # not the builtin before Python 3.11
                raise SessionStateError(
                    f"session {session_id} is still closing its file; try again"
                ) from None
        path = stored_path(self.data_dir, session_id)
        await asyncio.to_thread(_move_files, path, self.data_dir / ARCHIVE)
        self.ended.pop(session_id, None)
        self.damaged.pop(session_id, None)
        self.changes.bump()

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
        def open_parts() -> (
            tuple[SessionFile, _Parts, ResumePoint, list[History], str, list[Event]] | None
        ):
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
                config = SessionConfig.from_stored(store.config["config"])
                point = store.resume_point()
                record = store.config
                threads = record.get("threads", [record])
                states = [store.optimizer_state(k) for k in range(len(threads))]
                if None in states and any(s is not None for s in states):
                    raise SessionFileError(
                        f"{path.name}: thread {states.index(None)} has no optimizer state, "
                        "the others have theirs"
                    )
                parts = self._parts(
                    config, states, store.references(), [t.get("inversion") for t in threads]
                )
                store.drop_partial_generation(point.done)
                store.log_event("server_restarted", point.done)
                histories = [
                    History.of(store.generation_scores(point.done, k)) for k in range(len(threads))
                ]
                session_id = str(record["session_id"])
                return store, parts, point, histories, session_id, store.events()
            except BaseException:
                store.abandon()  # whatever went wrong, the file does not read as closed
                if parts is not None:
                    parts.close()
                raise

        opened = await asyncio.to_thread(open_parts)
        if opened is None:
            return None
        store, parts, point, histories, session_id, events = opened
        session = self._add(session_id, parts, store, SessionState(store.status))
        session.restore(histories, point, events)
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
        """The session file, ready to go on (blocking), and what was done to it. One its
        writer closed is opened as it is. One a crash left unclosed is written anew from its
        journal (only read: see :mod:`server.storage.rebuild` for why), or, without a whole
        journal (lost, or begun at a resume of a session older than journals), repaired
        where it lies. A file only repaired (``resume`` False) gets no new journal."""
        journal = journal_path(path)
        if repair and _has_beginning(journal):
            return self._rebuilt(path, journal, None)
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
        self, path: Path, journal: Path, damage: SessionFileError | None
    ) -> tuple[SessionFile, list[str]]:
        """Write the file anew from its journal: the images from the old file where it still
        holds them, the others made again by the generator (acquired only if needed). A
        damaged file (``damage``) is kept beside the new one; an unclosed one replaced."""
        generators: dict[int, PooledGenerator] = {}

        def render(thread: int, codes: np.ndarray) -> np.ndarray:
            if thread not in generators:  # only now: with every image kept, no weights needed
                record = json.loads(journal_attributes(journal)["config"])
                config = SessionConfig.from_stored(record["config"])
                confined = config.confined(self.weights_roots, self.reference_roots)
                mine = confined.thread_configs()[thread]
                if thread:  # at thread 0's size, as it was made (see _parts)
                    size = record["threads"][thread]["image_size"]
                    mine = mine.model_copy(update={"image_size": size})
                choice = mine.generator_choice(self.device)
                generators[thread] = self.generators.acquire(choice, choice.build)
            return generators[thread].generate(codes)

        try:
            done = rebuild_from_journal(path, journal, render, keep_old=damage is not None)
        finally:
            for generator in generators.values():
                generator.close()
        store = SessionFile.reopen(path, journal=journal)
        why = "it was left unclosed" if damage is None else str(damage)
        note = (
            f"rebuilt from the journal ({why}); images of {done.reused} generations kept, "
            f"{done.rendered} made again"
        )
        if done.aside is not None:
            note += f"; the damaged file is {done.aside.name}"
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

    async def lookup(self, session_id: str) -> Session | EndedSession | StoredSession:
        """A session of this run, or else a read-only view of a past session's file."""
        if session_id in self.sessions or session_id in self.ended:
            return self.watched(session_id)
        path = stored_path(self.data_dir, session_id)
        try:
            return await asyncio.to_thread(StoredSession, path)
        except (XDreamError, OSError, KeyError, ValueError) as exc:
            raise UnknownSession(f"session file {path.name} cannot be read: {exc}") from None

    def on_client_lost(
        self, client_id: str, name: str, roles: Sequence[str], why: str, alarm: bool
    ) -> None:
        """Rig client ``client_id``, named ``name``, in ``roles``, is gone (``why``, as the
        link says); ``alarm``: whether its sessions raise one (not if it is back already)."""
        for session in list(self.sessions.values()):
            session.on_client_lost(client_id, name, roles, why, alarm)

    def on_client_back(self, name: str, roles: Sequence[str]) -> None:
        for session in list(self.sessions.values()):
            session.on_client_back(name, roles)

    def on_presenter_ready(self) -> None:
        for session in list(self.sessions.values()):
            session.on_presenter_ready()

    async def close(self) -> None:
        """Close every file; running sessions stay ``running`` on disk and resume next start."""
        for session in list(self.sessions.values()):  # an ended one leaves the dict
            await session.close()


def _has_beginning(journal: Path) -> bool:
    """Whether ``journal`` holds the file's beginning, so that the file can be rebuilt."""
    try:
        journal_attributes(journal)
    except SessionFileError:
        return False
    return True


def _move_files(path: Path, folder: Path) -> None:
    """Move a session file and the files beside it (journal, damaged copies) to ``folder``:
    the others first, the session file last, so that until the end it is still listed."""
    folder.mkdir(exist_ok=True)
    beside = [p for p in path.parent.glob(f"{path.stem}.*") if p != path]
    for item in [*beside, path]:
        os.replace(item, folder / item.name)
    sync_path(folder)
    sync_path(path.parent)
