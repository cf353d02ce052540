"""Acknowledged means durable: ``xdream serve`` killed (SIGKILL, by strace) at points spread
over every write a whole session makes to its file, inside HDF5's writes and flushes
included; at every fsync of its journal; and, after a first kill, again while the restart
rebuilds the file. After each restart the session completes with every acknowledged
response stored exactly once, every generation once, and no damaged file left.

The longer sweep (200+ points, with rig reconnects) is benchmarks/faults.py; its results
are in docs/RELIABILITY.md."""

from __future__ import annotations

import pytest

from xdream.testing.faults import (
    SYNC,
    WRITE,
    KillPoint,
    count_calls,
    count_start_up_writes,
    run_kill_point,
    spread,
)

WRITE_KILLS = 30
START_UP_KILLS = 4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def writes(tmp_path_factory) -> int:
    return count_calls(tmp_path_factory.mktemp("count"), WRITE)


def check(results: list[KillPoint]) -> None:
    failures = [r.as_json() for r in results if r.failed]
    assert not failures, failures
    assert sum(r.acknowledged for r in results) > 0


def test_a_kill_at_any_write_loses_nothing_acknowledged(writes, tmp_path):
    assert writes > 100  # a real session's worth of writes, so the sweep means something
    results = [run_kill_point(tmp_path / f"kill-{n}", n) for n in spread(writes, WRITE_KILLS)]
    check(results)
    assert sum(r.killed for r in results) >= WRITE_KILLS - 2  # the last writes may not come


def test_a_kill_at_any_fsync_of_the_journal_loses_nothing_acknowledged(tmp_path):
    syncs = count_calls(tmp_path / "count", SYNC)
    assert syncs >= 6  # one per acknowledgement and generation, at least
    results = [run_kill_point(tmp_path / f"kill-{n}", n, SYNC) for n in range(1, syncs + 1)]
    check(results)
    assert all(r.killed for r in results)


def test_a_kill_while_the_restart_rebuilds_the_file_loses_nothing(writes, tmp_path):
    first = writes // 2  # mid-session: the restart has a file to rebuild
    start_up = count_start_up_writes(tmp_path / "count", first)
    assert start_up > 10  # the rebuild writes a whole file
    results = [
        run_kill_point(tmp_path / f"kill-{n}", first, start_up_write=n)
        for n in spread(start_up, START_UP_KILLS)
    ]
    check(results)
    assert sum(r.killed_in_start_up for r in results) >= START_UP_KILLS - 1  # the last may not
