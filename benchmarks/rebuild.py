"""What a restart after a crash costs: seconds to write a session file anew from its journal
(as every restart of a session left unclosed does; server/storage/rebuild.py says why), the
images kept from the old file. Sessions of DeePSiM's shape: population 20, a 4,096-number
code, 256 x 256 images, with a rig's responses.

    python benchmarks/rebuild.py --generations 100 500 --out benchmarks/results/rebuild.json
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
from server.engine.loop import GenerationResult
from server.storage.rebuild import rebuild_from_journal
from server.storage.recovery import journal_path
from server.storage.session_file import SessionFile

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"
POPULATION, CODE, SIZE = 20, 4096, 256


def crashed_session(path: Path, generations: int) -> None:
    """A session file and journal as a kill leaves them: written, never closed."""
    rng = np.random.default_rng(0)
    store = SessionFile(path, {"session_id": path.stem}, status="running",
                        journal=journal_path(path))  # fmt: skip
    for g in range(generations):
        responses = [
            Response(presentation_id=f"p{g}-{i}", stimulus_id=f"g{g}-e{i}", counts=[float(i)])
            for i in range(POPULATION)
        ]
        store.append_responses(g, 0, responses, "zmq:bench")
        codes = rng.standard_normal((POPULATION, CODE)).astype(np.float32)
        images = rng.integers(0, 256, (POPULATION, SIZE, SIZE, 3), dtype=np.uint8)
        result = GenerationResult(g, codes, images, rng.random(POPULATION), {})
        store.write_generation(result, {"generation": g + 1, "mean": codes[0]})
    store.abandon()


def never(codes: np.ndarray) -> np.ndarray:
    raise AssertionError("every image is in the old file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--folder", type=Path, help="on the disk to measure (default: a temp)")
    parser.add_argument("--out", type=Path, default=RESULTS / "rebuild.json")
    args = parser.parse_args()
    rows = []
    for generations in args.generations:
        with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
            path = Path(tmp) / "s.h5"
            crashed_session(path, generations)
            t0 = time.perf_counter()
            done = rebuild_from_journal(path, journal_path(path), never, keep_old=False)
            seconds = time.perf_counter() - t0
            assert done.reused == generations and done.rendered == 0
            rows.append({
                "generations": generations,
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "journal_mb": round(journal_path(path).stat().st_size / 1e6, 1),
                "rebuild_s": round(seconds, 2),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/rebuild.py --generations " + " ".join(map(str, args.generations))
    result = {"machine": platform.platform(), "command": command, "population": POPULATION,
              "code": CODE, "image_size": SIZE, "runs": rows}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
