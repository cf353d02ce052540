"""Each alarm as an operator sees it, in real headless Chromium against a real server and
real rig clients in their own processes, at a laptop's 1280x800 and a rig monitor's
1920x1080: a stalled rig (and the rig client lost with it), a generation left unanswered, refused
responses and a frozen server. Each must show above the fold, in the tab's title, pause the
session where it wastes trials, and go away once its cause is gone.

Screenshots of the 1280x800 runs go to ``out/screenshots/`` (docs/dashboard.md shows them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from tests.server.http.pages import SCREENSHOTS, TIMEOUT_MS, wait_generations, wait_state
from xdream.testing.servers import Server, create_session, running_server, xdream

VIEWPORTS = [pytest.param((1280, 800), id="1280x800"), pytest.param((1920, 1080), id="1920x1080")]
#: A small session that does not end during a test.
SMALL = dict(generator="fourier", image_size=64, population=8, generations=10_000)


def alarm(page, kind: str):
    return page.locator(f'#alarms .alarm[data-kind="{kind}"]')


def open_session(browser, server: Server, session_id: str, size: tuple[int, int]):
    width, height = size
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server.http}/#/session/{session_id}")
    return page


def above_the_fold(page, kind: str) -> None:
    """The alarm is on screen without scrolling, and the tab's title says so."""
    box = alarm(page, kind).bounding_box()
    height = page.viewport_size["height"]
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, box
    assert "ALARM" in page.title()


def shoot(page, name: str, size: tuple[int, int]) -> None:
    if size == (1280, 800):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"dashboard-alarm-{name}.png")


@contextlib.contextmanager
def client(*args: str):
    process = xdream(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(20)


@pytest.mark.slow
@pytest.mark.parametrize("size", VIEWPORTS)
def test_a_stalled_rig_alarms_pauses_and_clears_when_it_answers(tmp_path, browser, size):
    with (
        running_server(tmp_path / "data") as server,
        client("simulate", "--server", server.zmq, "--name", "rig-A", "--noise", "none") as rig,
    ):
        session_id = create_session(server, name="stall", rig="rig-A", stall_timeout_s=3, **SMALL)
        page = open_session(browser, server, session_id, size)
        page.check("#sound")  # a click on the page: browsers allow sound after one
        wait_generations(page, 2)
        assert page.title() == "xdream-rig"

        os.kill(rig.pid, signal.SIGSTOP)  # the rig PC hangs mid-session
        alarm(page, "stall").wait_for()
        alarm(page, "client_lost").wait_for()  # its heartbeats stop too
        assert "No trial reported by the rig" in alarm(page, "stall").inner_text()
        assert "rig-A" in alarm(page, "client_lost").inner_text()  # by name, not "c1"
        wait_state(page, "paused")  # auto-pause: the held generation waits for the rig
        assert "a stall alarm" in page.inner_text("#pause-info")
        above_the_fold(page, "stall")
        page.wait_for_function("Number(document.body.dataset.beeps || 0) >= 1")
        shoot(page, "stall", size)

        alarm(page, "stall").get_by_role("button", name="Acknowledge").click()
        alarm(page, "stall").get_by_text("Acknowledged").wait_for()
        detail = server.session(session_id)
        stall = next(a for a in detail["alarms"] if a["kind"] == "stall")
        assert detail["pause_reason"] == "stall" and stall["acknowledged"] is not None

        os.kill(rig.pid, signal.SIGCONT)  # the rig is back: both causes are gone
        alarm(page, "client_lost").wait_for(state="detached")
        alarm(page, "stall").wait_for(state="detached")
        assert page.title() == "xdream-rig"
        done = int(page.get_attribute("#curve", "data-generations"))
        page.get_by_role("button", name="Resume").click()
        wait_state(page, "running")
        wait_generations(page, done + 2)
        logged = {a["kind"]: a for a in server.session(session_id)["alarm_log"]}
        assert {"stall", "client_lost"} <= set(logged)
        assert not logged["stall"]["active"] and logged["stall"]["acknowledged"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("size", VIEWPORTS)
def test_an_unanswered_generation_and_a_frozen_server_alarm(tmp_path, browser, size):
    """A folder presenter whose rig writes no responses (nothing records): the generation
    is held, not scored; then the server itself freezes and the page says its data are old."""
    with (
        running_server(tmp_path / "data") as server,
        client("present", "--server", server.zmq, "--name", "rig-A",
               "--folder", str(tmp_path / "exchange")),
    ):  # fmt: skip
        settings = dict(response_timeout_s=1, max_represent=1, stall_timeout_s=120)
        session_id = create_session(server, name="no recorder", rig="rig-A", **settings, **SMALL)
        page = open_session(browser, server, session_id, size)
        alarm(page, "nan_generation").wait_for()
        assert "8 of 8 images of generation 0" in alarm(page, "nan_generation").inner_text()
        wait_state(page, "paused")
        assert "mostly unanswered" in page.inner_text("#pause-info")
        above_the_fold(page, "nan_generation")
        shoot(page, "unanswered", size)
        detail = server.session(session_id)
        assert detail["generations_done"] == 0  # never given to the optimizer

        os.kill(server.process.pid, signal.SIGSTOP)  # the server hangs
        try:
            alarm(page, "stale").wait_for(timeout=20_000)
            assert "no update for" in page.inner_text("#connection")
            above_the_fold(page, "stale")
            shoot(page, "stale", size)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        alarm(page, "stale").wait_for(state="detached")
        page.wait_for_function("document.querySelector('#connection').textContent === 'live'")


@pytest.mark.slow
@pytest.mark.parametrize("size", VIEWPORTS)
def test_refused_responses_alarm_with_the_reason_and_pause(tmp_path, browser, size):
    """Channel 7 scored on a rig that records 4: every response message is refused."""
    with (
        running_server(tmp_path / "data") as server,
        client("simulate", "--server", server.zmq, "--name", "rig-A", "--channels", "4"),
    ):
        session_id = create_session(server, name="channel 7", rig="rig-A", channels=[7], **SMALL)
        page = open_session(browser, server, session_id, size)
        alarm(page, "responses_refused").wait_for()
        text = alarm(page, "responses_refused").inner_text()
        assert "ChannelMismatch" in text and "channel 7" in text and "4 channels" in text
        wait_state(page, "paused")
        assert "refused responses" in page.inner_text("#pause-info")
        above_the_fold(page, "responses_refused")
        shoot(page, "refused", size)
        assert server.session(session_id)["generations_done"] == 0
