"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lite0():
    """efficientnet-lite0, loaded once per test session (loading takes about half a second)."""
    from simulator.networks import load_network

    return load_network("efficientnet-lite0")
