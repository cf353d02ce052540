"""The dashboard end to end in real headless Chromium (Debian's ``chromium``, driven by
Playwright): an operator fills the form, starts a session against ``xdream simulate``
running in its own process, watches it advance, pauses, resumes and stops it.

Screenshots go to ``out/screenshots/`` (the README and docs/dashboard.md show them).
``make test`` installs chromium when it is missing; set ``XDREAM_CHROMIUM`` to use another
binary.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.server.http.pages import (
    SCREENSHOTS,
    TIMEOUT_MS,
    generations_done,
    playwright,
    wait_generations,
    wait_state,
)
from xdream.testing.servers import running_server, xdream

expect = playwright.expect


@pytest.mark.slow
def test_operator_runs_a_session_from_the_dashboard(tmp_path, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with running_server(tmp_path / "data") as server:
        rig = xdream("simulate", "--server", server.zmq, "--name", "rig-A",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.http + "/")
            page.get_by_role("link", name="New session").click()

            # Fill the form by label, as an operator would; one value is out of range.
            page.get_by_label("Name", exact=True).fill("V4 site 3, unit 12")
            page.get_by_label("Generator", exact=True).select_option("fourier")
            page.get_by_label("Images per generation", exact=True).fill("1")
            page.get_by_label("Stop after").fill("200")
            page.get_by_label("Reference images per generation").fill("2")
            page.get_by_role("button", name="Create session").click()
            # The server's answer comes back asynchronously: expect() waits for it.
            expect(page.locator("#error-population")).to_contain_text(
                "greater than or equal to 2", timeout=TIMEOUT_MS
            )
            population = page.get_by_label("Images per generation", exact=True)
            expect(population).to_have_attribute("aria-invalid", "true", timeout=TIMEOUT_MS)
            page.screenshot(path=SCREENSHOTS / "dashboard-form-error.png", full_page=True)

            population.fill("20")
            page.get_by_role("button", name="Create session").click()
            page.wait_for_url(re.compile(r"#/session/\w+"))
            wait_state(page, "created")
            page.get_by_role("button", name="Start").click()

            # Pushed updates: the rig client shows up, generations and the curve advance.
            page.locator("#clients").get_by_text("rig-A").wait_for()
            wait_generations(page, 3)
            first = generations_done(page)
            wait_generations(page, first + 2)
            assert generations_done(page) >= first + 2
            assert page.locator("#curve path.max").count() == 1
            assert page.locator("#curve path.ref").count() == 1
            page.locator("#images img").first.wait_for()
            page.wait_for_function(
                "[...document.querySelectorAll('#images img, #best')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            page.screenshot(path=SCREENSHOTS / "dashboard-live.png")

            # At a glance: time, rate, the best reference beside the best image, the
            # references' own scores, each generation's best, a readout under the pointer.
            assert re.fullmatch(
                r"\d+:\d\d · (\d+:\d\d left|left: –)", page.inner_text("#stat-time")
            ), page.inner_text("#stat-time")
            assert re.match(r"\d+\.\d\d \(image \d+, \d+×\)", page.inner_text("#stat-reference"))
            # (redrawn with the thumbnails' grid, at most every 4 s)
            page.wait_for_function("document.querySelectorAll('#references img').length >= 2")
            page.wait_for_function("document.querySelectorAll('#best-strip img').length >= 2")
            box = page.locator("#curve").bounding_box()
            page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] / 2)
            expect(page.locator("#curve-readout")).to_contain_text("generation ")
            assert "best reference image" in page.inner_text("#legend")
            page.get_by_label("Show").select_option("0")  # one recorded channel's counts
            expect(page.locator("#legend")).to_contain_text("channel 0, evolved (mean)")
            assert page.locator("#curve path.mean").count() == 1
            page.get_by_label("Show").select_option("score")
            page.get_by_label("New note").fill("electrode moved 50 um")
            page.get_by_role("button", name="Add note").click()
            page.locator("#notes").get_by_text("electrode moved 50 um").wait_for()
            assert page.get_by_role("link", name="Scores (CSV)").is_visible()

            # Pause: after the generation in flight, nothing more is proposed.
            page.get_by_role("button", name="Pause after this generation").click()
            wait_state(page, "paused")
            page.wait_for_function(
                "document.querySelector('#stat-block').textContent === '–'"
            )  # the generation in flight completed
            paused_at = generations_done(page)
            page.wait_for_timeout(2500)
            assert generations_done(page) == paused_at
            page.screenshot(path=SCREENSHOTS / "dashboard-paused.png")

            # Resume with the keyboard: focus the button and press Enter.
            page.get_by_role("button", name="Resume").focus()
            page.keyboard.press("Enter")
            wait_state(page, "running")
            wait_generations(page, paused_at + 2)

            # A laptop screen shows the same view.
            page.set_viewport_size({"width": 1366, "height": 768})
            page.screenshot(path=SCREENSHOTS / "dashboard-laptop.png")

            # Stop asks first; Escape keeps the session running.
            page.get_by_role("button", name="Stop…").click()
            page.keyboard.press("Escape")
            assert page.get_attribute("#state", "data-state") == "running"
            page.get_by_role("button", name="Stop…").click()
            page.get_by_role("button", name="Stop session").click()
            wait_state(page, "aborted")
            assert page.text_content("#state") == "stopped"  # by the operator: no failure
            assert page.get_by_role("button", name="Resume").is_hidden()
            # The server lets go of it: it leaves the live list for the past ones.
            page.locator("#past-list").get_by_text("V4 site 3, unit 12").wait_for()
            assert page.locator("#live-list").get_by_text("V4 site 3, unit 12").count() == 0
            assert page.get_by_role("button", name="Archive").is_visible()
        finally:
            rig.terminate()
            rig.wait(20)
    assert (SCREENSHOTS / "dashboard-live.png").stat().st_size > 10_000


@pytest.mark.slow
def test_past_sessions_open_read_only_with_downloads(tmp_path, browser):
    from xdream.testing.servers import create_session

    data = tmp_path / "data"
    with running_server(data) as server:  # a session that is then stopped: a past one
        session_id = create_session(server, name="yesterday", generator="pixel", image_size=32,
                                    population=4, generations=3)  # fmt: skip
        assert server.api("POST", f"/api/sessions/{session_id}/stop")[0] == 200
    with running_server(data) as server:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.http + "/")
        page.locator("#past-list").get_by_text("yesterday").click()
        wait_state(page, "aborted")
        for name in ("Start", "Pause after this generation", "Resume", "Stop…"):
            assert page.get_by_role("button", name=name).is_hidden()
        link = page.get_by_role("link", name="HDF5 file")
        with page.expect_download() as download:
            link.click()
        saved = Path(tmp_path / "download.h5")
        download.value.save_as(saved)
        assert saved.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
        # Archived: out of the list, its file kept in the data folder's archive/.
        page.get_by_role("button", name="Archive").click()
        page.wait_for_function("window.location.hash === '#/'")
        page.locator("#past-list").get_by_text("None.").wait_for()
        assert (data / "archive" / f"{session_id}.h5").exists()
        assert not (data / f"{session_id}.h5").exists()


@pytest.mark.slow
def test_the_form_checks_settings_against_the_rig_and_estimates_the_time(tmp_path, browser):
    from xdream.testing.servers import create_session

    with running_server(tmp_path / "data") as server:
        rig = xdream("simulate", "--server", server.zmq, "--name", "rig-A", "--channels", "3",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:  # one short session first: the server learns how many channels rig-A records
            first = create_session(server, rig="rig-A", generator="pixel", image_size=16,
                                   population=4, generations=1)  # fmt: skip
            server.wait_for(first, lambda s: s["state"] == "finished", 60)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.http + "/#/new")
            expect(page.locator("#help-rig")).to_contain_text("Connected: rig-A.")
            assert page.locator("#rig-names option").evaluate_all("o => o.map(x => x.value)") == [
                "rig-A"
            ]
            page.get_by_label("Presenter name").fill("rig-B")  # a typo is told at once
            expect(page.locator("#help-rig")).to_contain_text("No presenter named rig-B")
            page.get_by_label("Presenter name").fill("rig-A")

            # The estimate follows the settings: 10 generations x (40 + 4) trials x 250 ms.
            page.get_by_label("Stop after").fill("10")
            expect(page.locator("#estimate")).to_contain_text("About 1:50 (h:mm:ss)")
            page.get_by_label("Image on (ms)").fill("350")
            expect(page.locator("#estimate")).to_contain_text("About 3:40 (h:mm:ss)")

            # Checked before sending: rig-A records channels 0 to 2.
            page.get_by_label("Channels scored").fill("1, 5")
            page.get_by_role("button", name="Create session").click()
            expect(page.locator("#error-channels")).to_contain_text("sends 3 channels")
            # Checked by the server, shown at the field: one weight for two channels.
            page.get_by_label("Channels scored").fill("0, 1")
            page.get_by_label("Channel weights").fill("1")
            page.get_by_role("button", name="Create session").click()
            expect(page.locator("#error-channel_weights")).to_contain_text("1 entries for 2")
            assert page.locator("#error-form").is_hidden()
            page.screenshot(path=SCREENSHOTS / "dashboard-form-checks.png", full_page=True)
            page.get_by_label("Channel weights").fill("1, -1")
            page.get_by_role("button", name="Create session").click()
            page.wait_for_url(re.compile(r"#/session/\w+"))
            (created,) = [s for s in server.api("GET", "/api/sessions")[1]["sessions"]
                          if s["id"] != first]  # fmt: skip
            config = server.session(created["id"])["config"]
            assert config["params"]["on_ms"] == 350 and config["channel_weights"] == [1, -1]
            assert config["auto_pause"] is True and config["stall_timeout_s"] is None

            # Another objective: its own fields show, the server checks it, it is stored.
            page.goto(server.http + "/#/new")
            page.get_by_label("Presenter name").fill("rig-A")
            assert page.get_by_label("Channels held down").is_hidden()
            page.get_by_label("Objective").select_option("selectivity")
            assert page.get_by_label("Channel weights").is_hidden()
            page.get_by_label("Channels scored").fill("0")
            page.get_by_label("Channels held down").fill("0")
            page.get_by_role("button", name="Create session").click()
            expect(page.locator("#error-objective")).to_contain_text("both driven and suppressed")
            page.get_by_label("Channels held down").fill("1, 2")
            page.get_by_role("button", name="Create session").click()
            page.wait_for_url(re.compile(r"#/session/\w+"))
            expect(page.locator("#session-info")).to_contain_text("drive channel(s) 0, hold 1, 2")
            newest = page.url.rsplit("/", 1)[-1]
            objective = server.session(newest)["config"]["objective"]
            assert objective == {"kind": "selectivity", "drive": [0], "suppress": [1, 2],
                                 "suppress_weight": 1.0}  # fmt: skip
        finally:
            rig.terminate()
            rig.wait(20)


@pytest.mark.slow
def test_two_threads_are_made_in_the_form_and_shown_side_by_side(tmp_path, browser):
    """A second thread added in the form (the GA beside the default search), run against the
    simulator: each thread's curve and best image, live and once the session is past."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with running_server(tmp_path / "data") as server:
        rig = xdream("simulate", "--server", server.zmq, "--name", "rig-T",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.http + "/")
            page.get_by_role("link", name="New session").click()
            page.get_by_label("Name", exact=True).fill("two threads")
            page.get_by_label("Generator", exact=True).select_option("fourier")
            page.get_by_label("Images per generation", exact=True).fill("12")
            page.get_by_label("Stop after").fill("8")
            page.get_by_role("button", name="Add a thread").click()
            page.get_by_label("Thread 1 name").fill("the GA")
            page.get_by_label("Thread 1 optimizer").select_option("ga")
            page.get_by_label("Thread 1 images").fill("8")
            # every block holds both threads' images: 12 + 8 + 4 references
            expect(page.locator("#estimate")).to_contain_text("8 generations × 24 trials")
            page.get_by_role("button", name="Create session").click()
            page.wait_for_url(re.compile(r"#/session/\w+"))
            wait_state(page, "created")
            page.get_by_role("button", name="Start").click()
            wait_generations(page, 3)
            cards = page.locator("#threads .thread-card")
            expect(cards).to_have_count(2)
            expect(cards.nth(1)).to_contain_text("the GA")
            expect(cards.nth(1)).to_contain_text("fourier + ga · 8 images")
            expect(cards.nth(0)).to_contain_text("12 images")
            expect(page.locator(".curve-head")).to_contain_text("Per generation (thread 0)")
            page.wait_for_function(
                "[...document.querySelectorAll('#threads svg')]"
                ".every(s => Number(s.dataset.generations) >= 3)"
            )
            assert page.locator("#threads path.max").count() == 2
            href = cards.nth(1).get_by_role("link", name="best image").get_attribute("href")
            assert href.endswith("/best.png?thread=1")
            status, body = server.api("GET", href)
            assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
            page.screenshot(path=SCREENSHOTS / "dashboard-threads.png")
            wait_state(page, "finished")
            session_id = page.url.rsplit("/", 1)[1]
        finally:
            rig.terminate()
            rig.wait(20)
    with running_server(tmp_path / "data") as server:  # the same, read from the file
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{server.http}/#/session/{session_id}")
        wait_state(page, "finished")
        expect(page.locator("#threads .thread-card")).to_have_count(2)
        page.wait_for_function(
            "[...document.querySelectorAll('#threads svg')]"
            ".every(s => Number(s.dataset.generations) === 8)"
        )
