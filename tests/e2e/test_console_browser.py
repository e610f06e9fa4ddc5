"""The console in a real browser (Playwright driving Debian's Chromium) against a running
recpipe (webhook and worker processes on PostgreSQL and Redis) fed by `recpipe simulate gme`:
sign in, find the recording, play it, see its waveform, reprocess it to revision 2, and be
refused as a viewer. Saves the recording page's screenshot to bench/out/console-recording.png
(untracked; copy it over docs/console-recording.png to refresh the README's picture).
And a room made by `recpipe simulate gme --room`: its participants' bars on one clock and
the mix playing. And the transcript beside the player, on a recording's page and a room's:
lines that seek, a highlight that follows, speakers in their lanes' colours, hostile text
shown as text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.console import PASSWORD
from tests.support.required import missing
from tests.support.services import free_port
from tests.support.stack import Stack
from tests.support.waits import wait_for

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "bench" / "out" / "console-recording.png"
BIZ = 1400000000


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"Debian's Chromium ({CHROMIUM})")


@pytest.fixture
def running(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[tuple[Stack, str, dict]]:
    """webhook + worker + beat, and `recpipe console`, on one ledger and broker."""
    env = {
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_ARCHIVE_URL": (tmp_path / "archive").as_uri(),
        "RECPIPE_GME_SOURCE_URL": (tmp_path / "source").as_uri(),
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}=browser-test-key",
        "RECPIPE_SETTLE_SECONDS": "3",
        "RECPIPE_CONSOLE_SECRET": "browser-test-console-secret-" + "q" * 24,
    }
    (tmp_path / "source").mkdir()
    stack = Stack(env, tmp_path / "logs")
    stack.ledger.migrate()
    stack.start_webhook()
    stack.start_worker()
    port = free_port()
    stack._spawn("console", [sys.executable, "-m", "recpipe", "console", "--port", str(port)])
    console = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{console}/login", timeout=2).ok, timeout=90, what="console")
        yield stack, console, stack.env
    finally:
        stack.stop()


def recpipe(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recpipe", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"],
    )  # fmt: skip


def sign_in(page, console: str, name: str) -> None:
    page.goto(f"{console}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console}/")


def test_an_operator_finds_plays_and_reprocesses_a_simulated_recording(running):
    from playwright.sync_api import sync_playwright

    stack, console, env = running
    for name, role in (("otto", "operator"), ("vera", "viewer")):
        added = recpipe(env, "users", "add", name, "--role", role, "--password-stdin",
                        stdin=PASSWORD + "\n")  # fmt: skip
        assert added.returncode == 0, added.stderr
    simulated = recpipe(env, "simulate", "gme", "--url", stack.url, "--seconds", "3",
                        "--wait", "--timeout", "180")  # fmt: skip
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr + stack.log_text()
    [recording_id] = set(re.findall(r"gme-\d+-[0-9a-f]{12}", simulated.stdout + simulated.stderr))
    # The running webhook (`recpipe serve`) serves none of the console.
    for method, path in [("GET", "/login"), ("POST", "/login"), ("GET", "/"),
                         ("GET", f"/recordings/{recording_id}"), ("GET", "/api/v1/openapi.json"),
                         ("GET", "/api/v1/recordings"),
                         ("POST", f"/api/v1/recordings/{recording_id}/reprocess")]:  # fmt: skip
        assert requests.request(method, stack.url + path, timeout=10).status_code == 404, path

    with sync_playwright() as p:
        browser = launch(p)
        try:
            operator = browser.new_page(viewport={"width": 1280, "height": 1000})
            sign_in(operator, console, "otto")
            assert operator.locator(".card").first.is_visible()

            # Find it by its TaskID in the search box, then open it.
            task_id = recording_id.split("-")[1]
            operator.goto(f"{console}/recordings")
            operator.fill("input[name=q]", task_id)
            operator.click("form.filters button[type=submit]")
            operator.click(f"a:has-text('{recording_id}')")
            operator.wait_for_url(f"{console}/recordings/{recording_id}")

            # The waveform is drawn (pixels on the canvas), the audio plays.
            operator.wait_for_selector("#waveform[data-drawn=true]", timeout=60_000)
            inked = operator.evaluate(
                """() => {
                    const c = document.getElementById('waveform');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0;
                    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                    return n;
                }"""
            )
            assert inked > 1000
            operator.evaluate(
                "() => { const a = document.getElementById('player'); a.muted = true; a.play(); }"
            )
            operator.wait_for_function(
                "() => document.getElementById('player').currentTime > 0.5", timeout=60_000
            )
            # Clicking the waveform seeks.
            box = operator.locator("#waveform").bounding_box()
            assert box is not None
            operator.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
            assert operator.evaluate("() => document.getElementById('player').currentTime") > 3
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            operator.evaluate("() => document.getElementById('player').pause()")
            operator.screenshot(path=str(SCREENSHOT), full_page=True)

            # The pipeline wrote a peaks.json and a timeline.json beside the media, and the
            # page draws the waveform from those peaks.
            folder = Path(env["RECPIPE_ARCHIVE_URL"].removeprefix("file://"))
            [media] = folder.rglob(f"{recording_id}.m4a")
            peaks = json.loads(media.with_name(f"{recording_id}.peaks.json").read_text())
            assert peaks["length"] > 0 and len(peaks["data"]) == 2 * peaks["length"]
            timeline = json.loads(media.with_name("timeline.json").read_text())
            assert {"timeline", "gaps", "speech"} <= set(timeline) and timeline["timeline"]
            assert "peaks.json" in operator.inner_text("#waveform-source")

            # Reprocess from fetch: revision 2 appears, and who did it is on the page.
            operator.select_option("select[name=from_step]", "fetch")
            with operator.expect_navigation():
                operator.click("#reprocess")
            assert operator.locator(".flash.ok").count() == 1  # accepted, not refused
            wait_for(
                lambda: (
                    (r := stack.ledger.recording(recording_id)).revision == 2
                    and r.state == "archived"
                ),
                timeout=180,
                interval=0.5,
                what="revision 2 archived",
            )

            def shows_revision_2() -> bool:
                operator.goto(f"{console}/recordings/{recording_id}")
                return "revision 2" in operator.inner_text("#revision") and (
                    operator.locator("article.run[data-revision='2'] .badge").first.inner_text()
                    == "archived"
                )

            wait_for(shows_revision_2, timeout=60, interval=1, what="revision 2 on the page")
            assert "user:otto" in operator.inner_text("#audit")

            # A viewer sees no action, and an action posted anyway is refused.
            viewer = browser.new_page()
            sign_in(viewer, console, "vera")
            viewer.goto(f"{console}/recordings/{recording_id}")
            assert viewer.locator("#reprocess").count() == 0
            status = viewer.evaluate(
                """async (url) => {
                    const form = new FormData();
                    form.append('csrf_token', document.querySelector('[name=csrf_token]').value);
                    form.append('from_step', 'fetch');
                    return (await fetch(url, {method: 'POST', body: form})).status;
                }""",
                f"/recordings/{recording_id}/reprocess",
            )
            assert status == 403
        finally:
            browser.close()
    assert stack.ledger.recording(recording_id).revision == 2


def test_a_viewer_sees_a_simulated_room_s_participants_on_one_clock_and_plays_the_mix(running):
    from playwright.sync_api import sync_playwright

    stack, console, env = running
    added = recpipe(env, "users", "add", "vera", "--role", "viewer", "--password-stdin",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    simulated = recpipe(env, "simulate", "gme", "--room", "--users", "2", "--url", stack.url,
                        "--seconds", "2", "--wait", "--timeout", "180")  # fmt: skip
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr + stack.log_text()
    [room_id] = set(re.findall(r"room-\d+-[0-9a-f]{12}", simulated.stdout + simulated.stderr))
    assert stack.ledger.recording(room_id).state == "archived"

    with sync_playwright() as p:
        browser = launch(p)
        try:
            viewer = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(viewer, console, "vera")
            viewer.goto(f"{console}/recordings?source=room")
            viewer.click(f"a:has-text('{room_id}')")
            viewer.wait_for_url(f"{console}/rooms/{room_id}")

            # Two bars on one clock, the first to join on top: the second user joined 2 s
            # after the first, so its bar starts further along the same lane width.
            bars = viewer.locator("svg.lane rect.bar")
            assert bars.count() == 2
            lane = viewer.locator("svg.lane").first.bounding_box()
            first, second = (bars.nth(i).bounding_box() for i in range(2))
            assert lane and first and second and first["width"] > 50 and second["width"] > 50
            assert abs(first["x"] - lane["x"]) < 2  # at 0 s
            assert second["x"] > first["x"] + 50
            assert viewer.locator("svg.lane rect.speech").count() >= 2  # from timeline.json

            # The mix plays, its waveform drawn, and every lane's playhead follows it.
            viewer.wait_for_selector("#waveform[data-drawn=true]", timeout=60_000)
            viewer.evaluate(
                "() => { const a = document.getElementById('player'); a.muted = true; a.play(); }"
            )
            viewer.wait_for_function(
                "() => document.getElementById('player').currentTime > 0.5", timeout=60_000
            )
            viewer.wait_for_function(
                "() => Number(document.querySelector('svg.lane line.playhead')"
                ".getAttribute('x1')) > 0",
                timeout=10_000,
            )

            # A participant's own page, and back to the room from it.
            viewer.locator("a.participant-link").first.click()
            viewer.wait_for_url(re.compile(rf"{re.escape(console)}/recordings/gme-"))
            viewer.click("#room-link")
            viewer.wait_for_url(f"{console}/rooms/{room_id}")
        finally:
            browser.close()


def test_a_page_in_progress_is_not_reloaded_while_its_player_plays(tmp_path: Path):
    """The console's own script, on a page that asks to be refreshed every second: while
    its player plays the page stays (no second request for it); once paused, it reloads."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from tests.support.media import make_tone

    tone = make_tone(tmp_path / "tone.mp3", 440.0, 30.0).read_bytes()
    script = (ROOT / "recpipe" / "console" / "static" / "console.js").read_text()
    page_html = (
        '<!doctype html><html><head><script src="/console.js" defer></script></head>'
        '<body data-refresh="1"><audio id="player" src="/tone.mp3" loop></audio></body></html>'
    )
    served: list[str] = []

    def serve(route) -> None:
        path = route.request.url.removeprefix("http://console.test")
        served.append(path)
        body, kind = {
            "/page": (page_html, "text/html"),
            "/console.js": (script, "text/javascript"),
            "/tone.mp3": (tone, "audio/mpeg"),
        }.get(path, ("", "text/plain"))
        route.fulfill(status=200 if body else 404, body=body, content_type=kind)

    def pages() -> int:
        return served.count("/page")

    with sync_playwright() as p:
        browser = launch(p)
        try:
            viewer = browser.new_page()
            viewer.route("http://console.test/**", serve)
            viewer.goto("http://console.test/page")
            # Until it plays, the page may refresh (as it should): on a loaded machine that
            # can come before the play is asked for; then the next load is played.
            for _attempt in range(20):
                try:
                    viewer.evaluate(
                        "() => { const a = document.getElementById('player');"
                        " a.muted = true; a.play(); }"
                    )
                    viewer.wait_for_function(
                        "() => document.getElementById('player').currentTime > 0.2",
                        timeout=30_000,
                    )
                    break
                except PlaywrightError as exc:
                    if "context was destroyed" not in str(exc):
                        raise
                    viewer.wait_for_load_state()
            else:
                raise AssertionError("the page never stayed loaded long enough to play")
            playing = pages()
            viewer.wait_for_timeout(3_000)  # three refresh periods of playing
            assert pages() == playing
            viewer.evaluate("() => document.getElementById('player').pause()")
            for _ in range(100):
                if pages() > playing:
                    break
                viewer.wait_for_timeout(100)
            assert pages() > playing
        finally:
            browser.close()


@pytest.fixture
def console_alone(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[tuple[str, dict]]:
    """`recpipe console` alone on a ledger and broker, with the viewer vera."""
    env = {
        **os.environ,
        "RECPIPE_DATA_DIR": str(tmp_path / "var"),
        "RECPIPE_DATABASE_URL": pg_url,
        "RECPIPE_BROKER_URL": redis_url,
        "RECPIPE_ARCHIVE_URL": (tmp_path / "archive").as_uri(),
        "RECPIPE_CONSOLE_SECRET": "browser-test-console-secret-" + "s" * 24,
    }
    added = recpipe(env, "users", "add", "vera", "--role", "viewer", "--password-stdin",
                    stdin=PASSWORD + "\n")  # fmt: skip
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
        yield console, env
    finally:
        process.terminate()
        process.wait(20)


def test_signing_out_in_the_browser_ends_the_session_and_every_copy_of_its_cookie(console_alone):
    """The "Sign out" button: the browser is back at the sign-in page, and its cookie,
    copied before (with the browser's User-Agent, from the same address), is refused."""
    from playwright.sync_api import sync_playwright

    console, env = console_alone
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            sign_in(page, console, "vera")
            [cookie] = [c for c in page.context.cookies() if c["name"] == "recpipe_console"]
            copy = requests.Session()
            copy.headers["User-Agent"] = page.evaluate("navigator.userAgent")
            copy.cookies.set("recpipe_console", cookie["value"])

            def copy_home() -> int:
                return copy.get(f"{console}/", allow_redirects=False, timeout=10).status_code

            assert copy_home() == 200
            assert len(recpipe(env, "users", "sessions", "vera").stdout.splitlines()) == 1
            page.click("button:has-text('Sign out')")
            page.wait_for_url(f"{console}/login")
            page.goto(f"{console}/")
            assert page.url.startswith(f"{console}/login")
            assert copy_home() == 302
            assert recpipe(env, "users", "sessions", "vera").stdout == ""
        finally:
            browser.close()


def _real_audio(path: Path, seconds: float) -> None:
    """Replace the stand-in bytes the stored recording has with a real m4a of `seconds`."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency=330:duration={seconds}:sample_rate=44100",
         "-c:a", "aac", "-b:a", "64k", "-f", "mp4", str(path)],
        check=True,
    )  # fmt: skip


def _transcribed(ledger, rid: str, segments: list[dict]) -> None:
    from storage.domain.transcripts import TranscriptLineView
    from storage.ledger import utcnow

    run_id = ledger.recording(rid).current_run_id
    assert ledger.queue_transcript(run_id, utcnow())
    assert ledger.start_transcript(run_id, utcnow())
    ledger.finish_transcript(
        run_id, utcnow(), engine="pocketsphinx", language="en", json_url="j", vtt_url="v",
        summary={}, document={"segments": segments, "flags": []},
        lines=[TranscriptLineView(s["speaker"], s["start_s"], s["end_s"], s["text"])
               for s in segments],
    )  # fmt: skip


# The text of the line whose `current` class marks it as the one being played.
CURRENT_LINE = "() => document.querySelector('#transcript li.current')?.dataset.start ?? null"


SEEK_WATCH = """() => {
    const audio = document.getElementById('player');
    audio.pause();
    window.seekedAt = null;
    audio.addEventListener('seeked', () => { window.seekedAt = audio.currentTime; audio.pause(); },
                           { once: true });
}"""


def _follows_the_player(page, starts: list[float]) -> None:
    """A click on each line seeks the player to its start and highlights it; moving the
    player into another line moves the highlight there."""
    page.evaluate("() => { document.getElementById('player').muted = true; }")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    lines = page.locator("#transcript li")
    assert lines.count() == len(starts)
    for i in (1, 0, len(starts) - 1):
        # Where the seek the click makes lands (the click also plays: stopped there, so a
        # slow poll does not see the player moved on).
        page.evaluate(SEEK_WATCH)
        lines.nth(i).click()
        page.wait_for_function("() => window.seekedAt !== null", timeout=10_000)
        assert abs(page.evaluate("() => window.seekedAt") - starts[i]) < 0.05
        page.wait_for_function(f"() => ({CURRENT_LINE})() === '{starts[i]}'", timeout=10_000)
    page.evaluate("() => document.getElementById('player').pause()")
    for i in (2, 0):
        at = starts[i] + 0.1
        page.evaluate(f"() => {{ document.getElementById('player').currentTime = {at}; }}")
        page.wait_for_function(f"() => ({CURRENT_LINE})() === '{starts[i]}'", timeout=10_000)
    assert page.locator("#transcript li.current").count() == 1


def test_the_transcript_beside_the_player_seeks_follows_and_colours_speakers_as_lanes(
    console_alone, tmp_path: Path
):
    """On a recording's page and a room's: a click on a line seeks the audio to it, the
    line being played is highlighted, each speaker has their lane's colour (computed), and
    hostile transcript text (a speaker, the words) is shown as text and runs nothing."""
    from playwright.sync_api import sync_playwright

    from storage.ledger import Ledger
    from tests.support.console import HOSTILE, archived_room, archived_run, store_gme

    console, env = console_alone
    ledger = Ledger(env["RECPIPE_DATABASE_URL"])
    ledger.migrate()
    archive = tmp_path / "archive"
    rid = store_gme(ledger, 0, task="446946705284000951", user=HOSTILE)
    archived_run(ledger, rid, archive)
    _real_audio(archive / "gme" / str(BIZ) / rid / f"{rid}.m4a", 12.0)
    said = [(1.0, 2.5, "alpha " + HOSTILE), (4.0, 5.5, "bravo"), (7.0, 9.0, "charlie")]
    _transcribed(ledger, rid, [
        {"speaker": HOSTILE, "start_s": a, "end_s": b, "text": t, "words": []} for a, b, t in said
    ])  # fmt: skip
    room = archived_room(ledger, archive, task="446946705284000952", room="700",
                         users=[("alice", 0.0), ("bob", 3.0)])  # fmt: skip
    room_folder = archive / "gme" / str(BIZ) / "rooms" / room.id
    _real_audio(room_folder / f"{room.id}.m4a", 7.0)
    room_said = [("alice", 0.5, 1.5, "one"), ("bob", 3.5, 4.5, "two"), ("alice", 5.0, 6.0, "three")]
    _transcribed(ledger, room.id, [
        {"speaker": u, "start_s": a, "end_s": b, "text": t, "words": []}
        for u, a, b, t in room_said
    ])  # fmt: skip
    ledger.dispose()

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            sign_in(page, console, "vera")

            page.goto(f"{console}/recordings/{rid}")
            texts = page.locator("#transcript li .text").all_inner_texts()
            assert texts == [t for _, _, t in said]
            assert set(page.locator("#transcript li .speaker").all_inner_texts()) == {HOSTILE}
            assert page.locator("#transcript script, #transcript img").count() == 0
            assert page.evaluate("() => document.querySelectorAll('img[src=x]').length") == 0
            _follows_the_player(page, [a for a, _, _ in said])

            page.goto(f"{console}/rooms/{room.id}")
            _follows_the_player(page, [a for _, a, _, _ in room_said])
            lanes = page.evaluate(
                """() => Object.fromEntries([...document.querySelectorAll('tr.participant')]
                    .map((row) => [row.querySelector('code').textContent,
                                   getComputedStyle(row.querySelector('rect.bar')).fill]))"""
            )
            speakers = page.evaluate(
                """() => [...document.querySelectorAll('#transcript li')]
                    .map((li) => { const s = li.querySelector('.speaker');
                                   return [s.textContent, getComputedStyle(s).color,
                                           getComputedStyle(li).borderLeftColor]; })"""
            )
            assert set(lanes) == {"alice", "bob"} and lanes["alice"] != lanes["bob"]
            for speaker, colour, border in speakers:
                assert colour == border == lanes[speaker], (speaker, colour, border, lanes)
            assert dialogs == []
        finally:
            browser.close()
