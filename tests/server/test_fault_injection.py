"""Acknowledged means durable: ``xdream serve`` killed (SIGKILL, by strace) at 30 points
spread over every write a whole session makes to its files, inside HDF5's writes and
flushes included. After each restart the session completes with every acknowledged
response stored exactly once, every generation once, and no damaged file left.

The longer sweep (200+ points, with rig reconnects) is benchmarks/faults.py; its results
are in docs/RELIABILITY.md."""

from __future__ import annotations

import pytest

from xdream.testing.faults import count_writes, run_kill_point

KILL_POINTS = 30


@pytest.fixture(scope="module")
def writes(tmp_path_factory) -> int:
    return count_writes(tmp_path_factory.mktemp("count"))


@pytest.mark.slow
def test_a_kill_at_any_write_loses_nothing_acknowledged(writes, tmp_path):
    assert writes > 100  # a real session's worth of writes, so the sweep means something
    points = sorted({1 + i * (writes - 1) // (KILL_POINTS - 1) for i in range(KILL_POINTS)})
    results = [run_kill_point(tmp_path / f"kill-{n}", n) for n in points]
    failures = [
        r.as_json()
        for r in results
        if r.problems or r.lost or r.stored_twice or r.generations_twice or r.damaged
        or (r.created and not r.completed)
    ]  # fmt: skip
    assert not failures, failures
    assert sum(r.killed for r in results) >= KILL_POINTS - 2  # the last writes may not come
    assert sum(r.acknowledged for r in results) > 0
