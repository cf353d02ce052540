"""Generators shared by sessions: one instance per configuration, calls batched when
sessions are ready together, errors kept to the caller, released with the last session."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from protocol.errors import ConfigError
from server.engine.generators import make_generator
from server.engine.pool import GeneratorPool
from server.sessions.config import SessionConfig
from server.sessions.manager import SessionManager
from tests.server.sessions.doubles import FakeTransport

PIXEL = dict(generator="pixel", image_size=32, population=4)


class SlowPixel:
    """A pixel generator that takes a while per call and records its batch sizes."""

    def __init__(self) -> None:
        self.inner = make_generator("pixel", resolution=4, image_size=16, device="cpu")
        self.name = "pixel"
        self.device = self.inner.device
        self.code_dim = self.inner.code_dim
        self.calls: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def generate(self, codes: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls.append(len(codes))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.3)
        with self._lock:
            self.running -= 1
        return self.inner.generate(codes)


def call_together(generators, codes) -> dict[int, np.ndarray]:
    """Each generator's ``generate`` in its own thread; the first starts before the rest."""
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = generators[i].generate(codes[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(generators))]
    threads[0].start()
    time.sleep(0.1)  # the generator is busy with the first call while the others arrive
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    return results


CODES = [np.random.default_rng(0).uniform(-1, 1, (n, 48)) for n in (5, 3, 2)]


def test_calls_waiting_together_run_as_one_batch_with_the_same_images():
    pool = GeneratorPool(batch_cpu=True)  # as on a GPU
    slow = SlowPixel()
    generators = [pool.acquire("k", lambda: slow) for _ in range(3)]  # built once
    assert pool.in_use() == {"k": 3}
    results = call_together(generators, CODES)
    assert slow.calls == [5, 5]  # the two that waited together ran as one batch of 3 + 2
    assert slow.most_at_once == 1
    for i, images in results.items():
        np.testing.assert_array_equal(images, slow.inner.generate(CODES[i]))
    for g in generators:
        g.close()
    assert pool.in_use() == {}


def test_on_the_cpu_calls_run_side_by_side_on_one_shared_generator():
    pool = GeneratorPool()
    slow = SlowPixel()
    generators = [pool.acquire("k", lambda: slow) for _ in range(3)]
    results = call_together(generators, CODES)
    assert sorted(slow.calls) == [2, 3, 5] and slow.most_at_once == 3
    for i, images in results.items():
        np.testing.assert_array_equal(images, slow.inner.generate(CODES[i]))


def test_a_bad_call_fails_only_its_caller_and_a_released_generator_refuses():
    pool = GeneratorPool(batch_cpu=True)
    slow = SlowPixel()
    a = pool.acquire("k", lambda: slow)
    b = pool.acquire("k", lambda: slow)
    with pytest.raises(ConfigError, match="expects codes of shape"):
        a.generate(np.zeros((2, slow.code_dim + 1)))
    assert b.generate(np.zeros((2, slow.code_dim))).shape == (2, 16, 16, 3)
    assert a.name == "pixel" and a.code_dim == slow.code_dim  # the generator's attributes
    shared = a._shared
    a.close()
    a.close()  # twice is harmless
    assert pool.in_use() == {"k": 1}
    b.close()
    with pytest.raises(RuntimeError, match="released"):
        shared.generate(np.zeros((1, slow.code_dim)))


def test_sessions_with_the_same_generator_share_it_until_the_last_stops(tmp_path):
    async def main() -> tuple[dict, dict, dict]:
        manager = SessionManager(tmp_path, FakeTransport())
        a = await manager.create(SessionConfig(**PIXEL, seed=1))
        b = await manager.create(SessionConfig(**PIXEL, seed=2))
        c = await manager.create(SessionConfig(**{**PIXEL, "image_size": 16}))
        d = await manager.create(SessionConfig(**PIXEL, precision="bfloat16"))
        shared = manager.generators.in_use()
        assert a.engine.generator._shared is b.engine.generator._shared
        await a.stop()
        after_one = manager.generators.in_use()
        for session in (b, c, d):
            await session.stop()
        return shared, after_one, manager.generators.in_use()

    shared, after_one, after_all = asyncio.run(main())
    assert sorted(shared.values()) == [1, 1, 2]  # a and b share; c and d differ
    assert sorted(after_one.values()) == [1, 1, 1]
    assert after_all == {}


def test_a_session_that_cannot_be_built_gives_its_generator_back(tmp_path):
    async def main() -> dict:
        manager = SessionManager(tmp_path, FakeTransport())
        with pytest.raises(ConfigError, match="budget"):
            await manager.create(SessionConfig(**{**PIXEL, "budget": 1}))
        return manager.generators.in_use()

    assert asyncio.run(main()) == {}


class TooBigAtOnce(SlowPixel):
    """Fails on more than 4 codes at once, like a GPU running out of memory."""

    attempts: list[int]

    def generate(self, codes: np.ndarray) -> np.ndarray:
        self.attempts = [*getattr(self, "attempts", []), len(codes)]
        if len(codes) > 4:
            raise RuntimeError("out of memory")
        return super().generate(codes)


def test_a_batch_that_fails_as_a_whole_is_retried_request_by_request():
    pool = GeneratorPool(batch_cpu=True)
    big = TooBigAtOnce()
    generators = [pool.acquire("k", lambda: big) for _ in range(3)]
    codes = [np.random.default_rng(1).uniform(-1, 1, (n, 48)) for n in (2, 3, 2)]
    results = call_together(generators, codes)
    assert big.attempts == [2, 5, 3, 2]  # 3 + 2 together failed, then each alone
    for i, images in results.items():
        np.testing.assert_array_equal(images, big.inner.generate(codes[i]))
    with pytest.raises(RuntimeError, match="out of memory"):  # alone and too big: its error
        generators[0].generate(np.zeros((6, big.code_dim)))


def test_a_session_whose_file_cannot_be_written_gives_its_generator_back(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("server.sessions.manager.SessionFile", refuse)

    async def main() -> dict:
        manager = SessionManager(tmp_path, FakeTransport())
        with pytest.raises(OSError, match="disk full"):
            await manager.create(SessionConfig(**PIXEL))
        return manager.generators.in_use()

    assert asyncio.run(main()) == {}


def test_closing_the_server_while_a_session_closes_itself_releases_once(tmp_path, monkeypatch):
    """A finished session closes its file itself; the server's close may cancel that close
    halfway. The second close must still finish, and the generator be given back."""
    from server.storage.session_file import SessionFile
    from tests.server.sessions.doubles import answer

    slow_close = SessionFile.close

    def close(self, *args, **kwargs):
        time.sleep(0.3)  # the file's close is still running when the server closes
        slow_close(self, *args, **kwargs)

    monkeypatch.setattr(SessionFile, "close", close)

    async def main() -> tuple[str, dict]:
        transport = FakeTransport()
        manager = SessionManager(tmp_path, transport)
        session = await manager.create(SessionConfig(**PIXEL, generations=1))
        await session.start()
        await answer(session, await transport.next(0))
        while not session._closed:  # the session is closing itself now
            await asyncio.sleep(0.01)
        await manager.close()
        return session.state, manager.generators.in_use()

    state, in_use = asyncio.run(main())
    assert state == "finished" and in_use == {}
