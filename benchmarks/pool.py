"""Sessions sharing a generator: batched calls against one generator per session.

Two sessions propose a generation of 40 codes at the same moment (each from its own compute
thread, as in the server). Measured: the wall time until both have their images, with
(a) a generator per session, called in parallel; (b) one pooled generator as the server
uses it on this device (on the CPU: both calls side by side on the shared weights);
(c) one pooled generator that batches (as on a GPU), which runs requests waiting together
as one call; and, for a session alone, a direct call against the pool's.
DeePSiM-fc6 architecture with random weights (the cost does not depend on the values).

    python benchmarks/pool.py --device cpu --out benchmarks/results/pool-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from server.engine.generators import make_generator
from server.engine.generators.deepsim import build_network
from server.engine.pool import GeneratorPool

POPULATION = 40

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"


def _together(generators: list, codes: list[np.ndarray]) -> float:
    """Seconds until every generator has rendered its codes, all started at once."""
    start = threading.Barrier(len(generators) + 1)

    def work(generator, batch) -> None:
        start.wait()
        generator.generate(batch)

    pairs = zip(generators, codes, strict=True)
    threads = [threading.Thread(target=work, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "pool.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "fc6.pt"
        torch.manual_seed(0)
        torch.save(build_network("fc6").state_dict(), weights)

        def build():
            return make_generator("fc6", device=args.device, weights=str(weights))

        own = [build(), build()]
        pool, batching = GeneratorPool(), GeneratorPool(batch_cpu=True)
        pooled = [pool.acquire("fc6", build), pool.acquire("fc6", build)]
        batched = [batching.acquire("fc6", build), batching.acquire("fc6", build)]
        rng = np.random.default_rng(0)
        codes = [rng.normal(0, 1, (POPULATION, own[0].code_dim)).astype(np.float32)
                 for _ in range(2)]  # fmt: skip
        for generator in (*own, pooled[0], batched[0]):  # warm-up
            generator.generate(codes[0])
        cases = {
            "own": own,
            "pooled": pooled,
            "batched": batched,
            "alone": own[:1],
            "alone_pooled": pooled[:1],
        }
        rows: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):  # interleaved, so drift hits all alike
            for name, generators in cases.items():
                rows[name].append(_together(generators, codes[: len(generators)]))
        batches = batched[0]._shared.batches
        weight_bytes = sum(p.numel() * p.element_size() for p in own[0].net.parameters())
        for generator in (*pooled, *batched):
            generator.close()
    medians = {k: statistics.median(v) for k, v in rows.items()}
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    report = {
        "command": " ".join(["python", "benchmarks/pool.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {device}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "median_s": medians,
        "runs_s": rows,
        "two_sessions_pooled_over_own": medians["pooled"] / medians["own"],
        "two_sessions_batched_over_own": medians["batched"] / medians["own"],
        "alone_pooled_over_direct": medians["alone_pooled"] / medians["alone"],
        "batch_sizes": batches,
        "weights_mb_per_generator": weight_bytes / 1e6,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "runs_s"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
