"""``GET /api/sessions/{id}/session.nwb`` on a real server: a running session downloads from
a consistent copy, a finished one holds what its HDF5 file holds, the temporary files go
once sent; unknown sessions are 404, and a server without pynwb answers 503 (docs/nwb.md)."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
from nwbinspector import Importance, inspect_nwbfile
from pynwb import NWBHDF5IO

from protocol.messages import Presentation, Response, Role
from rig_clients.connection import Connection
from rig_clients.presenter import Block, Presenter
from rig_clients.recorder import Recorder
from tests.server.http.pages import TIMEOUT_MS, wait_state
from xdream.testing.servers import Server, create_session, running_server

pytestmark = pytest.mark.slow

SESSION = dict(generator="pixel", image_size=16, population=4, seed=1, generations=2,
               references_per_generation=2, subject="M7", species="Macaca mulatta",
               subject_age="P6Y", experimenter="A. Operator", rig="screen",
               response_timeout_s=600)  # fmt: skip


def show(presenter: Presenter, recorder: Recorder, block: Block) -> None:
    """Show the block, a trial every 50 ms (onsets on this machine's clock), then report it
    and 3-channel counts."""
    now, n = time.monotonic(), len(block.stimuli)
    time.sleep(0.05 * n)
    shown, counts = [], []
    for k, (stimulus, image) in enumerate(zip(block.stimuli, block.images, strict=True)):
        pid = block.presentation_id(stimulus.stimulus_id, 0)
        shown.append(Presentation(presentation_id=pid, stimulus_id=stimulus.stimulus_id,
                                  onset=now + 0.05 * k, outcome="ok"))  # fmt: skip
        mean = float(np.asarray(image, dtype=np.float64).mean())
        counts.append(Response(presentation_id=pid, stimulus_id=stimulus.stimulus_id,
                               counts=[mean, mean / 2, float(k)]))  # fmt: skip
    presenter.report(block, shown)
    recorder.send(block.session, block.generation, counts)


def download(server: Server, session_id: str, path: Path) -> str:
    """Save the session's NWB file at ``path``; its Content-Disposition."""
    url = f"{server.http}/api/sessions/{session_id}/session.nwb"
    with urllib.request.urlopen(url, timeout=60) as reply:
        assert reply.status == 200 and reply.headers["Content-Type"] == "application/x-nwb"
        path.write_bytes(reply.read())
        return reply.headers["Content-Disposition"]


def wait_empty(folder: Path, timeout: float = 10.0) -> None:
    """The download's temporary folder is removed once it has been sent."""
    deadline = time.monotonic() + timeout
    while any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(folder.iterdir()), list(folder.iterdir())


def test_sessions_download_as_nwb_while_running_and_when_finished(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with running_server(tmp_path / "data", env={"TMPDIR": str(scratch)}) as server:
        session_id = create_session(server, name="unit 7", **SESSION)
        connection = Connection(server.zmq, [Role.presenter, Role.recorder], "screen")
        connection.connect(timeout_s=20)
        presenter, recorder = Presenter(connection), Recorder(connection)
        show(presenter, recorder, presenter.next_block(timeout_s=30))
        block = presenter.next_block(timeout_s=30)  # generation 1 is on the rig
        assert block is not None and block.generation == 1
        running = tmp_path / "running.nwb"
        assert download(server, session_id, running) == f'attachment; filename="{session_id}.nwb"'
        wait_empty(scratch)
        with NWBHDF5IO(running, "r") as io:
            nwb = io.read()
            assert len(nwb.processing["xdream"]["evolved_images"]) == 4  # generation 0
            assert len(nwb.trials) == 6 and nwb.subject.subject_id == "M7"
        status, _ = server.api("POST", f"/api/sessions/{session_id}/notes", {"text": "good"})
        assert status == 201
        show(presenter, recorder, block)
        server.wait_for(session_id, lambda s: s["state"] == "finished", 30)
        connection.close()

        finished = tmp_path / "finished.nwb"
        download(server, session_id, finished)
        status, hdf5 = server.api("GET", f"/api/sessions/{session_id}/data")
        assert status == 200
        (tmp_path / "session.h5").write_bytes(hdf5)
        wait_empty(scratch)
        status, body = server.api("GET", "/api/sessions/nope/session.nwb")
        assert status == 404 and body["code"] == "UnknownSession", body
    with h5py.File(tmp_path / "session.h5", "r") as f, NWBHDF5IO(finished, "r") as io:
        nwb = io.read()
        responses = nwb.processing["xdream"]["responses"]
        np.testing.assert_array_equal(responses["counts"][:], f["responses/counts"][()])
        assert responses["counts"][:].shape == (12, 3)
        images = nwb.stimulus_template["images"].order_of_images.data
        for i, stored in enumerate(f["generations/images"][()]):
            np.testing.assert_array_equal(images[i].data[()], stored)
        assert [t.name for t in images[8:]] == [f"reference-{k}" for k in range(len(images) - 8)]
        trials = nwb.trials.to_dataframe()
        reported = f["presentations/presentation_id"].asstr()[()]
        assert trials["presentation_id"].tolist() == reported.tolist()  # in the order shown
        assert (np.diff(trials["start_time"]) > 0).all() and trials["start_time"].min() >= 0
        assert nwb.notes.endswith(": good")
        assert (nwb.subject.species, nwb.subject.age) == ("Macaca mulatta", "P6Y")
    # A session whose settings name the animal needs nothing more for the archive.
    messages = list(inspect_nwbfile(nwbfile_path=finished))
    worst = [m for m in messages if m.importance.value >= Importance.CRITICAL.value]
    assert not worst, [(m.check_function_name, m.message) for m in worst]


def test_a_server_without_pynwb_answers_503(tmp_path):
    """As where the nwb extra is not installed: pynwb cannot be imported."""
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text('import sys\nsys.modules["pynwb"] = None\n')
    path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with running_server(tmp_path / "data", env={"PYTHONPATH": path}) as server:
        status, body = server.api("GET", "/api/sessions/abc/session.nwb")
    assert status == 503 and body["code"] == "NwbUnavailable", body
    assert "pip install 'xdream-rig[nwb]'" in body["message"]


def test_the_dashboard_offers_the_nwb_file_next_to_the_other_downloads(tmp_path, browser):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, name="for the archive", **SESSION)
        assert server.api("POST", f"/api/sessions/{session_id}/stop")[0] == 200
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.http}/#/session/{session_id}")
        wait_state(page, "aborted")
        downloads = page.locator(".controls a.button")
        assert downloads.all_inner_texts()[-2:] == ["Scores (CSV)", "NWB file"]
        with page.expect_download() as download:
            page.get_by_role("link", name="NWB file").click()
        assert download.value.suggested_filename == f"{session_id}.nwb"
        saved = tmp_path / "download.nwb"
        download.value.save_as(saved)
        assert saved.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
