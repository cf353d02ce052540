"""The two threads of a session, which keep computing and writing off the event loop.

The optimizer and the generator run on the compute thread, HDF5 reads and writes on the
I/O thread, one of each per session, so each kind keeps its order. h5py serialises all calls
behind one lock anyway; what matters is that the event loop (ZeroMQ, HTTP, heartbeats)
never waits for either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from server.storage.catalog import read_closed
from server.storage.session_file import SessionFile

log = logging.getLogger(__name__)
T = TypeVar("T")


class Workers:
    """The compute and I/O threads of session ``name``, around its session file."""

    def __init__(self, name: str, store: SessionFile) -> None:
        self.store = store
        self._compute = concurrent.futures.ThreadPoolExecutor(1, f"compute-{name}")
        self._io = concurrent.futures.ThreadPoolExecutor(1, f"io-{name}")
        self._shut_down = False

    async def compute(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._compute, fn, *args)

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def log_event(self, kind: str, generation: int, detail: dict[str, Any]) -> None:
        """Log an event to the file without waiting (the I/O thread keeps the order)."""
        future = asyncio.get_running_loop().run_in_executor(
            self._io, lambda: self.store.log_event(kind, generation, **detail)
        )
        future.add_done_callback(_log_failure)

    async def read(self, fn: Callable[[SessionFile], T]) -> T:
        """``fn(store)`` off the event loop: on the I/O thread while the session writes, on
        a read-only handle once the file is closed. Whether it is open is asked on the I/O
        thread itself, in order with a close already queued there."""
        store = self.store

        def on_io_thread() -> T:
            return fn(store) if store.is_open else read_closed(store.path, fn)

        if self._shut_down:  # the file is closed for good, and the I/O thread gone
            return await asyncio.to_thread(read_closed, store.path, fn)
        return await self.io(on_io_thread)

    def shutdown(self, then: Callable[[], None] | None = None) -> None:
        """Stop both threads; a computation still running (a cancelled proposal) is not
        waited for. ``then`` runs once both have ended (e.g. to give their memory back:
        a cancelled proposal of a large session holds hundreds of MB until it ends)."""
        self._shut_down = True
        self._compute.shutdown(wait=False)
        self._io.shutdown(wait=False)
        if then is not None:
            threading.Thread(target=self._after_threads, args=(then,), daemon=True).start()

    def _after_threads(self, then: Callable[[], None]) -> None:
        self._compute.shutdown(wait=True)
        self._io.shutdown(wait=True)
        then()


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not log a session event: %r", future.exception())
