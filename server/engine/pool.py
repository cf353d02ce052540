"""Generators shared by the sessions of one server, with their calls batched.

Sessions that use the same generator (same name, weights, image size, device and precision)
share one instance: one copy of the weights in (GPU) memory, however many sessions run.

On a GPU each shared generator has one worker thread; a session's compute thread hands it
the codes and waits. The worker takes every request waiting at that moment and runs them as
one batch, so sessions that are ready together cost one generator call (on a GPU, nearly the
price of one), and a session alone is never held back waiting for company. On the CPU,
calls run side by side in their sessions' threads instead: there a batch of 80 took longer
than two calls of 40 at once (docs/BENCHMARKS.md, section 8).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Hashable

import numpy as np
import torch

from protocol.errors import ConfigError
from server.engine.generators import Generator

log = logging.getLogger(__name__)


class _Shared:
    """One generator, its worker thread, and how many sessions use it."""

    def __init__(self, key: Hashable, generator: Generator, batch: bool) -> None:
        self.key = key
        self.generator = generator
        self.batch = batch
        self.users = 0
        #: Sizes of the batches run (kept short), for tests and benchmarks.
        self.batches: list[int] = []
        self._requests: queue.SimpleQueue[tuple[np.ndarray, concurrent.futures.Future] | None]
        self._requests = queue.SimpleQueue()
        #: Set once no request will be served any more; guarded by ``_gate``.
        self._stopped = False
        self._gate = threading.Lock()
        if batch:
            threading.Thread(
                target=self._serve, name=f"generator-{generator.name}", daemon=True
            ).start()

    def generate(self, codes: np.ndarray) -> np.ndarray:
        if not self.batch:  # inference does not change the module: threads may share it
            return self.generator.generate(codes)
        future: concurrent.futures.Future[np.ndarray] = concurrent.futures.Future()
        with self._gate:
            if self._stopped:  # e.g. a proposal still computing when its session stopped
                raise RuntimeError(f"generator {self.generator.name} was released")
            self._requests.put((codes, future))
        return future.result()

    def stop(self) -> None:
        """Finish what is queued, then end the worker."""
        if self.batch:
            self._requests.put(None)

    def _serve(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                with self._gate:  # whoever still waits hears that no answer will come
                    self._stopped = True
                    while not self._requests.empty():
                        late = self._requests.get_nowait()
                        if late is not None:
                            late[1].set_exception(RuntimeError("generator released"))
                return
            batch = [first]
            while True:  # everything waiting now joins; nobody waits for company
                try:
                    more = self._requests.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._requests.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._run(batch)

    def _run(self, batch: list[tuple[np.ndarray, concurrent.futures.Future]]) -> None:
        sizes = [len(codes) for codes, _ in batch]
        self.batches = [*self.batches[-99:], sum(sizes)]
        try:
            images = self.generator.generate(np.concatenate([codes for codes, _ in batch]))
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
            else:  # e.g. out of GPU memory for the whole batch: each on its own then
                for request in batch:
                    self._run([request])
            return
        start = 0
        for size, (_, future) in zip(sizes, batch, strict=True):
            future.set_result(images[start : start + size])
            start += size


class PooledGenerator:
    """What a session's engine holds: the shared generator's attributes, a batched
    :meth:`generate`, and :meth:`close` to give it back (an
    :class:`~server.engine.loop.ImageSource`, like the generator itself)."""

    def __init__(self, pool: GeneratorPool, shared: _Shared) -> None:
        self._pool = pool
        self._shared = shared
        self._closed = False

    @property
    def generator(self) -> Generator:
        """The shared generator itself, for what the batched :meth:`generate` does not do
        (inverting images into its codes: server/engine/inversion.py)."""
        return self._shared.generator

    @property
    def name(self) -> str:
        return self._shared.generator.name

    @property
    def code_dim(self) -> int:
        return self._shared.generator.code_dim

    @property
    def image_size(self) -> int:
        return self._shared.generator.image_size

    @property
    def device(self) -> torch.device:
        return self._shared.generator.device

    def code_frequencies(self) -> np.ndarray | None:
        return self._shared.generator.code_frequencies()

    def generate(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes)
        generator = self._shared.generator
        if codes.ndim != 2 or codes.shape[1] != generator.code_dim:  # checked before
            raise ConfigError(  # batching, so one session's bad codes fail only that session
                f"{generator.name} expects codes of shape (n, {generator.code_dim}), "
                f"got {codes.shape}"
            )
        return self._shared.generate(codes)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.release(self._shared)


class GeneratorPool:
    """The shared generators of one server, by key; each lives while a session uses it.
    ``batch_cpu`` batches CPU generators too (tests and benchmarks)."""

    def __init__(self, batch_cpu: bool = False) -> None:
        self.batch_cpu = batch_cpu
        self._shared: dict[Hashable, _Shared] = {}
        self._lock = threading.Lock()

    def acquire(self, key: Hashable, build: Callable[[], Generator]) -> PooledGenerator:
        """The generator for ``key``, built by ``build()`` if no session holds one."""
        with self._lock:
            shared = self._shared.get(key)
            if shared is not None:
                shared.users += 1
                return PooledGenerator(self, shared)
        generator = build()  # outside the lock: loading weights takes seconds
        built = _Shared(key, generator, self.batch_cpu or generator.device.type != "cpu")
        with self._lock:
            shared = self._shared.setdefault(key, built)
            shared.users += 1
        if shared is not built:  # another session built the same one meanwhile
            built.stop()
        return PooledGenerator(self, shared)

    def release(self, shared: _Shared) -> None:
        with self._lock:
            shared.users -= 1
            if shared.users > 0:
                return
            del self._shared[shared.key]
        shared.stop()
        log.info("generator %s released", shared.generator.name)

    def in_use(self) -> dict[Hashable, int]:
        """Users per shared generator."""
        with self._lock:
            return {key: shared.users for key, shared in self._shared.items()}
