"""Does the server give memory back? The resident memory of a running ``xdream serve``:

1. ``large``: 8 sessions at image_size 1024 (each holds a pixel code of 3.1 M numbers, its
   optimizer and a generation of 3 MB images) run one generation each, then all stopped;
   the memory 1 s later, and once it stops falling;
2. ``soak``: a day of a busy rig, compressed: sessions one after another, each run to its
   end by a rig on loopback (brightness as the spike count) and archived, until as many
   generations were run as a rig showing POPULATION images of 100 ms on / 100 ms off would
   run in 24 hours. The memory is sampled after every session.

    python benchmarks/memory.py --out benchmarks/results/memory.json --plot docs/memory.png

Each phase runs on a fresh server; ``--phases`` runs one of them again (its result replaces
the old one in ``--out``). Resumable a phase is not; ``--hours`` shortens the soak.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

from protocol.messages import Role
from rig_clients.connection import Connection, RequestFailed, ServerUnavailable
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from xdream.testing.servers import Server, brightness_responses

RESULTS = Path(__file__).resolve().parent / "results"
POPULATION = 20
GENERATIONS = 100  # per soak session
TRIAL_S = 0.2  # 100 ms on, 100 ms off


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def create(server: Server, **config) -> str:
    status, body = server.api("POST", "/api/sessions", config)
    assert status == 201, body
    status, body = server.api("POST", f"/api/sessions/{body['id']}/start")
    assert status == 200, body
    return body["id"]


def large(server: Server) -> dict[str, float]:
    before = rss_mb(server.process.pid)
    ids = [create(server, generator="pixel", image_size=1024, rig="rig") for _ in range(8)]
    for session_id in ids:
        server.wait_for(session_id, lambda s: s["generations_done"] >= 1, 600)
    held = rss_mb(server.process.pid)
    for session_id in ids:  # a stop waits for the session's writes (its generation: 300 MB)
        status, body = server.api("POST", f"/api/sessions/{session_id}/stop", timeout=600)
        assert status == 200, body
    stopped = time.monotonic()
    time.sleep(1)
    after = rss_mb(server.process.pid)
    settled, settled_s = settle(server.process.pid, stopped)
    return {
        "before_mb": before, "eight_live_mb": held, "one_s_after_stop_mb": after,
        "settled_mb": settled, "settled_after_s": settled_s,
    }  # fmt: skip


def settle(pid: int, since: float, timeout_s: float = 180.0) -> tuple[float, float]:
    """The resident memory once it stops falling (5 s without a change of 1%), and when
    that was after ``since``: a stopped session's cancelled proposal goes on computing in
    its thread, holding its memory, until it ends."""
    samples = [rss_mb(pid)]
    while time.monotonic() - since < timeout_s:
        time.sleep(1)
        samples.append(rss_mb(pid))
        recent = samples[-6:]
        if len(recent) == 6 and max(recent) - min(recent) < 0.01 * max(recent):
            break
    return samples[-1], round(time.monotonic() - since, 1)


def rig(server: Server, stop: threading.Event) -> None:
    """Answer every block with brightness responses until ``stop``."""
    connection = Connection(server.zmq, [Role.presenter, Role.recorder], "rig")
    connection.connect(timeout_s=20)
    presenter, recorder = Presenter(connection), Recorder(connection)
    try:
        while not stop.is_set():
            block = presenter.next_block(timeout_s=1)
            if block is None:
                continue
            # Refused (e.g. a block of a session just stopped) or not acknowledged in time
            # (a loaded server writing 1024-px generations): the block is sent again.
            with contextlib.suppress(RequestFailed, ServerUnavailable):
                recorder.send(
                    block.session, block.generation, brightness_responses(block).responses
                )
    finally:
        connection.close()


def soak(server: Server, hours: float) -> list[dict[str, float]]:
    generations_per_day = int(hours * 3600 / (POPULATION * TRIAL_S))
    sessions = max(1, generations_per_day // GENERATIONS)
    curve = [{"session": 0, "generations": 0, "rss_mb": rss_mb(server.process.pid)}]
    t0 = time.monotonic()
    for n in range(1, sessions + 1):
        session_id = create(
            server, generator="pixel", image_size=128, population=POPULATION,
            generations=GENERATIONS, seed=n, rig="rig",
        )  # fmt: skip
        server.wait_for(session_id, lambda s: s["state"] == "finished", 600)
        status, _ = server.api("POST", f"/api/sessions/{session_id}/archive")
        assert status == 204
        curve.append({
            "session": n,
            "generations": n * GENERATIONS,
            "rss_mb": round(rss_mb(server.process.pid), 1),
            "elapsed_s": round(time.monotonic() - t0, 1),
        })  # fmt: skip
        print(json.dumps(curve[-1]), flush=True)
    return curve


def plot(curve: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([c["generations"] for c in curve], [c["rss_mb"] for c in curve], marker=".")
    ax.set_xlabel("generations run (sessions of 100, one after another)")
    ax.set_ylabel("server RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title("xdream serve memory over a 24 h-equivalent soak")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="rig hours to compress")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    parser.add_argument("--plot", type=Path, help="PNG of the soak's curve")
    phases = ["large", "soak"]
    parser.add_argument("--phases", nargs="+", choices=phases, default=phases,
                        help="run only these (merged into --out)")  # fmt: skip
    args = parser.parse_args()
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update(machine=f"{platform.platform()}, {platform.processor() or 'cpu'}")
    for phase in args.phases:  # each on a fresh server: one's leftovers do not skew the other
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp) / "data", options=("--max-sessions", "8"))
            stop = threading.Event()
            answering = threading.Thread(target=rig, args=(server, stop), daemon=True)
            answering.start()
            try:
                result[phase] = large(server) if phase == "large" else soak(server, args.hours)
                result[f"{phase}_command"] = (
                    f"python benchmarks/memory.py --phases {phase} --hours {args.hours}"
                )
            finally:
                stop.set()
                answering.join(10)
                server.stop()
        args.out.write_text(json.dumps(result, indent=1))
    if args.plot and "soak" in result:
        plot(result["soak"], args.plot)


if __name__ == "__main__":
    main()
