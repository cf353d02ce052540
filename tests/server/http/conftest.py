"""Fixtures of the HTTP tests: a headless Chromium for the dashboard's browser tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def browser():
    """Debian's Chromium, driven by Playwright (imported here: only browser tests need it)."""
    from tests.server.http.pages import launch, playwright

    with playwright.sync_playwright() as p:
        instance = launch(p)
        try:
            yield instance
        finally:
            instance.close()
