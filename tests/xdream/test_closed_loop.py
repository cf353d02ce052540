"""The closed loop over real sockets: ``xdream serve`` and rigs in separate processes.

Rigs are either ``xdream simulate`` (ConvNet units) or this test process playing a rig
through ``rig_clients`` with image brightness as the "spike count", which keeps the
crash and reconnect tests fast and deterministic.
"""

from __future__ import annotations

import json
import subprocess
import time

import h5py
import numpy as np
import pytest

from protocol.messages import Role
from rig_clients.connection import Connection
from rig_clients.presenter import Presenter
from rig_clients.recorder import Recorder
from xdream.testing.servers import (
    Server,
    brightness_responses,
    create_session,
    running_server,
    xdream,
)

pytestmark = pytest.mark.slow

SMALL = dict(generator="pixel", image_size=32, population=8, seed=3)


def rig(server, name: str = "test-rig") -> tuple[Connection, Presenter, Recorder]:
    connection = Connection(server.zmq, [Role.presenter, Role.recorder], name)
    connection.connect(timeout_s=20)
    return connection, Presenter(connection), Recorder(connection)


def next_block(presenter: Presenter, timeout: float = 30.0):
    block = presenter.next_block(timeout_s=timeout)
    assert block is not None, "no block arrived"
    return block


def test_whole_session_with_the_simulator(tmp_path):
    with running_server(tmp_path / "data") as server:
        simulator = xdream(
            "simulate", "--server", server.zmq, "--target", "efficientnet-lite0:_fc:1",
            "--noise", "none", "--channels", "2",
            stderr=(tmp_path / "simulator.log").open("w"),
        )  # fmt: skip
        try:
            session_id = create_session(
                server, generator="fourier", population=20, generations=8, channels=[0],
                references_per_generation=2, response_timeout_s=60,
            )  # fmt: skip
            state = server.wait_for(session_id, lambda s: s["state"] == "finished", 300)
        finally:
            simulator.terminate()
            simulator.wait(20)
    history = state["history"]
    assert history["mean"][-1] > history["mean"][0], history["mean"]
    with h5py.File(state["data_file"], "r") as f:
        assert f.attrs["status"] == "finished"
        assert np.bincount(f["generations/index"][()]).tolist() == [20] * 8
        assert f["generations/codes"].shape == (160, 7200)
        assert f["generations/images"].shape[0] == 160
        assert f["responses/counts"].shape == (8 * 22, 2)  # 2 channels recorded
        per_generation = np.bincount(f["responses/generation"][()])
        assert per_generation.tolist() == [22] * 8
        assert not np.isnan(f["generations/scores"][()]).any()
        assert f["references/score"].shape == (16,)


def test_server_killed_mid_session_resumes_without_loss(tmp_path):
    data = tmp_path / "data"
    server = Server(data)
    ports = dict(zmq_port=server.zmq_port, http_port=server.http_port)
    session_id = create_session(server, generations=4, response_timeout_s=60, **SMALL)
    connection, presenter, recorder = rig(server)
    acked: list[str] = []
    try:
        for _ in range(2):
            block = next_block(presenter)
            reply = brightness_responses(block)
            ack = recorder.send(block.session, block.generation, reply.responses)
            assert ack.accepted == 8
            acked += [r.presentation_id for r in reply.responses]
        block = next_block(presenter)
        assert block.generation == 2
        half = [s.stimulus_id for s in block.stimuli[:4]]
        reply = brightness_responses(block, only=half)
        assert recorder.send(block.session, 2, reply.responses).accepted == 4
        acked += [r.presentation_id for r in reply.responses]
        server.kill()  # SIGKILL mid-generation, four responses acknowledged
        server.stop()
        with running_server(data, **ports) as server:
            assert server.ready["resumed"] == [session_id]
            # The rig notices the silence, registers again and gets the rest of generation 2.
            block = next_block(presenter, timeout=60)
            assert (block.generation, block.block) == (2, 1)
            assert sorted(s.stimulus_id for s in block.stimuli) == sorted(
                f"g2-e{i}" for i in range(4, 8)
            )
            reply = brightness_responses(block)
            assert recorder.send(block.session, 2, reply.responses).accepted == 4
            acked += [r.presentation_id for r in reply.responses]
            block = next_block(presenter)
            assert block.generation == 3
            reply = brightness_responses(block)
            recorder.send(block.session, 3, reply.responses)
            acked += [r.presentation_id for r in reply.responses]
            state = server.wait_for(session_id, lambda s: s["state"] == "finished")
    finally:
        connection.close()
        server.stop()
    assert connection.reconnects >= 1
    with h5py.File(state["data_file"], "r") as f:
        assert np.bincount(f["generations/index"][()]).tolist() == [8, 8, 8, 8]
        stored = list(f["responses/presentation_id"].asstr()[()])
        assert sorted(stored) == sorted(acked)  # every acknowledged response, once
        assert not np.isnan(f["generations/scores"][()]).any()
        assert "server_restarted" in list(f["events/kind"].asstr()[()])


def test_simulator_dropped_mid_generation_and_reconnected(tmp_path):
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, generations=2, response_timeout_s=120, **SMALL)
        logs = (tmp_path / "simulator.log").open("w")
        slow = xdream(
            "simulate", "--server", server.zmq, "--noise", "poisson:20",
            "--latency-ms", "60000", stderr=logs,
        )  # fmt: skip
        server.wait_for(session_id, lambda s: s["current"] and s["current"]["acknowledged"], 120)
        slow.kill()  # the rig dies after acknowledging, before any response
        slow.wait(10)
        fresh = xdream("simulate", "--server", server.zmq, "--noise", "poisson:20", stderr=logs)
        try:
            state = server.wait_for(session_id, lambda s: s["state"] == "finished", 180)
        finally:
            fresh.terminate()
            fresh.wait(20)
    with h5py.File(state["data_file"], "r") as f:
        events = list(f["events/kind"].asstr()[()])
        assert "presenter_lost" in events
        blocks = f["responses/block"][()][f["responses/generation"][()] == 0]
        assert set(blocks.tolist()) == {1}  # all of generation 0 came from the new block
        assert np.bincount(f["generations/index"][()]).tolist() == [8, 8]
        assert not np.isnan(f["generations/scores"][()]).any()


def test_rig_that_never_answers_gets_blocks_again_then_the_session_pauses(tmp_path):
    """A generation no one answers is shown again, then held: never scored all NaN for the
    optimizer. Without auto-pause it is shown again and again."""
    with running_server(tmp_path / "data") as server:
        session_id = create_session(
            server, generations=1, response_timeout_s=0.5, max_represent=1, **SMALL
        )
        unpaused = create_session(
            server, generations=1, response_timeout_s=0.5, max_represent=0, auto_pause=False,
            **SMALL,
        )  # fmt: skip
        connection, presenter, _recorder = rig(server)
        try:
            blocks = {}
            while len(blocks.get(session_id, [])) < 2 or len(blocks.get(unpaused, [])) < 3:
                block = next_block(presenter)
                blocks.setdefault(block.session, []).append(block.block)
                assert len(blocks.get(session_id, [])) <= 2, "held after its re-presentation"
            assert blocks[session_id] == [0, 1] and blocks[unpaused][:3] == [0, 1, 2]
            state = server.wait_for(session_id, lambda s: s["state"] == "paused", 30)
            assert state["pause_reason"] == "nan_generation"
            assert [a["kind"] for a in state["alarms"]] == ["nan_generation"]
            assert server.session(unpaused)["state"] == "running"
        finally:
            connection.close()
    for session in (session_id, unpaused):
        with h5py.File(tmp_path / "data" / f"{session}.h5", "r") as f:
            assert "scores" not in f["generations"] or f["generations/scores"].shape == (0,)


def test_latency_option_delays_the_simulator(tmp_path):
    """--abort-rate and --latency-ms take effect: aborted trials come back as new blocks."""
    with running_server(tmp_path / "data") as server:
        session_id = create_session(server, generations=2, response_timeout_s=60, **SMALL)
        simulator = xdream(
            "simulate", "--server", server.zmq, "--abort-rate", "0.3", "--latency-ms", "200",
            "--seed", "5", stderr=(tmp_path / "simulator.log").open("w"),
        )  # fmt: skip
        try:
            t0 = time.monotonic()
            state = server.wait_for(session_id, lambda s: s["state"] == "finished", 180)
            elapsed = time.monotonic() - t0
        finally:
            simulator.terminate()
            simulator.wait(20)
    with h5py.File(state["data_file"], "r") as f:
        outcomes = list(f["presentations/outcome"].asstr()[()])
        assert outcomes.count("aborted") > 0
        assert f["presentations/block"][()].max() >= 1
        assert not np.isnan(f["generations/scores"][()]).any()
    assert elapsed > 0.4  # at least two blocks, each delayed 200 ms


def test_simulator_refuses_bad_options(tmp_path):
    simulator = xdream(
        "simulate", "--noise", "gaussian:3", stderr=subprocess.PIPE, stdout=subprocess.PIPE
    )
    _, err = simulator.communicate(timeout=60)
    assert simulator.returncode == 2 and "noise must be" in err


def test_demo_prints_one_json_summary(tmp_path):
    demo = xdream(
        "demo", "--generations", "2", "--json", "--data", str(tmp_path / "data"),
        stdout=subprocess.PIPE, stderr=(tmp_path / "demo.log").open("w"),
    )  # fmt: skip
    out, _ = demo.communicate(timeout=300)
    assert demo.returncode == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["generations"] == 2 and summary["state"] == "finished"
    for key in ("session_id", "best_score", "first_generation_mean", "last_generation_mean"):
        assert summary[key] is not None, key
    with h5py.File(summary["data_file"], "r") as f:
        assert np.bincount(f["generations/index"][()]).tolist() == [40, 40]


def test_demo_with_two_threads_reports_each_and_stores_both(tmp_path):
    """``xdream demo --threads 2``: the default search and the GA, interleaved in the same
    blocks on the same simulated unit over real ZeroMQ."""
    demo = xdream(
        "demo", "--generations", "2", "--threads", "2", "--json",
        "--data", str(tmp_path / "data"),
        stdout=subprocess.PIPE, stderr=(tmp_path / "demo.log").open("w"),
    )  # fmt: skip
    out, _ = demo.communicate(timeout=300)
    assert demo.returncode == 0, (tmp_path / "demo.log").read_text()[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    threads = summary["threads"]
    assert [t["optimizer"] for t in threads] == ["cmaes", "ga"]
    for thread in threads:
        for key in ("best_score", "first_generation_mean", "last_generation_mean"):
            assert thread[key] is not None, (thread["name"], key)
    assert summary["best_score"] == threads[0]["best_score"]
    with h5py.File(summary["data_file"], "r") as f:
        sizes = [threads[0]["population"], threads[1]["population"]]
        assert np.bincount(f["generations/index"][()]).tolist() == [sizes[0]] * 2
        assert np.bincount(f["threads/1/generations/index"][()]).tolist() == [sizes[1]] * 2
        shown = set(f["responses/stimulus_id"].asstr()[()])
    assert any("-t0-e" in s for s in shown) and any("-t1-e" in s for s in shown)
