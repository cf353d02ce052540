"""The rig-PC install on Windows, macOS and Linux: xdream-rig's wheel is pure Python, and the
base install (and the folder extra) resolves to prebuilt wheels only, without torch, for
each platform. pip resolves against the package index for the other platforms without
installing anything (``--dry-run --platform``); the install itself is exercised on Linux by
tests/test_rig_clients.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from xdream.testing.servers import ROOT

PLATFORMS = ["win_amd64", "macosx_11_0_arm64", "macosx_10_13_x86_64", "manylinux2014_x86_64"]
OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|"
                     r"Network is unreachable|ProxyError|Max retries exceeded")  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 and OFFLINE.search(done.stderr):
        pytest.skip("the package index is not reachable")
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("*.whl")
    return found


def test_the_wheel_is_pure_python(wheel):
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name


@pytest.mark.slow
@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_rig_install_takes_only_prebuilt_wheels_and_no_torch(wheel, platform, tmp_path):
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--only-binary=:all:", "--platform", platform, "--python-version", "3.10",
         "--target", str(tmp_path / "target"), "--report", str(report), f"{wheel}[folder]"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0 and OFFLINE.search(done.stderr):
        pytest.skip("the package index is not reachable")
    assert done.returncode == 0, done.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"xdream-rig", "numpy", "pyzmq", "msgpack", "pydantic", "h5py", "pillow"} <= names
    assert not names & {"torch", "fastapi", "uvicorn"}, names
