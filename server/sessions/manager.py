"""All sessions of one server: create them, find them, and bring them back after a restart.

Each session lives in ``DATA_DIR/<id>.h5``. On start-up :meth:`SessionManager.restore` reopens
every file whose session was created, running or paused, rebuilds its generator and its
optimizer (from the state saved after the last complete generation) and carries on; a
session that was running continues at once, because an animal may be waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from protocol.errors import ConfigError, UnknownSession, XDreamError
from server.engine.device import resolve_device
from server.engine.generators import Generator, default_generator, make_generator
from server.engine.generators.deepsim import VARIANTS as DEEPSIM_VARIANTS
from server.engine.loop import Engine
from server.engine.natural_images import centre_squares, load_photos, random_crops
from server.engine.optimizers import DEFAULT_OPTIMIZER, Optimizer, make_optimizer
from server.engine.pool import GeneratorPool, PooledGenerator
from server.http.live import Changes
from server.sessions.config import SessionConfig
from server.sessions.session import History, Session, Transport
from server.sessions.stored import StoredSession, list_stored, stored_path
from server.storage.session_file import FORMAT, SessionFile, read_closed

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Budget in images when a session names neither budget nor generations (the paper's 3,000).
DEFAULT_BUDGET = 3000
#: Natural crops drawn from the bundled photographs when no reference folder is given.
BUNDLED_REFERENCES = 100


@dataclasses.dataclass
class _Parts:
    engine: Engine
    generations: int
    references: np.ndarray | None
    record: dict[str, Any]


@contextlib.contextmanager
def _about(field: str) -> Iterator[None]:
    """Name ``field`` as the setting to blame for an error raised inside (if none is named)."""
    try:
        yield
    except XDreamError as exc:
        exc.field = exc.field or field
        raise


def _generator(config: SessionConfig, device: str, pool: GeneratorPool) -> PooledGenerator:
    """The session's generator from ``pool`` (shared with sessions that use the same one),
    on ``device`` unless the config names one."""
    name = config.generator or default_generator()
    with _about("weights"):
        if config.weights and name not in DEEPSIM_VARIANTS:
            raise ConfigError(f"weights are for DeePSiM generators; {name!r} has none")
    with _about("device"):
        where = str(resolve_device(config.device or device))
    options = {
        **({"weights": config.weights} if config.weights else {}),
        **({"image_size": config.image_size} if config.image_size else {}),
        "precision": config.precision,
    }
    key = (name, where, tuple(sorted(options.items())))
    with _about("weights" if config.weights else "generator"):
        return pool.acquire(key, lambda: make_generator(name, device=where, **options))


def _build(
    config: SessionConfig,
    generator: Generator,
    state: dict[str, Any] | None = None,
    references: np.ndarray | None = None,
) -> _Parts:
    """Optimizer (fresh, or from ``state``) and reference images for ``config`` around
    ``generator`` (``references``: those a resumed session stored, instead of drawing them
    again)."""
    name = generator.name
    optimizer_name = config.optimizer or DEFAULT_OPTIMIZER
    overrides = dict(config.settings)
    if config.population is not None:
        overrides["population"] = config.population
    budget = config.budget or (None if config.generations else DEFAULT_BUDGET)

    def fresh(**more: Any) -> Optimizer:
        return make_optimizer(
            optimizer_name, generator.code_dim, config.seed, name, budget, **overrides, **more
        )

    with _about("optimizer" if config.optimizer else "settings"):
        optimizer = fresh()
        if (
            config.generations
            and hasattr(optimizer.settings, "horizon")
            and "horizon" not in overrides
        ):
            optimizer = fresh(horizon=config.generations)
    generations = config.generations or (budget or 0) // optimizer.population
    if generations < 1:
        raise ConfigError(
            f"budget {budget} is below one generation of {optimizer.population}", field="budget"
        )
    if state is not None:
        optimizer = Optimizer.from_state_dict(state)
    if references is None and config.references_per_generation:
        with _about("reference_folder"):
            photos = load_photos(config.reference_folder)
        references = (
            centre_squares(photos, generator.image_size)
            if config.reference_folder
            else random_crops(photos, BUNDLED_REFERENCES, generator.image_size, seed=config.seed)
        )
    record = {
        "config": config.model_dump(mode="json"),
        "generator": name,
        "optimizer": optimizer_name,
        "population": optimizer.population,
        "generations": generations,
        "image_size": generator.image_size,
        "device": str(generator.device),
        "optimizer_settings": dataclasses.asdict(optimizer.settings),
    }
    return _Parts(Engine(generator, optimizer), generations, references, record)


def _release(parts: _Parts) -> None:
    """Give back the generator of a session that will not run after all."""
    generator = parts.engine.generator
    if isinstance(generator, PooledGenerator):
        generator.close()


class SessionManager:
    """The sessions of one server, by id; shared by the ZeroMQ and the HTTP side."""

    def __init__(self, data_dir: Path, transport: Transport, device: str = "auto") -> None:
        #: Where sessions that name no device run (``auto``: the GPU if torch sees one).
        self.device = str(resolve_device(device))
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.transport = transport
        self.sessions: dict[str, Session] = {}
        #: Bumped by every session's changes (and by clients coming and going).
        self.changes = Changes()
        #: Generators shared by sessions that use the same one, with batched calls.
        self.generators = GeneratorPool()

    def _parts(
        self,
        config: SessionConfig,
        state: dict[str, Any] | None = None,
        references: np.ndarray | None = None,
    ) -> _Parts:
        """A session's generator (from the pool), optimizer and references (blocking)."""
        generator = _generator(config, self.device, self.generators)
        try:
            return _build(config, generator, state, references)  # type: ignore[arg-type]
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
        while session_id in self.sessions or (self.data_dir / f"{session_id}.h5").exists():
            session_id = secrets.token_hex(4)
        record = {"session_id": session_id, **parts.record}

        def create_file() -> SessionFile:
            store = SessionFile(self.data_dir / f"{session_id}.h5", record, status="created")
            if parts.references is not None:
                store.write_references(parts.references)
            store.log_event("created")
            return store

        try:
            store = await asyncio.to_thread(create_file)
        except BaseException:
            _release(parts)
            raise
        return self._add(session_id, config, parts, store)

    def _add(
        self,
        session_id: str,
        config: SessionConfig,
        parts: _Parts,
        store: SessionFile,
        state: str = "created",
    ) -> Session:
        session = Session(
            session_id, config, parts.engine, store, parts.generations, parts.references,
            self.transport, state=state, changes=Changes(self.changes),
        )  # fmt: skip
        self.sessions[session_id] = session
        self.changes.bump()
        return session

    async def restore(self) -> list[str]:
        """Reopen every unfinished session file in the data directory; their ids."""
        restored = []
        for path in sorted(self.data_dir.glob("*.h5")):
            try:
                session = await self._restore(path)
            except (XDreamError, OSError, KeyError, ValueError) as exc:
                log.error("cannot resume %s: %s", path, exc)
                continue
            if session is not None:
                restored.append(session.id)
        return restored

    async def _restore(self, path: Path) -> Session | None:
        def open_parts() -> (
            tuple[SessionFile, SessionConfig, _Parts, int, set[str], int | None, History] | None
        ):
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") != FORMAT or f.attrs.get("status") in (
                    "finished",
                    "aborted",
                ):
                    return None
            store = SessionFile.reopen(path)
            parts = None
            try:
                record = store.config
                config = SessionConfig.model_validate(record["config"])
                state = store.optimizer_state()
                done = store.generations_done()
                parts = self._parts(config, state, store.references())
                store.drop_partial_generation(done)
                responses = store.table(
                    "responses", columns=("presentation_id", "generation", "counts")
                )
                late = store.table("late_responses", columns=("presentation_id",))
                ids = responses.get("presentation_id", np.array([], dtype=object))
                gens = responses.get("generation", np.array([], dtype=np.int32))
                seen = set(ids[gens < done]) | set(late.get("presentation_id", []))
                counts = responses.get("counts")
                n_channels = None if counts is None else int(counts.shape[1])
                store.log_event("server_restarted", done)
                history = History.from_store(store, done)
                return store, config, parts, done, seen, n_channels, history
            except BaseException:
                store.close()
                if parts is not None:
                    _release(parts)
                raise

        opened = await asyncio.to_thread(open_parts)
        if opened is None:
            return None
        store, config, parts, done, seen, n_channels, history = opened
        session_id = str(store.config["session_id"])
        session = self._add(session_id, config, parts, store, state=store.status)
        session.restore(history, done, seen, n_channels)
        return session

    def past(self) -> list[dict[str, Any]]:
        """Session files in the data directory that this server run does not hold."""
        return list_stored(self.data_dir, set(self.sessions))

    async def read(self, session_id: str, fn: Callable[[SessionFile], T]) -> T:
        """``fn(store)`` on the file of a session of this run (on its I/O thread) or of a
        past one (read-only; no summary or history is read for it)."""
        if session_id in self.sessions:
            return await self.sessions[session_id].read(fn)
        return await asyncio.to_thread(read_closed, stored_path(self.data_dir, session_id), fn)

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
