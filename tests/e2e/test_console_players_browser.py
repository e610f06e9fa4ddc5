"""A player's erasure in a real browser (Playwright driving Debian's Chromium) against
`recpipe console` on PostgreSQL and Redis: an admin finds the player from the navigation,
previews what forgetting would do, types the UserID and forgets them; the player's page then
says when, and their recording's page shows the tombstone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from storage.ledger import Ledger
from tests.support.console import BIZ, PASSWORD, archived_run, store_gme
from tests.support.required import missing
from tests.support.services import free_port
from tests.support.waits import wait_for

CHROMIUM = "/usr/bin/chromium"
PLAYER = "player-77"
TASK = "446946705284000931"


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"Debian's Chromium ({CHROMIUM})")


@pytest.fixture
def console_with_player(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[tuple[str, str]]:
    """`recpipe console` with the admin ada, on a ledger holding one archived recording of
    PLAYER; returns the console's address and that recording's id."""
    env = {
        **os.environ,
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_ARCHIVE_URL": (tmp_path / "archive").as_uri(),
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
        "RECPIPE_CONSOLE_SECRET": "browser-test-console-secret-" + "f" * 24,
        "RECPIPE_PLAYER_KEY": "browser-test-player-key-" + "k" * 24,
    }
    ledger = Ledger(pg_url)
    ledger.migrate()
    rid = store_gme(ledger, 0, task=TASK, user=PLAYER, room="500")
    archived_run(ledger, rid, tmp_path / "archive")
    ledger.dispose()
    added = subprocess.run(
        [sys.executable, "-m", "recpipe", "users", "add", "ada", "--role", "admin",
         "--password-stdin"],
        env=env, input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    port = free_port()
    with (tmp_path / "console.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "recpipe", "console", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    console = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{console}/login", timeout=2).ok, timeout=90, what="console")
        yield console, rid
    finally:
        process.terminate()
        process.wait(20)


def test_an_admin_finds_previews_and_forgets_a_player(console_with_player):
    from playwright.sync_api import sync_playwright

    console, rid = console_with_player
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{console}/login")
            page.fill("input[name=name]", "ada")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{console}/")

            # Find the player from the navigation.
            page.click("nav a:has-text('Players')")
            page.fill("#find-player input[name=BizID]", str(BIZ))
            page.fill("#find-player input[name=UserID]", PLAYER)
            page.click("#find-player button[type=submit]")
            page.wait_for_url(f"{console}/players/{BIZ}/{PLAYER}")
            assert page.locator(f"#recordings a:has-text('{rid}')").is_visible()

            # The dry run: what would go, nothing changed.
            page.click("#forget-preview")
            page.wait_for_selector("#report")
            assert "dry run" in page.inner_text("#report h2")
            assert rid in page.inner_text("#report-recordings")
            assert page.locator("#recordings .badge.state-archived").count() == 1

            # The UserID typed wrong: refused, nothing forgotten.
            page.fill("#forget-confirm", PLAYER.upper())
            page.click("#forget-button")
            page.wait_for_selector("#refused")
            assert "nothing was forgotten" in page.inner_text("#refused")

            # Typed right: forgotten, the report shown, the page says when.
            page.fill("#forget-confirm", PLAYER)
            page.click("#forget-button")
            page.wait_for_selector("#report")
            assert "Forgotten: what was done" in page.inner_text("#report h2")
            assert "Forgotten on" in page.inner_text("#forgotten")
            assert page.locator("#recordings .badge.state-forgotten").count() == 1

            # The recording is a tombstone: a notice with the time, nothing to play.
            page.click(f"#recordings a:has-text('{rid}')")
            page.wait_for_url(f"{console}/recordings/{rid}")
            assert "Forgotten on" in page.inner_text("#tombstone")
            assert page.locator(".flash.error").count() == 0
            assert page.locator("#player").count() == 0
            assert PLAYER not in page.content()
        finally:
            browser.close()
