"""Loop overhead: what the closed loop adds on top of the optimizer and the generator.

Three measurements, all with population 40 and the DeePSiM-fc6 architecture (random
weights of the right shape: the cost does not depend on the values):

1. compute: in process, per generation, ``tell`` + ``ask`` + ``generate`` (the work the
   server must do between the last response of a generation and sending the next);
2. loop latency: a real ``xdream serve`` process and a rig in this process that answers at
   once, or after a simulated presentation time; the server logs, per generation, the time
   from the last response to the next generation's images leaving the socket. The rig also
   times it from its side (responses sent -> next generation received), which adds the
   acknowledgement and the transfer;
3. in-silico throughput: images per second for a whole session scored by EfficientNet-Lite0
   in process (``run_in_process`` storing to HDF5, as ``xdream evolve``) and through the loop
   (server + ``xdream simulate``), with the median seconds per generation of each step.

    python benchmarks/loop.py --generations 8 --out benchmarks/results/loop.json

Overhead = (median loop latency - median compute) / median compute; target <= 5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from protocol.messages import Response, Role
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from server.engine.generators import Generator, make_generator
from server.engine.generators.deepsim import build_network
from server.engine.loop import Engine, run_in_process
from server.engine.optimizers import Optimizer, make_optimizer
from server.storage.catalog import read_closed
from server.storage.session_file import SessionFile
from simulator.neuron import build_neurons
from xdream.testing.servers import Server, create_session, xdream

POPULATION = 40
#: How long the benchmark's rig takes to show a block: at once (the worst case: storing the
#: previous generation then competes with computing the next), and 1 s (a real block of
#: 40 images takes ~10 s of monkey time, during which the server stores the last one).
PRESENTATION_S = (0.0, 1.0)
TARGET = "efficientnet-lite0:_fc:1"

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"


def fc6_weights(folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / "fc6-random.pt"
    torch.save(build_network("fc6").state_dict(), path)
    return path


def fc6_and_cmaes(weights: Path, device: str) -> tuple[Generator, Optimizer]:
    """The generator and optimizer a session with :func:`session_config` builds."""
    generator = make_generator("fc6", weights=str(weights), device=device)
    optimizer = make_optimizer("cmaes", generator.code_dim, generator="fc6", population=POPULATION)
    return generator, optimizer


def session_config(weights: Path, generations: int, device: str) -> dict:
    return dict(
        generator="fc6", weights=str(weights), population=POPULATION, generations=generations,
        response_timeout_s=600, device=device,
    )  # fmt: skip


def bare_compute(weights: Path, generations: int, device: str) -> list[float]:
    generator, optimizer = fc6_and_cmaes(weights, device)
    rng = np.random.default_rng(0)
    codes = optimizer.ask()
    generator.generate(codes)  # warm-up
    times = []
    for _ in range(generations):
        t0 = time.perf_counter()
        optimizer.tell(codes, rng.random(POPULATION))
        codes = optimizer.ask()
        generator.generate(codes)
        times.append(time.perf_counter() - t0)
    return times


def serving(weights: Path, data: Path) -> Server:
    """``xdream serve`` storing in ``data``, allowed to load the ``weights`` file (a server
    loads weights only from the folders it serves)."""
    return Server(data, threads=None, options=("--weights-root", str(weights.parent)))


def loop_latency(
    weights: Path, generations: int, device: str, data: Path, presentation_s: float
) -> dict:
    """Loop latency with a rig that takes ``presentation_s`` to show a block (0: instant)."""
    server = serving(weights, data)
    try:
        session_id = create_session(server, **session_config(weights, generations + 1, device))
        connection = Connection(server.zmq, [Role.presenter, Role.recorder], "bench-rig")
        connection.connect(timeout_s=60)
        presenter, recorder = Presenter(connection), Recorder(connection)
        rig_side = []
        block = presenter.next_block(timeout_s=300)
        for _ in range(generations + 1):
            until = time.perf_counter() + presentation_s
            connection.wait(lambda until=until: time.perf_counter() >= until)
            responses = [
                Response(presentation_id=f"{s.stimulus_id}-r0", stimulus_id=s.stimulus_id,
                         counts=[float(np.asarray(im).mean())])
                for s, im in zip(block.stimuli, block.images, strict=True)
            ]  # fmt: skip
            t0 = time.perf_counter()
            recorder.send(block.session, block.generation, responses)
            if block.generation == generations:
                break
            block = presenter.next_block(timeout_s=300)
            rig_side.append(time.perf_counter() - t0)
        state = server.wait_for(session_id, lambda s: s["state"] == "finished", 300)
        connection.close()
    finally:
        server.stop()
    events, timings = read_closed(
        Path(state["data_file"]), lambda store: (store.events(), store.timings())
    )
    server_side = [
        e.detail["loop_latency_s"]
        for e in events
        if e.kind == "block_sent" and e.detail.get("loop_latency_s") is not None
    ]
    # The server's own compute for the same step: tell (generation g) + ask and generate
    # (generation g + 1), timed in its compute thread; paired with the latency of g + 1.
    tell, ask, gen = (timings[c] for c in ("tell_s", "ask_s", "generate_s"))
    in_server = (tell[:-1] + ask[1:] + gen[1:]).tolist()
    return {"server_side_s": server_side, "rig_side_s": rig_side, "compute_in_server_s": in_server}


def throughput_in_process(weights: Path, generations: int, device: str, data: Path) -> dict:
    """Like ``xdream evolve``: score in process, store every generation to HDF5."""
    generator, optimizer = fc6_and_cmaes(weights, device)
    neurons, _ = build_neurons([TARGET], None, None, device=device)

    def score(images: np.ndarray):
        observed, _ = neurons.respond(images)
        return observed[:, 0], {}

    store = SessionFile(data / "in-process.h5", {})
    engine = Engine(generator, optimizer, store)
    t0 = time.perf_counter()
    run_in_process(engine, score, generations)
    seconds = time.perf_counter() - t0
    store.close("finished")
    return {"images_per_s": generations * POPULATION / seconds, **_timings(store.path)}


def _timings(path: Path) -> dict:
    """Median seconds per generation of each timed step in a session file."""
    timings = read_closed(Path(path), SessionFile.timings)
    return {f"median_{c}": float(np.median(values)) for c, values in timings.items()}


def throughput_loop(weights: Path, generations: int, device: str, data: Path) -> dict:
    server = serving(weights, data)
    simulator = xdream(
        "simulate", "--server", server.zmq, "--noise", "none", "--target", TARGET,
        "--device", device, threads=None,
    )  # fmt: skip
    try:
        time.sleep(15)  # let the simulator load its network before the clock starts
        session_id = create_session(server, **session_config(weights, generations, device))
        state = server.wait_for(session_id, lambda s: s["state"] == "finished", 3600)
    finally:
        simulator.terminate()
        simulator.wait(30)
        server.stop()
    # From "start" to "finished" as logged by the server: like the in-process clock, this
    # leaves out building the generator (at session creation) and includes the first ask.
    events = read_closed(Path(state["data_file"]), SessionFile.events)
    when = {e.kind: e.time for e in reversed(events)}  # the first of each kind
    seconds = when["finished"] - when["running"]
    return {"images_per_s": generations * POPULATION / seconds, **_timings(state["data_file"])}


def summarise(times: dict[str, list[float]], compute: list[float]) -> dict:
    """Medians, and the overheads: against the server's own compute for the same step
    (paired per generation, robust to the machine's speed drifting), and against the
    in-process compute measured separately."""
    median = statistics.median
    paired = [
        latency / own - 1
        for latency, own in zip(times["server_side_s"], times["compute_in_server_s"], strict=True)
    ]
    return {
        **times,
        "median_server_side_s": median(times["server_side_s"]),
        "median_rig_side_s": median(times["rig_side_s"]),
        "median_compute_in_server_s": median(times["compute_in_server_s"]),
        "overhead_paired_median": median(paired),
        "overhead_server_side_vs_in_process": median(times["server_side_s"]) / median(compute) - 1,
        "overhead_rig_side_vs_in_process": median(times["rig_side_s"]) / median(compute) - 1,
    }


def machine() -> str:
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "loop.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = fc6_weights(folder)
        compute = bare_compute(weights, args.generations, args.device)
        latency = {
            f"presentation_{p}s": loop_latency(
                weights, args.generations, args.device, folder / f"a{p}", p
            )
            for p in PRESENTATION_S
        }
        in_process = throughput_in_process(weights, args.generations, args.device, folder)
        through_loop = throughput_loop(weights, args.generations, args.device, folder / "b")
    median = statistics.median
    result = {
        "machine": machine(),
        "device": args.device,
        "cuda": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "population": POPULATION,
        "generator": "fc6 (random weights)",
        "generations": args.generations,
        "compute_s": compute,
        "median_compute_s": median(compute),
        "latency": {name: summarise(times, compute) for name, times in latency.items()},
        "in_process": in_process,
        "through_loop": through_loop,
        "loop_throughput_ratio": through_loop["images_per_s"] / in_process["images_per_s"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(_without_lists(result), indent=1))


def _without_lists(tree: dict) -> dict:
    return {
        k: _without_lists(v) if isinstance(v, dict) else v
        for k, v in tree.items()
        if not isinstance(v, list)
    }


if __name__ == "__main__":
    main()
