"""What the dashboard's browser tests share: Debian's Chromium under Playwright, and waits
on what the page shows (its session state, its curve)."""

from __future__ import annotations

import re

import pytest

from xdream.testing.browser import CHROMIUM_ARGS, find_chromium
from xdream.testing.servers import ROOT

playwright = pytest.importorskip("playwright.sync_api", reason="dev extra not installed")

SCREENSHOTS = ROOT / "out" / "screenshots"
TIMEOUT_MS = 90_000


def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make tools` (apt-get install)")
    return path


def launch(p):
    return p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def generations_done(page) -> int:
    text = page.inner_text("#stat-generation")
    match = re.search(r"\((\d+) of \d+ done\)", text)
    assert match, text
    return int(match.group(1))


def wait_state(page, state: str, timeout: float = TIMEOUT_MS) -> None:
    page.wait_for_function(
        "s => document.querySelector('#state').dataset.state === s", arg=state, timeout=timeout
    )


def wait_generations(page, at_least: int) -> None:
    page.wait_for_function(
        """n => Number(document.querySelector('#curve').dataset.generations || 0) >= n""",
        arg=at_least,
        timeout=TIMEOUT_MS,
    )
