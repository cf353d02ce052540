"""``xdream sweep``: a grid of in-silico evolutions on local processes (and a local Ray
instance), resumable from its results file, and what a wrong grid is told."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from simulator import sweep

pytestmark = pytest.mark.slow

# Small images, one generation per run: a cell takes about a second on 2 CPUs.
COMMON = {"generator": "pixel", "budget": 40, "image_size": 32, "input_size": 64,
          "references": 10}  # fmt: skip
TARGETS = ["efficientnet-lite0:_blocks.8:76", "efficientnet-lite0:_blocks.8:20"]


def grid(tmp_path, **changes) -> str:
    data = {
        "targets": TARGETS,
        "configurations": [{"label": "cma", "optimizer": "cmaes"},
                           {"label": "ga", "optimizer": "ga"}],
        "seeds": [0],
        "common": COMMON,
        **changes,
    }  # fmt: skip
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(data))
    return str(path)


def xdream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xdream", *args], capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip


def lines(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


KILLER = "python:killer:make:conv:0"


def killer(tmp_path) -> dict[str, str]:
    """A modeller's factory that ends its process (as the out-of-memory killer would), and
    the environment that finds it."""
    (tmp_path / "killer.py").write_text("import os\n\ndef make():\n    os._exit(9)\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}


def test_every_cell_runs_once_and_a_restart_runs_only_what_is_missing(tmp_path):
    out = tmp_path / "out"
    proc = xdream("sweep", grid(tmp_path), "--out", str(out), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    first = lines(out)
    assert sorted((r["label"], r["target"], r["seed"]) for r in first) == sorted(
        (label, target, 0) for label in ("cma", "ga") for target in TARGETS
    )
    assert all(r["images"] == 40 and "data_file" not in r for r in first)
    assert not (out / "runs").exists()  # keep_runs off: only the lines stay
    assert "| cma | 2/2 |" in proc.stdout and "| ga | 2/2 |" in proc.stdout
    table = xdream("sweep", grid(tmp_path), "--out", str(out), "--report", "--baseline", "ga")
    assert "median best / ga's |" in table.stdout
    assert table.stdout.splitlines()[-1].endswith("| 1.000 |")  # the GA against itself
    wrong = xdream("sweep", grid(tmp_path), "--out", str(out), "--report", "--baseline", "x")
    assert wrong.returncode == 2 and "--baseline x is none of the grid's labels" in wrong.stderr

    # As if stopped after three cells (and torn in the middle of the fourth line).
    kept = first[:3]
    (out / "results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in kept) + json.dumps(first[3])[:20]
    )
    proc = xdream("sweep", grid(tmp_path), "--out", str(out), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    again = [r for r in sweep.results(out) if r not in kept]
    assert [(r["label"], r["target"]) for r in again] == [(first[3]["label"], first[3]["target"])]
    assert again[0]["best_activation"] == first[3]["best_activation"]  # same seed, same run
    assert proc.stderr.count("1/1 ") == 1


def test_a_failing_cell_is_recorded_runs_again_and_sets_the_exit_status(tmp_path):
    out = tmp_path / "out"
    config = grid(tmp_path, targets=["efficientnet-lite0:_blocks.8:500"],
                  configurations=[{"label": "cma", "optimizer": "cmaes"}])  # fmt: skip
    proc = xdream("sweep", config, "--out", str(out), "--workers", "1")
    assert proc.returncode == 1
    (row,) = lines(out)
    assert "channel 500 out of range" in row["error"]
    assert "1 cells failed" in proc.stderr
    assert sweep.to_do(sweep.SweepConfig.load(config), out)  # it runs again next time


def test_a_cell_that_kills_its_worker_fails_alone_and_the_sweep_goes_on(tmp_path):
    """The pool breaks with the cells beside the killer's, which run again and finish."""
    out = tmp_path / "out"
    config = grid(tmp_path, targets=[KILLER, *TARGETS],
                  configurations=[{"label": "ga", "optimizer": "ga"}])  # fmt: skip
    proc = xdream("sweep", config, "--out", str(out), "--workers", "2", env=killer(tmp_path))
    assert proc.returncode == 1 and "1 cells failed" in proc.stderr
    rows = {r["target"]: r for r in lines(out)}
    assert sorted(rows) == sorted([KILLER, *TARGETS])  # once each
    assert "the worker died running this cell on its own" in rows.pop(KILLER)["error"]
    assert all("error" not in r and r["images"] == 40 for r in rows.values())


class _HeldAfterFirst(ProcessPoolExecutor):
    """A real pool that hands out its second cell only once the first has ended: when the
    first kills its worker, the second submit meets the broken pool, as a sweep of many
    cells can while it is still handing them out."""

    def submit(self, *args, **kwargs):
        if hasattr(self, "first"):
            self.first.exception(timeout=120)
            return super().submit(*args, **kwargs)
        self.first = super().submit(*args, **kwargs)
        return self.first


def test_a_worker_dying_while_the_cells_are_handed_out_loses_none(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned workers find killer.py
    killer(tmp_path)
    monkeypatch.setattr(sweep, "ProcessPoolExecutor", _HeldAfterFirst)
    cells = [sweep.Cell("ga", target, 0, tuple(sorted({**COMMON, "optimizer": "ga"}.items())))
             for target in [KILLER, *TARGETS]]  # fmt: skip
    rows = {r["target"]: r for r in sweep.on_local_pool(2)(cells, tmp_path / "out", False)}
    assert sorted(rows) == sorted([KILLER, *TARGETS])
    assert "the worker died running this cell on its own" in rows.pop(KILLER)["error"]
    assert all("error" not in r and r["images"] == 40 for r in rows.values())


_MANY_CELLS = """
import json, sys
from pathlib import Path
from simulator import sweep
cells = [sweep.Cell("fourier+cmaes-v3", f"efficientnet-lite0:_blocks.8:{i}", 0,
                    (("no_such_setting", 1),)) for i in range(3000)]
rows = list(sweep.on_local_pool(2)(cells, Path(sys.argv[1]), False))
print(json.dumps([len(rows), sum("no_such_setting" in r["error"] for r in rows)]))
"""


def test_thousands_of_cells_do_not_fill_the_workers_start_messages(tmp_path):
    """Each worker says which cell it begins through a pipe: read as the sweep goes, else
    some thousand cells fill it and every worker blocks (cells that fail at once here)."""
    proc = subprocess.run([sys.executable, "-c", _MANY_CELLS, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == [3000, 3000]


def test_changed_settings_run_again_and_a_second_sweep_on_the_same_folder_is_refused(
    tmp_path,
):
    out = tmp_path / "out"
    one = grid(tmp_path, targets=TARGETS[:1], configurations=[{"label": "ga", "optimizer": "ga"}])
    assert xdream("sweep", one, "--out", str(out), "--quiet").returncode == 0
    config = sweep.SweepConfig.load(one)
    assert sweep.to_do(config, out) == []
    changed = grid(tmp_path, targets=TARGETS[:1], common={**COMMON, "budget": 60},
                   configurations=[{"label": "ga", "optimizer": "ga"}])  # fmt: skip
    (cell,) = sweep.to_do(sweep.SweepConfig.load(changed), out)  # its line is of budget 40
    assert dict(cell.settings)["budget"] == 60
    with (out / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = xdream("sweep", changed, "--out", str(out))
    assert proc.returncode == 2 and "another sweep is writing to" in proc.stderr


def test_kept_runs_hold_their_session_files(tmp_path):
    out = tmp_path / "out"
    config = grid(tmp_path, targets=TARGETS[:1], keep_runs=True,
                  configurations=[{"label": "ga", "optimizer": "ga"}])  # fmt: skip
    assert xdream("sweep", config, "--out", str(out), "--quiet").returncode == 0
    (row,) = lines(out)
    assert (out / "runs" / "ga").is_dir() and row["data_file"].endswith("session.h5")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"targets": []}, "targets: List should have at least 1 item"),
        ({"configurations": [{"optimizer": "ga"}]}, "every configuration needs a label"),
        ({"configurations": [{"label": "a", "optimizer": "ga"}] * 2}, "labels must differ"),
        ({"configurations": [{"label": "a", "optimizer": "ga", "budgte": 5}]},
         "configuration 'a': unknown setting(s) budgte"),
        ({"common": {"budget": 40}}, "configuration 'cma' names no generator"),
        ({"seed": [1]}, "seed: Extra inputs are not permitted"),
        ({"seeds": [0, 0]}, "seeds: Value error, must not repeat an entry"),
        ({"configurations": [{"label": "../up", "optimizer": "ga"}]},
         "a label of letters, digits and ._+-"),
        ({"configurations": [{"label": "white-box", "optimizer": "ga"}]},
         "'white-box' is the ceiling's label"),
        ({"ceiling": {"budget": 5}}, "ceiling: unknown setting(s) budget"),
        ({"ceiling": {"steps": 0}}, "ceiling: steps must be a whole number of at least 1"),
    ],
)
def test_a_wrong_grid_is_one_line_and_runs_nothing(tmp_path, changes, message):
    out = tmp_path / "out"
    proc = xdream("sweep", grid(tmp_path, **changes), "--out", str(out))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("xdream sweep: error: sweep config ")
    assert message in line and not out.exists()


def test_the_white_box_ceiling_runs_beside_the_grid_and_every_row_is_held_against_it(
    tmp_path,
):
    """Adam through generator and network: far above what one generation of the GA finds,
    and the report's last column holds each configuration against it."""
    out = tmp_path / "out"
    config = grid(tmp_path, targets=TARGETS[:1], ceiling={"steps": 30, "starts": 2},
                  configurations=[{"label": "ga", "optimizer": "ga"}])  # fmt: skip
    proc = xdream("sweep", config, "--out", str(out), "--workers", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = {r["label"]: r for r in lines(out)}
    ceiling, ga = rows["white-box"], rows["ga"]
    assert ceiling["kind"] == "white_box" and ceiling["steps"] == 30
    assert ceiling["settings"]["generator"] == "pixel" and "budget" not in ceiling["settings"]
    assert ceiling["best_activation"] > ga["best_activation"]
    assert ceiling["best_reference"] == ga["best_reference"]  # the same 10 natural crops
    table = proc.stdout.splitlines()
    assert table[0].endswith(" median best / white-box's |")
    ratio = ga["best_activation"] / ceiling["best_activation"]
    assert table[2].startswith("| ga | 1/1 |") and table[2].endswith(f"| {ratio:.3f} |")
    assert table[3].startswith("| white-box | 1/1 |") and table[3].endswith("| 1.000 |")


def test_cells_run_as_tasks_on_a_local_ray_instance(tmp_path):
    """A task whose worker dies, even when Ray runs it again, is one error line."""
    out = tmp_path / "out"
    config = grid(tmp_path, targets=[KILLER, *TARGETS],
                  configurations=[{"label": "ga", "optimizer": "ga"}])  # fmt: skip
    proc = xdream("sweep", config, "--out", str(out), "--ray", "local", env=killer(tmp_path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = {r["target"]: r for r in lines(out)}
    assert sorted(rows) == sorted([KILLER, *TARGETS])
    assert rows.pop(KILLER)["error"].startswith(("WorkerCrashedError", "RayTaskError"))
    assert all("error" not in r for r in rows.values())


# A pool worker outlives a killed sweep by a second or two (it polls its parent), and
# takes its scratch folder with it.
_BUSY = """
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from simulator import sweep

def busy(scratch: str) -> None:
    Path(scratch).mkdir()
    sweep._SCRATCH.add(Path(scratch))
    (Path(scratch).parent / "busy").touch()
    time.sleep(120)
"""
_KILLED_SWEEP = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from simulator import sweep
import busy
pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=sweep._worker,
                           initargs=(os.getpid(),))
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(busy.busy, sys.argv[1])
while not (Path(sys.argv[1]).parent / "busy").exists():
    time.sleep(0.05)
os._exit(9)  # as SIGKILL would: no pool shutdown
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (where nothing reaps the dead, they linger)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_killed_sweep_leaves_no_worker_running(tmp_path):
    (tmp_path / "busy.py").write_text(_BUSY)
    scratch = tmp_path / "scratch"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    owner = subprocess.Popen([sys.executable, "-c", _KILLED_SWEEP, str(scratch)],
                             stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    worker = int(owner.stdout.readline())
    try:
        assert owner.wait(timeout=60) == 9
        deadline = time.monotonic() + 15
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(worker), "the pool worker ran on after its sweep was killed"
        assert not scratch.exists()
    finally:
        if _running(worker):
            os.kill(worker, 9)
        owner.stdout.close()
