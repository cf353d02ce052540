"""A session's threads: work runs off the event loop, in order, and reads find the file
whether the session still writes it or has closed it."""

from __future__ import annotations

import asyncio
import threading

from server.sessions.workers import Workers
from server.storage.session_file import SessionFile


def test_compute_and_io_run_on_their_own_threads_and_reads_follow_the_file(tmp_path):
    async def main():
        store = SessionFile(tmp_path / "s.h5", {"session_id": "s"}, status="running")
        workers = Workers("s", store)
        loop_thread = threading.current_thread().name
        names = await asyncio.gather(
            workers.compute(lambda: threading.current_thread().name),
            workers.io(lambda: threading.current_thread().name),
        )
        assert names[0].startswith("compute-s") and names[1].startswith("io-s")
        assert loop_thread not in names
        for i in range(5):  # logged without waiting, written in order
            workers.log_event("tick", i, {"i": i})
        assert await workers.read(lambda s: [e.generation for e in s.events()]) == list(range(5))
        await workers.io(store.close)
        assert await workers.read(lambda s: s.status) == "running"  # read-only handle now
        workers.shutdown()

    asyncio.run(main())
