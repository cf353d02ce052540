"""benchmarks/loop.py, run small: the loop benchmark's sessions start on a real server and
every measurement comes back (it rotted once, unseen: its sessions were refused after the
server began confining weights to the folders it serves). No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_loop_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "loop.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/loop.py", "--generations", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["compute_s"]) == 2
    for latency in result["latency"].values():  # every generation timed on both sides
        assert len(latency["server_side_s"]) == 2 and len(latency["rig_side_s"]) == 2
    assert result["in_process"]["images_per_s"] > 0
    assert result["through_loop"]["images_per_s"] > 0
