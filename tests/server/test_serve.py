"""``xdream serve`` always starts: a session file torn by a crash is rebuilt from its journal,
one cut mid-append is repaired, and a file beyond both is listed as damaged while every
other session resumes, over the real HTTP API."""

from __future__ import annotations

import h5py
import pytest

from tests.server.sessions.doubles import crashed_sessions
from xdream.testing.servers import running_server


@pytest.mark.slow
def test_the_server_starts_past_damaged_files_and_lists_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good, torn, uneven, lost = (i for i, _ in crashed_sessions(data, sessions=4))
    path = data / f"{torn}.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])  # a torn write
    (data / f"{lost}.journal").unlink()  # ... and one whose journal is gone too
    path = data / f"{lost}.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with h5py.File(data / f"{uneven}.h5", "r+") as f:  # killed between two columns
        column = f["responses/counts"]
        column.resize(column.shape[0] + 5, axis=0)
    with running_server(data) as server:
        assert sorted(server.ready["resumed"]) == sorted([good, torn, uneven])
        status, listing = server.api("GET", "/api/sessions")
        assert status == 200
        assert sorted(s["id"] for s in listing["sessions"]) == sorted([good, torn, uneven])
        (damaged,) = listing["past"]
        assert damaged["id"] == lost and damaged["state"] == "damaged"
        assert damaged["problem"].startswith("cannot be resumed")
        assert server.api("GET", "/api/health")[0] == 200
