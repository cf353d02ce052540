"""A session's test doubles and helpers: a transport that records what a session sends,
and answers computed from the images (so scores are known), shared by the session and pool
tests."""

from __future__ import annotations

import asyncio
import contextlib

import h5py
import numpy as np

from protocol.codec import Message
from protocol.messages import GenerationAck, Response, Responses
from server.sessions.config import SessionConfig
from server.sessions.manager import SessionManager


class FakeTransport:
    """Records every block a session sends; ``connected`` = False models no presenter."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        #: What recorders following the rig were told: (rig, message).
        self.told: list[tuple[str | None, Message]] = []
        self.connected = True
        #: What recorded_channels() answers.
        self.channels: int | None = None
        self.arrived = asyncio.Event()

    def deliver(self, session_id: str, rig: str | None, message: Message) -> str | None:
        if not self.connected:
            return None
        self.sent.append(message)
        self.arrived.set()
        return "c1"

    def presenters(self) -> list[str]:
        return ["rig"] if self.connected else []

    def recorded_channels(self, rig: str | None) -> int | None:
        return self.channels

    def tell_recorders(self, rig: str | None, message: Message) -> None:
        self.told.append((rig, message))

    async def next(self, after: int, timeout: float = 20.0) -> Message:
        """The first block sent after the first ``after`` ones."""
        async with asyncio.timeout(timeout):
            while len(self.sent) <= after:
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent[after]


def config(**kw) -> SessionConfig:
    base = dict(generator="pixel", image_size=16, population=6, generations=3, seed=1)
    return SessionConfig(**{**base, **kw})


def brightness(image: np.ndarray) -> float:
    return float(np.asarray(image, dtype=np.float64).mean())


def responses_for(message: Message, only=None, channels: int = 1) -> Responses:
    """One response per presentation asked for, scored by image brightness."""
    content = message.content
    rows = []
    for stimulus in content.stimuli:
        if only is not None and stimulus.stimulus_id not in only:
            continue
        score = brightness(message.buffers[stimulus.buffer])
        for r in range(stimulus.repeats):
            rows.append(
                Response(
                    presentation_id=f"{stimulus.stimulus_id}-b{content.block}-r{r}",
                    stimulus_id=stimulus.stimulus_id,
                    counts=[score] * channels,
                )
            )
    return Responses(generation=content.generation, responses=rows)


async def answer(session, message: Message, **kw):
    session.on_ack(
        GenerationAck(generation=message.content.generation, block=message.content.block), "c1"
    )
    return await session.ingest_responses(responses_for(message, **kw), "test", "rig")


def run(coro):
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def manager_in(tmp_path, transport=None):
    manager = SessionManager(tmp_path, transport or FakeTransport())
    try:
        yield manager
    finally:
        await manager.close()


@contextlib.asynccontextmanager
async def started(tmp_path, **settings):
    """A started session of ``config(**settings)``, with the transport that records what it
    sends."""
    transport = FakeTransport()
    async with manager_in(tmp_path, transport) as manager:
        session = await manager.create(config(**settings))
        await session.start()
        yield session, transport


async def wait_state(session, state: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while session.state != state:
            await asyncio.sleep(0.01)


def crashed_sessions(
    tmp_path, sessions: int = 1, answered: int = 3, unclosed: bool = True, **settings
) -> list[tuple[str, Message]]:
    """Sessions (of ``config(generations=3, **settings)``) that answered generation 0 and
    ``answered`` stimuli of generation 1, then a "kill -9" (``unclosed``; else a clean
    shutdown): each one's id, with the generation-1 block it was sent."""

    async def first_run():
        crashed = []
        for _ in range(sessions):  # a manager each: the fake transport counts one session
            transport = FakeTransport()
            manager = SessionManager(tmp_path, transport)
            session = await manager.create(config(**{"generations": 3, **settings}))
            await session.start()
            await answer(session, await transport.next(0))
            gen1 = await transport.next(1)
            ids = [s.stimulus_id for s in gen1.content.stimuli]
            await answer(session, gen1, only=ids[:answered])  # acknowledged, then the crash
            crashed.append((session.id, gen1))
            await manager.close()  # the file stays "running", as after kill -9 ...
        return crashed

    crashed = run(first_run())
    for session_id, _ in crashed if unclosed else ():  # ... and, as after kill -9, never closed
        with h5py.File(tmp_path / f"{session_id}.h5", "r+") as f:
            f.attrs["closed"] = False
    return crashed
