"""``xdream serve`` always starts: with a damaged session file in its data folder it resumes
every other session and lists the damaged one as such, over the real HTTP API."""

from __future__ import annotations

import h5py
import pytest

from tests.server.sessions.doubles import crashed_sessions
from xdream.testing.servers import running_server


@pytest.mark.slow
def test_the_server_starts_past_damaged_files_and_lists_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good, torn, uneven = crashed_sessions(data, sessions=3)
    path = data / f"{torn}.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])  # a torn write
    with h5py.File(data / f"{uneven}.h5", "r+") as f:  # killed between two columns
        column = f["responses/counts"]
        column.resize(column.shape[0] + 5, axis=0)
    with running_server(data) as server:
        assert sorted(server.ready["resumed"]) == sorted([good, uneven])
        status, listing = server.api("GET", "/api/sessions")
        assert status == 200
        assert sorted(s["id"] for s in listing["sessions"]) == sorted([good, uneven])
        (damaged,) = listing["past"]
        assert damaged["id"] == torn and damaged["state"] == "damaged"
        assert damaged["problem"].startswith("cannot be resumed")
        assert server.api("GET", "/api/health")[0] == 200
