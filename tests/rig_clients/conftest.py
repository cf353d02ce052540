"""The rig-PC install, made offline: xdream-rig's wheel is built here (no build isolation, so
nothing is fetched) and installed into a fresh venv with ``--no-index``; its dependencies
are taken from this environment's installed distributions, exactly those the wheel's
metadata requires, so the venv holds nothing else (no torch) and ``pip check`` proves the
requirements are met."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from xdream.testing.servers import ROOT


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (found,) = out.glob("*.whl")
    return found


def _needed(requirements: list[str], extras: set[str]) -> set[str]:
    """Names of the installed distributions that ``requirements`` need, recursively."""
    names: set[str] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        text, wanted = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": e}) for e in (wanted or {""})
        ):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in names:
            continue
        names.add(name)
        todo += [(r, set(req.extras)) for r in metadata.distribution(name).requires or []]
    return names


def rig_venv(where: Path, wheel: Path, extras: set[str]) -> Path:
    """A fresh venv with the wheel (and ``extras``) installed offline; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    requires = metadata.distribution("xdream-rig").requires or []
    for name in _needed(requires, extras):
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (site / top).exists():
                os.symlink(source, site / top)
    checked = subprocess.run(
        [str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return python


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """A virtual X display (Debian's Xvfb) for the window presenter; its DISPLAY value."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Debian's xvfb is not installed: run `make tools` (apt-get install)")
    read, write = os.pipe()
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    with os.fdopen(read) as announced:
        number = announced.readline().strip()  # written once the display accepts clients
    if not number:
        process.kill()
        pytest.fail("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        process.terminate()
        process.wait(10)
