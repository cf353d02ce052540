"""The crash soak: kill ``xdream serve`` at many writes of a session (SIGKILL by strace, the
n-th ``pwrite64`` to its files) and count what a lab cares about; see
xdream/testing/faults.py for what one kill point does.

    python benchmarks/faults.py --points 200 --out benchmarks/results/faults.json

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

from xdream.testing.faults import count_writes, run_kill_point

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "faults.json")
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.exists() else {"points": []}
    with tempfile.TemporaryDirectory() as tmp:
        writes = done.get("writes") or count_writes(Path(tmp))
        done.update(writes=writes, machine=platform.platform(), command=" ".join(
            ["python benchmarks/faults.py", f"--points {args.points}"]))  # fmt: skip
        seen = {p["write"] for p in done["points"]}
        for i in range(args.points):
            write = 1 + i * (writes - 1) // max(args.points - 1, 1)
            if write in seen:
                continue
            started = time.perf_counter()
            result = run_kill_point(Path(tmp) / f"kill-{write}", write).as_json()
            result["seconds"] = round(time.perf_counter() - started, 2)
            done["points"].append(result)
            seen.add(write)
            args.out.write_text(json.dumps(done, indent=1))
            print(json.dumps(result), flush=True)
    points = done["points"]
    summary = {
        "kill_points": len(points),
        "killed": sum(p["killed"] for p in points),
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
    done["summary"] = summary
    args.out.write_text(json.dumps(done, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
