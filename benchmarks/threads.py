"""Two threads on one unit against each thread alone: does interleaving two evolutions in the
same blocks cost either of them anything?

Over the real path: an ``xdream serve`` and an ``xdream simulate`` (the rig, its own
process, ZeroMQ on loopback). Per seed, three sessions of the same length and population
per thread: the pair (thread 0 and thread 1 interleaved in every block), thread 0 alone
(same seed) and thread 1 alone (seed + 1, the seed a second thread gets). Each row of the
results is one thread of one session, read back from its session file: best score, first
and last generation means, and the per-generation maxima.

    python benchmarks/threads.py --out benchmarks/results/threads.jsonl --seeds 3
    python benchmarks/threads.py --out benchmarks/results/threads.jsonl --report

Resumable: a (noise, seed, run) already in ``--out`` is not run again.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from server.engine.statistics import History
from server.storage.session_file import SessionFile
from xdream.testing.servers import Server, xdream

#: The two threads: the default search on the offline generator, and the 2020 paper's GA on
#: raw pixels (another generator, another optimizer).
THREADS = (
    {"name": "fourier+cmaes", "generator": "fourier", "optimizer": "cmaes"},
    {"name": "pixel+ga", "generator": "pixel", "optimizer": "ga"},
)
TARGET = "efficientnet-lite0:_fc:1"


def _session(server: Server, rig: str, seed: int, run: str, args: argparse.Namespace) -> Path:
    """Run one session to the end on ``rig``; its file."""
    common: dict[str, Any] = {
        "name": f"threads {run} seed {seed}",
        "rig": rig,
        "generations": args.generations,
        "population": args.population,
        "references_per_generation": 0,
        "response_timeout_s": 30.0,
    }
    if run == "pair":
        config = {**common, "seed": seed, "threads": [dict(t) for t in THREADS]}
    else:
        k = int(run[-1])  # alone-0, alone-1
        thread = {key: v for key, v in THREADS[k].items() if key != "name"}
        config = {**common, **thread, "seed": seed + k}
    status, body = server.api("POST", "/api/sessions", config)
    if status != 201:
        raise RuntimeError(f"{run}: {body}")
    session_id = body["id"]
    server.api("POST", f"/api/sessions/{session_id}/start")
    while True:
        status, detail = server.api("GET", f"/api/sessions/{session_id}")
        if detail["state"] in ("finished", "aborted"):
            break
        if detail.get("failure") or detail["state"] == "paused":
            raise RuntimeError(f"{run}: session {session_id} stopped: {detail.get('failure')}")
        time.sleep(1.0)
    return server.data / f"{session_id}.h5"


def _rows(path: Path, noise: str, seed: int, run: str) -> list[dict[str, Any]]:
    """One row per thread of the session stored at ``path``."""
    store = SessionFile.reopen(path, mode="r")
    try:
        done = store.generations_done()
        threads = [0, 1] if run == "pair" else [int(run[-1])]
        rows = []
        for position, thread in enumerate(threads):
            history = History.of(store.generation_scores(done, position))
            rows.append(
                {
                    "noise": noise,
                    "seed": seed,
                    "run": run,
                    "thread": THREADS[thread]["name"],
                    "generations": done,
                    "best": history.best_score,
                    "first_mean": history.means[0],
                    "last_mean": history.means[-1],
                    "max": history.maxima,
                    "mean": history.means,
                }
            )
        return rows
    finally:
        store.close()


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {(r["noise"], r["seed"], r["run"]) for r in map(json.loads, out.open())}
    data = Path(tempfile.mkdtemp(prefix="xdream-threads-"))
    server = Server(data / "sessions")
    try:
        for noise in args.noise:
            rig = f"sim-{noise.replace(':', '')}"
            simulator = xdream(
                "simulate",
                "--server",
                server.zmq,
                "--name",
                rig,
                "--target",
                args.target,
                "--noise",
                noise,
                "--seed",
                "7",
                stdout=subprocess.DEVNULL,
                stderr=(data / f"{rig}.log").open("w"),
            )
            try:
                for seed in range(args.seeds):
                    for name in ("pair", "alone-0", "alone-1"):
                        if (noise, seed, name) in done:
                            continue
                        t0 = time.perf_counter()
                        path = _session(server, rig, seed, name, args)
                        rows = _rows(path, noise, seed, name)
                        for row in rows:
                            row.update(
                                seconds=time.perf_counter() - t0,
                                target=args.target,
                                population=args.population,
                                machine=platform.node(),
                            )
                        with out.open("a") as f:
                            f.writelines(json.dumps(r) + "\n" for r in rows)
                        print(
                            f"{noise} seed {seed} {name}: "
                            + ", ".join(f"{r['thread']} best {r['best']:.2f}" for r in rows),
                            flush=True,
                        )
            finally:
                simulator.terminate()
                simulator.wait(30)
    finally:
        server.stop()


def _by_seed(
    rows: list[dict[str, Any]], noise: str, run: str, thread: str
) -> dict[int, dict[str, Any]]:
    """The rows of ``thread`` in ``run`` at ``noise``, by seed."""
    return {
        r["seed"]: r for r in rows if (r["noise"], r["run"], r["thread"]) == (noise, run, thread)
    }


def report(path: Path) -> str:
    """Per noise level and thread: the pair's best and last-generation mean against the
    thread alone (median over seeds of the per-seed ratio), and the last-generation means
    themselves (mean over seeds)."""
    rows = [json.loads(line) for line in path.open()]
    lines = [
        "| noise | thread | seeds | best, paired / alone (median; per seed) "
        "| last-generation mean, paired / alone (median) | last-generation mean, "
        "paired vs alone (mean over seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for noise in dict.fromkeys(r["noise"] for r in rows):
        for k, thread in enumerate(t["name"] for t in THREADS):
            paired = _by_seed(rows, noise, "pair", thread)
            alone = _by_seed(rows, noise, f"alone-{k}", thread)
            seeds = sorted(paired.keys() & alone.keys())
            if not seeds:
                continue
            best = [paired[s]["best"] / alone[s]["best"] for s in seeds]
            last = [paired[s]["last_mean"] / alone[s]["last_mean"] for s in seeds]
            means = [np.mean([runs[s]["last_mean"] for s in seeds]) for runs in (paired, alone)]
            each = ", ".join(f"{b:.3f}" for b in best)
            lines.append(
                f"| {noise} | {thread} | {len(seeds)} | {np.median(best):.3f} ({each}) "
                f"| {np.median(last):.3f} | {means[0]:.2f} vs {means[1]:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/threads.jsonl")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=40)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--noise", nargs="+", default=["none", "poisson:20"])
    parser.add_argument("--target", default=TARGET)
    parser.add_argument("--report", action="store_true", help="print the table, run nothing")
    args = parser.parse_args()
    if args.report:
        print(report(Path(args.out)))
    else:
        run(args)


if __name__ == "__main__":
    main()
