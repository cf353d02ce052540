"""Debian's chromium for the dashboard test and benchmark (Playwright drives it; it downloads
no browser of its own)."""

from __future__ import annotations

import os
import shutil

#: Flags for a sandboxed, offline machine (no sandbox as root; no background fetches).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """``$XDREAM_CHROMIUM``, else the ``chromium`` on PATH (None: not installed)."""
    return os.environ.get("XDREAM_CHROMIUM") or shutil.which("chromium")
