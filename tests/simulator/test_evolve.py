"""``xdream evolve`` end to end, through the real command line, and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from server.engine.optimizers import Optimizer
from server.storage.tables import read_state

pytestmark = pytest.mark.slow

# Small images and the middle of the network keep a run to a few seconds on 2 CPUs.
FAST = ["--image-size", "64", "--input-size", "96", "--references", "20", "--quiet"]


def xdream(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xdream", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evolve") / "run"
    proc = xdream(
        "evolve",
        "--target",
        "efficientnet-lite0:_blocks.8:76",
        "--budget",
        "400",
        "--generator",
        "fourier",
        "--optimizer",
        "ga",
        "--seed",
        "1",
        "--out",
        str(out),
        "--json",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_summary_reports_improvement(finished_run):
    _, summary = finished_run
    for key in ("best_score", "first_generation_mean", "last_generation_mean", "images", "seconds"):
        assert key in summary
    assert summary["images"] == 400
    assert summary["last_generation_mean"] > summary["first_generation_mean"]
    assert summary["best_score"] >= summary["last_generation_mean"]


def test_outputs_are_written_and_complete(finished_run):
    out, summary = finished_run
    assert {p.name for p in out.iterdir()} == {
        "session.h5",
        "best.png",
        "progress.png",
        "montage.png",
    }
    with h5py.File(out / "session.h5", "r") as f:
        assert f.attrs["status"] == "finished"
        config = json.loads(f.attrs["config"])
        assert config["optimizer"] == "ga" and config["generations"] == 20
        g = f["generations"]
        assert g["images"].shape == (400, 64, 64, 3) and g["images"].dtype == np.uint8
        assert g["codes"].shape == (400, 3 * 48 * 25 * 2)
        assert g["scores"].shape == (400,) and np.isfinite(g["scores"][:]).all()
        np.testing.assert_array_equal(np.bincount(g["index"][:]), np.full(20, 20))
        assert float(g["scores"][:].max()) == pytest.approx(summary["best_score"])
        assert f["timings"].shape == (20, 5)
        state = read_state(f["optimizer"])
    # the stored state is complete enough to rebuild the optimizer (that its next ask() is
    # identical to the live one's is tested in tests/server/engine/test_loop.py)
    opt = Optimizer.from_state_dict(state)
    assert opt.generation == 20


def test_stored_images_are_the_generators_output(finished_run):
    from server.engine.generators import make_generator

    out, _ = finished_run
    with h5py.File(out / "session.h5", "r") as f:
        codes = f["generations/codes"][:3]
        images = f["generations/images"][:3]
    regenerated = make_generator("fourier", image_size=64, device="cpu").generate(codes)
    assert np.abs(regenerated.astype(int) - images).max() <= 1  # float32 codes on disk


def test_noisy_run_with_repeats(tmp_path):
    proc = xdream(
        "evolve",
        "--target",
        "efficientnet-lite0:_blocks.8:76",
        "--budget",
        "80",
        "--optimizer",
        "cmaes",
        "--noise",
        "poisson:20",
        "--repeats",
        "2",
        "--out",
        str(tmp_path / "n"),
        "--json",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "n" / "session.h5", "r") as f:
        observed, true = f["generations/scores"][:], f["generations/activation"][:]
        scale = json.loads(f.attrs["config"])["noise_scale"]
    # observed = mean of 2 Poisson spike counts / scale: whole spikes, and unbiased
    spikes = observed * scale * 2
    np.testing.assert_allclose(spikes, np.round(spikes), atol=1e-6)
    assert not np.allclose(observed, true)
    expected = np.maximum(true, 0) * scale * 2
    assert abs(spikes.sum() - expected.sum()) < 4 * np.sqrt(expected.sum())
    # the learning curve is the noiseless one: each generation's best true activation
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    per_generation = true.reshape(summary["generations"], -1).max(axis=1)
    np.testing.assert_allclose(summary["generation_maxima"], per_generation, atol=1e-5)
    assert max(summary["generation_maxima"]) == pytest.approx(summary["best_activation"], abs=1e-5)


def test_an_objective_over_several_units_recorded_in_one_pass(tmp_path):
    """Selectivity between two units of one layer: every score is the first unit's response
    less the second's, and the summary follows each unit from first to last generation."""
    out = tmp_path / "sel"
    proc = xdream("evolve", "--target", "efficientnet-lite0:_blocks.8:76", "--channels", "2",
                  "--objective", "selectivity:drive=0;suppress=1", "--budget", "80",
                  "--optimizer", "cmaes", "--out", str(out), "--json", *FAST)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["objective"] == "drive channel(s) 0, hold 1 down"
    assert len(summary["first_channel_means"]) == len(summary["last_channel_means"]) == 2
    with h5py.File(out / "session.h5", "r") as f:
        scores, activation = f["generations/scores"][:], f["generations/activation"][:]
    assert activation.shape == (80, 2)
    np.testing.assert_allclose(scores, activation[:, 0] - activation[:, 1], rtol=1e-5)


def test_a_run_starts_from_a_folder_of_images(tmp_path):
    """``--init-images``: the GA's first generation is the folder's images (inverted
    exactly: the fourier generator's own renderings of them), then their children."""
    folder = tmp_path / "start"
    folder.mkdir()
    colours = [(210, 40, 30), (30, 90, 200)]
    for name, colour in zip("ab", colours, strict=True):
        Image.new("RGB", (70, 50), colour).save(folder / f"{name}.png")
    out = tmp_path / "run"
    proc = xdream("evolve", "--target", "efficientnet-lite0:_blocks.8:76", "--budget", "40",
                  "--generator", "fourier", "--optimizer", "ga", "--init-images", str(folder),
                  "--out", str(out), "--json", *FAST)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["inversion"]["images"] == 2 and summary["inversion"]["method"] == "exact"
    with h5py.File(out / "session.h5", "r") as f:
        images = f["generations/images"][:2]
        assert json.loads(f.attrs["config"])["inversion"] == summary["inversion"]
    for image, colour in zip(images, colours, strict=True):
        assert np.abs(image.astype(int) - colour).max() <= 1


def test_generator_settings_reach_the_generator(tmp_path):
    """``--generator-set resolution=16``: a coarser fourier code (3 x 16 x 9 x 2 numbers)."""
    out = tmp_path / "coarse"
    proc = xdream("evolve", "--target", "efficientnet-lite0:_blocks.8:76", "--budget", "40",
                  "--generator", "fourier", "--optimizer", "ga", "--generator-set",
                  "resolution=16", "--out", str(out), "--json", *FAST)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / "session.h5", "r") as f:
        assert f["generations/codes"].shape == (40, 3 * 16 * 9 * 2)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_modellers_torchscript_model_is_the_target(tmp_path):
    """A network the project never saw, saved as TorchScript with its own input size: the
    run evolves images for its output and stores the noiseless responses."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    model.input_size = 32
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    out = tmp_path / "run"
    proc = xdream("evolve", "--target", f"torchscript:{tmp_path / 'model.pt'}:output:1",
                  "--budget", "80", "--generator", "pixel", "--image-size", "32",
                  "--references", "10", "--quiet", "--out", str(out), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["target"].endswith("model.pt:output:1") and summary["images"] == 80
    with h5py.File(out / "session.h5", "r") as f:
        assert np.isfinite(f["generations/activation"][()]).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "torchscript:/nonexistent/m.pt:output:0"], "TorchScript file not found"),
        (["--generator", "fourier", "--generator-set", "resolutoin=16"],
         "generator fourier has no setting(s) resolutoin"),
        (["--generator-set", "image_size=64"], "image_size have options of their own"),
        (["--generator", "fourier", "--generator-set", "resolution=16.5"],
         "generator fourier: a setting has the wrong type"),
        (["--init-images", "/nonexistent/start"], "init_images /nonexistent/start is not a"),
        (["--target", "efficientnet-lite0:_blocks.99:1"], "has no layer '_blocks.99'"),
        (["--target", "efficientnet-lite0:_fc:5000"], "channel 5000 out of range"),
        (["--target", "efficientnet-lite0:_blocks.8:1:50:50"], "outside"),
        (["--target", "lenet:_fc:1"], "unknown network"),
        (["--generator", "fc6", "--weights", "/nonexistent/fc6.pt"], "/nonexistent/fc6.pt"),
        (["--budget", "10", "--optimizer", "ga"], "below one generation of 20"),
        (["--noise", "gauss:3"], "noise must be"),
        (["--optimizer", "adam"], "unknown optimizer 'adam'"),
        (["--generator", "fourier", "--weights", "fc6.pt"], "weights are for DeePSiM"),
        (["--generator", "fc9"], "unknown generator 'fc9'"),
        (["--set", "population"], "KEY=VALUE"),
        (["--set", "mutation_rate=2", "--optimizer", "ga"], "mutation_rate"),
        (["--objective", "selectivity:drive=0;suppress=1"], "--channels 1 records 0 to 0"),
        (["--channels", "2", "--objective", "median"], "objective: Input tag 'median'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "never"
    proc = xdream("evolve", "--out", str(out), "--budget", "40", *FAST, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdream evolve: error:")
    assert message in lines[0]
    assert not out.exists()


def test_existing_session_is_not_overwritten(finished_run):
    out, _ = finished_run
    before = (out / "session.h5").stat().st_mtime_ns
    proc = xdream("evolve", "--out", str(out), "--budget", "40", *FAST)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (out / "session.h5").stat().st_mtime_ns == before


def test_interrupted_run_is_marked_aborted(tmp_path, monkeypatch):
    from simulator import evolve

    config = evolve.EvolveConfig(
        target="efficientnet-lite0:_blocks.3:1",
        out=str(tmp_path / "r"),
        generator="pixel",
        optimizer="ga",
        budget=200,
        image_size=32,
        input_size=64,
        references=0,
        device="cpu",
    )
    prepared = evolve.prepare(config)
    calls = 0

    def stop_at_third(done, total, tracker):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evolve.run(prepared, progress=stop_at_third)
    with h5py.File(tmp_path / "r" / "session.h5", "r") as f:
        assert f.attrs["status"] == "aborted"
        assert f["generations/scores"].shape == (60,)  # three whole generations, kept
    assert not (tmp_path / "r" / "best.png").exists()
