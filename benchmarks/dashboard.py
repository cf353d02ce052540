"""Does watching a session slow it down? ``xdream demo`` with and without the dashboard open.

Runs ``xdream demo --generations G`` (server + ``xdream simulate`` on loopback, EfficientNet
-Lite0 unit, population 40 + 4 references) alternately without and with the session open
in headless Debian Chromium, which receives the live stream and loads every generation's
thumbnails and the best image. Per run it reads from the session file the seconds between
consecutive generations leaving the server (block 0 of each), and reports their median, the
median loop latency, how many requests the page made, and the CPU Chromium used.

    python benchmarks/dashboard.py --generations 20 --pairs 2 \
        --out benchmarks/results/dashboard.json

Slowdown = median seconds per generation watched / not watched (paired runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from server.storage.catalog import read_closed
from server.storage.session_file import SessionFile
from xdream.testing.browser import CHROMIUM_ARGS, find_chromium

#: Where results go by default: beside this script.
RESULTS = Path(__file__).resolve().parent / "results"


def _dashboard_url(log: Path, process: subprocess.Popen[str], timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"dashboard at (\S+)", log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"xdream demo exited early; see {log}")
        time.sleep(0.05)
    raise RuntimeError("no dashboard address in the demo's output")


def _chromium_cpu_s() -> float:
    """CPU seconds used so far by the live Chromium processes (Linux /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if "chrom" in name:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _seconds_per_generation(data_file: str) -> list[float]:
    events = read_closed(Path(data_file), SessionFile.events)
    starts = [e.time for e in events if e.kind == "block_sent" and e.detail.get("block") == 0]
    return np.diff(starts).tolist()


def run(generations: int, watch: bool, folder: Path, browser: Any) -> dict[str, Any]:
    log = folder / f"demo-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "xdream", "demo", "--generations", str(generations),
               "--json", "--data", str(folder / f"data-{log.stem}")]  # fmt: skip
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        url = _dashboard_url(log, process)
        page = None
        cpu_before, started = _chromium_cpu_s(), time.monotonic()
        if watch:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            # Count every request (Chromium keeps 250 resource timings by default).
            page.add_init_script("performance.setResourceTimingBufferSize(100000)")
            page.goto(url)
        out, _ = process.communicate(timeout=1800)
    requests = None
    chromium_cpu = (_chromium_cpu_s() - cpu_before) / (time.monotonic() - started)
    if page is not None:
        requests = page.evaluate("performance.getEntriesByType('resource').length")
        page.close()
    if process.returncode != 0:
        raise RuntimeError(f"xdream demo failed; see {log}")
    summary = json.loads(out.strip().splitlines()[-1])
    per_generation = _seconds_per_generation(summary["data_file"])
    return {
        "watched": watch,
        "median_s_per_generation": statistics.median(per_generation),
        "median_loop_latency_s": summary["median_loop_latency_s"],
        "page_requests": requests,
        #: Chromium's CPU time over the run's wall time (1.0 = one core busy throughout).
        "chromium_cpu_share": chromium_cpu,
        "generations": summary["generations"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "dashboard.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        parser.error("Debian's chromium is needed (make tools)")
    runs = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for pair in range(args.pairs):
            for watch in (False, True):
                result = run(args.generations, watch, Path(tmp), browser)
                result["pair"] = pair
                runs.append(result)
                print(json.dumps(result), flush=True)
        browser.close()
    ratios = [
        w["median_s_per_generation"] / n["median_s_per_generation"]
        for n, w in zip(runs[::2], runs[1::2], strict=True)
    ]
    report = {
        "command": " ".join(["python", "benchmarks/dashboard.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "chromium": subprocess.run(
            [chromium, "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "runs": runs,
        "watched_over_unwatched": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"watched_over_unwatched": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
