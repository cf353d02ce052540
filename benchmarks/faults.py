"""The crash soak: kill ``xdream serve`` (SIGKILL by strace) at many points of a session and
count what a lab cares about; see xdream/testing/faults.py for what one kill point does.
Three kinds of kill point:

- ``write``: at the n-th ``pwrite64`` to the session file (inside HDF5's writes and flushes),
  n spread over a whole session's writes (``--points``);
- ``fsync``: at the n-th fsync of the session's journal, every one of them;
- ``start-up``: first at a write mid-session, then again at the n-th write of the restart,
  while it rebuilds the file from its journal (``--start-up`` points).

    python benchmarks/faults.py --points 200 --start-up 50 --out benchmarks/results/faults.json

Resumable: points already in ``--out`` are skipped, each result is written as it comes.
Every kill point is also a rig reconnect (the rig outlives the server and registers again).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from xdream.testing.faults import (
    SYNC,
    WRITE,
    count_calls,
    count_start_up_writes,
    run_kill_point,
    spread,
)

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"


def summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kill_points": len(points),
        "killed": sum(p["killed"] for p in points),
        "killed_in_start_up": sum(p["killed_in_start_up"] for p in points),
        "sessions_created": sum(p["created"] for p in points),
        "sessions_completed": sum(p["completed"] for p in points),
        "acknowledged": sum(p["acknowledged"] for p in points),
        "acknowledged_lost": sum(p["lost"] for p in points),
        "stored_twice": sum(p["stored_twice"] for p in points),
        "generations_twice": sum(p["generations_twice"] for p in points),
        "damaged_files_left": sum(p["damaged"] for p in points),
        "trials": sum(p["trials"] for p in points),
        "problems": [p for p in points if p["problems"]],
    }


def kind(point: dict[str, Any]) -> str:
    if point.get("start_up_write") is not None:
        return "start-up"
    return "fsync" if point.get("syscall") == SYNC else "write"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="kills at HDF5 writes")
    parser.add_argument("--start-up", type=int, default=50, help="kills during the rebuild")
    parser.add_argument("--out", type=Path, default=RESULTS / "faults.json")
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    points: list[dict[str, Any]] = done.get("points", [])
    seen = {(p["syscall"], p["call"], p["start_up_write"]) for p in points}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        writes = done.get("writes") or count_calls(work / "writes", WRITE)
        syncs = done.get("syncs") or count_calls(work / "syncs", SYNC)
        first = writes // 2
        start_up = done.get("start_up_writes") or count_start_up_writes(work / "start", first)
        command = f"python benchmarks/faults.py --points {args.points} --start-up {args.start_up}"
        done.update(
            writes=writes, syncs=syncs, start_up_writes=start_up, machine=platform.platform(),
            command=command,
        )  # fmt: skip
        plan = [(WRITE, n, None) for n in spread(writes, args.points)]
        plan += [(SYNC, n, None) for n in range(1, syncs + 1)]
        plan += [(WRITE, first, n) for n in spread(start_up, args.start_up)]
        for syscall, call, start_up_write in plan:
            if (syscall, call, start_up_write) in seen:
                continue
            started = time.perf_counter()
            where = work / f"kill-{syscall}-{call}-{start_up_write}"
            result = run_kill_point(where, call, syscall, start_up_write).as_json()
            result["seconds"] = round(time.perf_counter() - started, 2)
            points.append(result)
            args.out.write_text(json.dumps({**done, "points": points}, indent=1))
            print(json.dumps(result), flush=True)
    done["points"] = points
    done["summary"] = {name: summary([p for p in points if kind(p) == name])
                       for name in ("write", "fsync", "start-up")}  # fmt: skip
    done["summary"]["all"] = summary(points)
    args.out.write_text(json.dumps(done, indent=1))
    counts = {k: {**v, "problems": len(v["problems"])} for k, v in done["summary"].items()}
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
