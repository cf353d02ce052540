"""The session file on disk."""

from __future__ import annotations

import pytest

from protocol.errors import ConfigError
from server.storage.session_file import SessionFile


def test_existing_file_is_not_overwritten(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists"):
        SessionFile(path, {})
    assert path.read_bytes() == b"precious"
