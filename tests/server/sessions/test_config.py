"""Session settings: inconsistent ones are refused, and unknown names before any file is
written."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.sessions.config import SessionConfig
from tests.server.sessions.doubles import (
    config,
    manager_in,
    run,
)


def test_session_config_refuses_inconsistent_settings():
    with pytest.raises(ValidationError, match="not both"):
        SessionConfig(budget=100, generations=3)
    with pytest.raises(ValidationError, match="channel_weights"):
        SessionConfig(channels=[0, 1], channel_weights=[1.0])
    with pytest.raises(ValidationError, match="extra"):
        SessionConfig(populaton=3)


def test_unknown_generator_is_refused_before_any_file(tmp_path):
    from protocol.errors import ConfigError

    async def main():
        async with manager_in(tmp_path) as manager:
            with pytest.raises(ConfigError, match="unknown generator"):
                await manager.create(config(generator="nope"))

    run(main())
    assert list(tmp_path.glob("*.h5")) == []
