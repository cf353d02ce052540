"""What the journal costs an acknowledgement: seconds to store one ``responses`` message
(as the server does before it answers), with the journal (write + fsync, then HDF5) and
without (HDF5 only), on the disk the data folder is on.

    python benchmarks/journal.py --messages 300 --out benchmarks/results/journal.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from protocol.messages import Response
from server.storage.recovery import journal_path
from server.storage.session_file import SessionFile

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"


def seconds_per_message(folder: Path, journal: bool, messages: int, size: int) -> list[float]:
    path = folder / f"{'journal' if journal else 'plain'}.h5"
    store = SessionFile(path, {}, journal=journal_path(path) if journal else None)
    times = []
    for m in range(messages):
        batch = [
            Response(presentation_id=f"m{m}-{i}", stimulus_id=f"g0-e{i}", counts=[float(i)] * 4)
            for i in range(size)
        ]
        t0 = time.perf_counter()
        store.append_responses(0, 0, batch, "zmq:bench")
        times.append(time.perf_counter() - t0)
    store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--size", type=int, default=40, help="responses per message")
    parser.add_argument("--folder", type=Path, help="on the disk to measure (default: a temp)")
    parser.add_argument("--out", type=Path, default=RESULTS / "journal.json")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"plain": [], "journal": []}
    for _ in range(2):  # alternated, so that a drift of the machine hits both alike
        for kind in runs:
            with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
                runs[kind] += seconds_per_message(
                    Path(tmp), kind == "journal", args.messages, args.size
                )
    result = {
        "machine": platform.platform(),
        "command": f"python benchmarks/journal.py --messages {args.messages} --size {args.size}",
        "responses_per_message": args.size,
        **{f"median_ms_{kind}": round(1000 * float(np.median(t)), 3) for kind, t in runs.items()},
        **{
            f"p95_ms_{kind}": round(1000 * float(np.quantile(t, 0.95)), 3)
            for kind, t in runs.items()
        },
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
