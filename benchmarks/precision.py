"""Half precision: how much do the images change, and how much faster is the generator?

For each generator, the same codes are rendered in float32 and under autocast in float16
and bfloat16; the report gives the absolute difference per pixel in grey levels (0-255:
mean, 99th percentile, maximum) and the seconds per batch of 40 in each precision.

DeePSiM generators use the user's weights when given (``--weights-dir``, files named as in
docs/weights.md) and otherwise PyTorch's random initialisation of the same architecture;
the images of random weights are not pictures, so their differences only show the
arithmetic's effect on these layer shapes, not the bound for trained weights. The
fourier and pixel generators are exactly what sessions use.

    python benchmarks/precision.py --device cpu --out benchmarks/results/precision-cpu.json
    python benchmarks/precision.py --device cuda --weights-dir ~/deepsim \
        --out benchmarks/results/precision-cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from server.engine.generators import make_generator
from server.engine.generators.deepsim import build_network

BATCH = 40

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"


def _weights(variant: str, weights_dir: Path | None, scratch: Path) -> tuple[Path, str]:
    if weights_dir is not None and (weights_dir / f"{variant}.pt").is_file():
        return weights_dir / f"{variant}.pt", "user-supplied"
    path = scratch / f"{variant}.pt"
    torch.manual_seed(0)
    torch.save(build_network(variant).state_dict(), path)
    return path, "random initialisation"


def _timed(generator, codes: np.ndarray, repeats: int) -> tuple[np.ndarray, float]:
    images = generator.generate(codes)  # warm-up (and the images)
    if generator.device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generator.generate(codes)
        if generator.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return images, float(np.median(times))


def measure(name: str, device: str, repeats: int, options: dict) -> dict:
    reference = make_generator(name, device=device, **options)
    rng = np.random.default_rng(1)
    # Codes of the scale the optimizers start from (unit variance around zero).
    codes = rng.normal(0.0, 1.0, (BATCH, reference.code_dim)).astype(np.float32)
    exact, exact_s = _timed(reference, codes, repeats)
    out = {"generator": name, "float32_s_per_batch": exact_s,
           "image_std_levels": float(exact.std())}  # fmt: skip
    for precision in ("float16", "bfloat16"):
        generator = make_generator(name, device=device, precision=precision, **options)
        images, seconds = _timed(generator, codes, repeats)
        diff = np.abs(images.astype(np.int16) - exact.astype(np.int16))
        out[precision] = {
            "mean_abs_levels": float(diff.mean()),
            "p99_abs_levels": float(np.percentile(diff, 99)),
            "max_abs_levels": int(diff.max()),
            "s_per_batch": seconds,
            "speedup": exact_s / seconds,
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--generators", default="fc6,pool5,norm1,fourier,pixel")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "precision.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.generators.split(","):
            options: dict = {}
            source = "built in"
            if name not in ("fourier", "pixel"):
                path, source = _weights(name, args.weights_dir, Path(scratch))
                options["weights"] = str(path)
            result = {**measure(name, args.device, args.repeats, options), "weights": source}
            print(json.dumps(result), flush=True)
            results.append(result)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    report = {
        "command": " ".join(["python", "benchmarks/precision.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {device}",
        "torch": torch.__version__,
        "batch": BATCH,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
