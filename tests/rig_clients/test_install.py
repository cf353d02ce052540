"""The rig-PC install on Windows, macOS and Linux.

Offline (always): the wheel is pure Python, and installed into a fresh venv from local files
only (tests/rig_clients/conftest.py) the base install and the rig extras (folder, window,
lsl) bring no torch, FastAPI or uvicorn, and the rig commands run. Against the package index
(CI has one): for each other platform, pip resolves the wheel with the rig extras to
prebuilt wheels only
(``--dry-run --platform``). Where no index can be reached, set ``XDREAM_OFFLINE=1`` to skip
those on purpose; without it they fail rather than skip silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.rig_clients.conftest import rig_venv

PLATFORMS = ["win_amd64", "macosx_11_0_arm64", "macosx_10_13_x86_64", "manylinux2014_x86_64"]
SERVER_ONLY = {"torch", "fastapi", "uvicorn", "starlette", "pydantic-settings"}
#: What a rig PC installs beyond the base: every front end.
RIG_EXTRAS = "folder,window,lsl"


def test_the_wheel_is_pure_python(wheel):
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name


@pytest.mark.slow
def test_the_rig_install_works_offline_without_torch(wheel, tmp_path):
    python = rig_venv(tmp_path / "venv", wheel, set(RIG_EXTRAS.split(",")))
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    names = {item["name"].lower() for item in json.loads(listed.stdout)}
    assert {"xdream-rig", "numpy", "pyzmq", "msgpack", "pydantic", "h5py", "pillow", "pyglet",
            "pylsl"} <= names  # fmt: skip
    assert not names & SERVER_ONLY, names
    probe = (
        "import importlib.util, sys\n"
        "import rig_clients.folder, rig_clients.record, protocol.codec\n"
        "import rig_clients.window.display, rig_clients.lsl_record, pylsl\n"
        "assert importlib.util.find_spec('torch') is None\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([str(python), "-c", probe], check=True, timeout=60, cwd=tmp_path)
    for command in (["present", "--help"], ["record", "--help"], ["keys", str(tmp_path / "k")]):
        done = subprocess.run(
            [str(tmp_path / "venv" / "bin" / "xdream"), *command],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("XDREAM_OFFLINE") == "1", reason="XDREAM_OFFLINE=1: no index")
@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_rig_install_takes_only_prebuilt_wheels_and_no_torch(wheel, platform, tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--only-binary=:all:", "--platform", platform, "--python-version", "3.10",
         "--target", str(tmp_path / "target"), "--report", str(report), f"{wheel}[{RIG_EXTRAS}]"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"xdream-rig", "numpy", "pyzmq", "msgpack", "pydantic", "h5py", "pillow", "pyglet",
            "pylsl"} <= names  # fmt: skip
    assert not names & SERVER_ONLY, names
