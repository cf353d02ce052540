"""Rig-PC clients: ``xdream record`` (CSV), ``xdream present --folder`` (MonkeyLogic-style
block files), and the whole rig side installed without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from protocol.codec import MAX_SERVER_HEADER_BYTES, Message, decode, encode
from protocol.errors import ConfigError
from protocol.messages import Response, Responses, Role
from rig_clients import folder, record
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from rig_clients.recorder import batches
from tests.rig_clients.conftest import rig_venv
from xdream.testing.servers import ROOT, create_session, free_port, running_server

SMALL = dict(generator="pixel", image_size=32, population=4, seed=2)


def test_counts_of_many_channels_go_in_messages_the_server_takes():
    """1000 responses of 96 channels would be a ~1 MB header: the recorder cuts them into
    messages under the server's header limit, in order, none empty."""
    responses = [
        Response(presentation_id=f"p{i}", stimulus_id=f"g3-e{i}", counts=[i + 0.5] * 96)
        for i in range(1000)
    ]
    cut = list(batches(responses))
    assert len(cut) > 1 and all(cut)
    assert [r for batch in cut for r in batch] == responses
    for batch in cut:
        frames = encode(Message(Responses(generation=3, responses=batch), session="s"))
        assert len(frames[0]) <= MAX_SERVER_HEADER_BYTES
        decode(frames, MAX_SERVER_HEADER_BYTES)
    assert list(batches(responses[:3])) == [responses[:3]]


def test_csv_rows_parse_and_bad_rows_name_the_row():
    lines = [
        "session,generation,presentation_id,stimulus_id,ch0,ch1",
        "s1,0,p1,g0-e0,3,4",
        "",
        "s1,0,p2,g0-e1,5,0.5",
    ]
    rows = list(record.parse_rows(lines))
    assert [k for k, _ in rows] == [("s1", 0), ("s1", 0)]
    assert rows[1][1].counts == [5.0, 0.5]
    with pytest.raises(ConfigError, match="row 2"):
        list(record.parse_rows(["session,generation", "s1,x,p,g,1"]))
    with pytest.raises(ConfigError, match="at least one channel"):
        list(record.parse_rows(["s1,0,p1,g0-e0"]))


def write_mat_v73(path: Path, names: list[str], counts: np.ndarray) -> None:
    """What MATLAB's ``save -v7.3`` writes: a cell array of char arrays as references to
    uint16 datasets under ``#refs#``, and matrices transposed (column-major)."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        cell = np.empty((1, len(names)), dtype=h5py.ref_dtype)
        for i, name in enumerate(names):
            ds = refs.create_dataset(f"r{i}", data=np.array([[ord(c)] for c in name], np.uint16))
            cell[0, i] = ds.ref
        f.create_dataset("stimulusID", data=cell)
        f.create_dataset("tEvokedResp", data=np.asarray(counts, dtype=np.float64).T)


def test_mat_v73_and_h5_responses_are_read(tmp_path):
    counts = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    names = ["block001_001_g0-e0.png", "block001_002_g0-e1.png", "block001_001_g0-e0.png"]
    write_mat_v73(tmp_path / "block001.mat", names, counts)
    got_names, got = folder.read_responses(tmp_path / "block001.mat")
    assert got_names == names
    np.testing.assert_array_equal(got, counts)
    with h5py.File(tmp_path / "block002.h5", "w") as f:
        f["stimulusID"] = np.array(names, dtype=object).astype(h5py.string_dtype())
        f["tEvokedResp"] = counts
    got_names, got = folder.read_responses(tmp_path / "block002.h5")
    assert got_names == names
    np.testing.assert_array_equal(got, counts)
    manifest = {
        "block": 0,
        "stimuli": [
            {"file": "block001_001_g0-e0.png", "stimulus_id": "g0-e0"},
            {"file": "block001_002_g0-e1.png", "stimulus_id": "g0-e1"},
        ],
    }
    responses = folder.responses_for(manifest, got_names, got)
    assert [r.presentation_id for r in responses] == ["g0-e0-b0-r0", "g0-e1-b0-r0", "g0-e0-b0-r1"]
    with pytest.raises(ConfigError, match="did not show"):
        folder.responses_for(manifest, ["other.png"], counts[:1])
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(ConfigError, match="not readable"):
        folder.read_responses(tmp_path / "bad.mat")


@pytest.mark.slow
def test_record_sends_csv_and_reports_refused_rows(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, generations=2, response_timeout_s=600, **SMALL)
        connection = Connection(server.zmq, [Role.presenter], "screen")
        connection.connect(timeout_s=20)
        block = Presenter(connection).next_block(timeout_s=30)
        rows = ["session,generation,presentation_id,stimulus_id,ch0"]
        rows += [
            f"{session_id},0,p{i},{s.stimulus_id},{i + 1}" for i, s in enumerate(block.stimuli)
        ]
        rows.append(f"{session_id},0,bad,g0-e99,1")
        (tmp_path / "counts.csv").write_text("\n".join(rows) + "\n")
        done = subprocess.run(
            [sys.executable, "-m", "xdream", "record", "--server", server.zmq,
             str(tmp_path / "counts.csv")],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        connection.close()
        # The four good rows went in one message with the bad one, so all five are refused;
        # streamed from stdin each row goes alone and only the bad one is.
        assert done.returncode == 1 and "UnknownStimulus" in done.stderr
        streamed = subprocess.run(
            [sys.executable, "-m", "xdream", "record", "--server", server.zmq],
            input="\n".join(rows) + "\n", capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert streamed.returncode == 1 and streamed.stderr.count("refused") == 1
        state = server.wait_for(session_id, lambda s: s["generations_done"] == 1, 30)
    assert state["history"]["max"] == [4.0]


@pytest.mark.slow
def test_folder_rig_exchanges_block_files_with_the_server(tmp_path):
    exchange = tmp_path / "exchange"
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, generations=2, response_timeout_s=600, **SMALL)
        connection = Connection(server.zmq, [Role.presenter, Role.recorder], "ml-rig")
        connection.connect(timeout_s=20)
        rig = folder.FolderRig(connection, exchange, poll_s=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=rig.run, args=(stop.is_set,), daemon=True)
        thread.start()
        try:
            for number in (1, 2):  # play MonkeyLogic: read the manifest, write responses
                manifest_path = exchange / f"block{number:03d}.json"
                deadline = time.monotonic() + 30
                while not manifest_path.exists():
                    assert time.monotonic() < deadline, "no block file"
                    time.sleep(0.05)
                manifest = json.loads(manifest_path.read_text())
                assert manifest["generation"] == number - 1
                names, counts = [], []
                for entry in manifest["stimuli"]:
                    image = np.asarray(Image.open(exchange / entry["file"]))
                    assert image.shape == (32, 32, 3)
                    names.append(entry["file"])
                    counts.append([image.mean(), 0.0])
                write_mat_v73(exchange / f"block{number:03d}.mat", names, np.array(counts))
            state = server.wait_for(session_id, lambda s: s["state"] == "finished", 60)
        finally:
            stop.set()
            thread.join(10)
            connection.close()
    assert state["generations_done"] == 2
    done = sorted(p.name for p in (exchange / "done").iterdir())
    assert "block001.mat" in done and "block002_004_g1-e3.png" in done
    with h5py.File(state["data_file"], "r") as f:
        assert f["responses/counts"].shape == (8, 2)


@pytest.mark.slow
def test_rig_clients_install_and_run_without_torch(tmp_path, wheel):
    """A fresh venv with the base install only (offline): no torch, and the rig side works."""
    venv = tmp_path / "rig-venv"
    python = rig_venv(venv, wheel, set())
    script = tmp_path / "rig.py"
    script.write_text(
        "import importlib.util, subprocess, sys\n"
        "from protocol.messages import Role\n"
        "from rig_clients.connection import Connection\n"
        "from rig_clients.presenter import Presenter\n"
        "assert importlib.util.find_spec('torch') is None\n"
        "connection = Connection(sys.argv[1], [Role.presenter], 'screen')\n"
        "connection.connect(timeout_s=20)\n"
        "block = Presenter(connection).next_block(timeout_s=30)\n"
        "rows = [f'{block.session},{block.generation},p{i},{s.stimulus_id},{i}'\n"
        "        for i, s in enumerate(block.stimuli)]\n"
        "done = subprocess.run([sys.argv[2], 'record', '--server', sys.argv[1]],\n"
        "                      input='\\n'.join(rows) + '\\n', text=True)\n"
        "connection.close()\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(done.returncode)\n"
    )
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, generations=2, response_timeout_s=600, **SMALL)
        done = subprocess.run(
            [str(python), str(script), server.zmq, str(venv / "bin" / "xdream")],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        state = server.wait_for(session_id, lambda s: s["generations_done"] == 1, 30)
    assert state["history"]["max"] == [3.0]
    folder_mode = subprocess.run(
        [str(venv / "bin" / "xdream"), "present", "--folder", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert folder_mode.returncode == 2 and "xdream-rig[folder]" in folder_mode.stderr


def test_a_rig_command_told_to_give_up_says_so_in_one_line(tmp_path):
    nobody = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "xdream", "record", "--server", nobody, "--give-up-after", "1",
         str(tmp_path / "none.csv")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and time.monotonic() - started < 30
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("xdream record: error: no welcome from") and nobody in line
