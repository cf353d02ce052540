"""The MATLAB functions of rig_clients/matlab run a whole session over HTTP against a real
``xdream serve``, under GNU Octave (Debian's ``octave``, as CI installs it): the counts the
rig computed from the images it fetched are the scores the session stored."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from server.http.access import create_token
from xdream.testing.servers import ROOT, create_session, running_server

pytestmark = pytest.mark.slow
OCTAVE = shutil.which("octave-cli")


@pytest.mark.skipif(OCTAVE is None, reason="GNU Octave is not installed (make tools)")
def test_an_octave_rig_runs_a_session_over_http(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(
            server, generator="pixel", image_size=16, population=3, generations=2,
            rig="octave-rig",
        )  # fmt: skip
        script = (
            f"addpath('{ROOT / 'rig_clients' / 'matlab'}');"
            "present = @(img, params) time();"  # a real rig: the photodiode's onset
            "count = @(img, onset) mean(double(img(:)));"  # a real rig: the spikes
            f"n = xdream_run_rig('{server.http}', 'octave-rig', '{session_id}', present, count);"
            "printf('blocks %d\\n', n);"
        )
        run = subprocess.run(
            [OCTAVE, "--no-gui", "--quiet", "--eval", script],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert "blocks 2" in run.stdout, run.stdout
        state = server.session(session_id)
        assert state["state"] == "finished" and state["generations_done"] == 2
        _, payload = server.api("GET", f"/api/sessions/{session_id}/data")
        with h5py.File(io.BytesIO(payload), "r") as f:
            images = f["generations/images"][()]
            scores = f["generations/scores"][()]
    np.testing.assert_allclose(scores, images.reshape(len(images), -1).mean(axis=1))


@pytest.mark.skipif(OCTAVE is None, reason="GNU Octave is not installed (make tools)")
def test_the_access_token_goes_with_every_request_when_set(tmp_path):
    token_file = create_token(tmp_path / "token")
    with running_server(tmp_path / "data", http_host="0.0.0.0",
                        options=("--token-file", str(token_file))) as server:  # fmt: skip
        script = (
            f"addpath('{ROOT / 'rig_clients' / 'matlab'}');"
            f"reply = xdream_get('{server.http}', '/api/sessions'); disp(fieldnames(reply));"
        )

        def octave(**env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [OCTAVE, "--no-gui", "--quiet", "--eval", script], capture_output=True,
                text=True, timeout=120, env={**os.environ, **env},
            )  # fmt: skip

        assert octave(XDREAM_TOKEN="").returncode != 0  # refused: 401
        allowed = octave(XDREAM_TOKEN=token_file.read_text().strip())
        assert allowed.returncode == 0 and "sessions" in allowed.stdout, allowed.stderr[-2000:]
