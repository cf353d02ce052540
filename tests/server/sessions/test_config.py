"""Session settings: inconsistent ones are refused, unknown names before any file is
written, and paths confined to the folders the server serves."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.errors import ConfigError
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


def test_a_stored_session_keeps_the_settings_it_began_with():
    """A session stored before ``subtract_baseline`` existed scored the evoked counts
    alone: resumed by a newer server, it must go on so, not switch to today's default."""
    stored = SessionConfig(population=8).model_dump(mode="json")
    assert SessionConfig.from_stored(stored).subtract_baseline is True  # as it was made
    del stored["subtract_baseline"]  # as an older server stored it
    assert SessionConfig.from_stored(stored).subtract_baseline is False
    assert SessionConfig.model_validate(stored).subtract_baseline is True  # a new session


def test_unknown_generator_is_refused_before_any_file(tmp_path):
    from protocol.errors import ConfigError

    async def main():
        async with manager_in(tmp_path) as manager:
            with pytest.raises(ConfigError, match="unknown generator"):
                await manager.create(config(generator="nope"))

    run(main())
    assert list(tmp_path.glob("*.h5")) == []


def test_paths_are_confined_to_the_servers_folders_and_say_nothing_of_the_rest(tmp_path):
    weights, photos = tmp_path / "weights", tmp_path / "data" / "references"
    (photos / "lab").mkdir(parents=True)
    weights.mkdir()
    (tmp_path / "secret").mkdir()
    for root in (weights, photos):  # a link inside each root that leads out of it
        (root / "escape").symlink_to(tmp_path / "secret")
    roots = ([weights], [photos])
    inside = config(weights="fc6.pt", reference_folder=str(photos / "lab")).confined(*roots)
    assert inside.weights == str(weights / "fc6.pt")  # relative: from the first root
    assert inside.reference_folder == str(photos / "lab")
    messages = set()
    for outside in ("/etc/passwd", "/no/such/file", "../secret", "escape/x"):
        for field in ("weights", "reference_folder"):
            with pytest.raises(ConfigError) as refused:
                config(**{field: outside}).confined(*roots)
            assert refused.value.field == field
            messages.add(str(refused.value))
    assert len(messages) == 2  # one text per field, whatever the path: exists or not
    assert not any("exist" in m or "passwd" in m or "secret" in m for m in messages)
