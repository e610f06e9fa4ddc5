"""`recpipe simulate gme|css`: a short real recording posted to a running webhook and
followed; the recording and its signed callbacks are made by recpipe/simulate.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

from foundation.config import ConfigError, Settings, require_ffmpeg
from recpipe.cli.common import fail, first_line, load_settings, open_ledger, operator_errors

POST_TIMEOUT = 10.0


@contextmanager
def _posting_to(url: str) -> Iterator[None]:
    """A webhook that does not answer is one line and exit 1, as every other failure."""
    import requests

    try:
        yield
    except requests.ConnectionError:
        fail(
            f"no webhook answers at {url} "
            "(start one with `recpipe run` or `recpipe serve`, or pass --url)"
        )
    except requests.Timeout:
        fail(f"the webhook at {url} did not answer within {POST_TIMEOUT:g}s")
    except requests.RequestException as exc:
        fail(f"posting to {url} failed: {first_line(exc)}")


@click.group()
def simulate() -> None:
    """Make a short real recording and post its signed callbacks to a running webhook."""


@simulate.command("gme")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="webhook base URL")
@click.option("--biz-id", type=int, help="BizID (default: the first in RECPIPE_GME_SECRET_KEYS)")
@click.option("--segments", default=3, show_default=True, type=click.IntRange(1, 50))
@click.option("--seconds", default=4.0, show_default=True, help="length of the first segment")
@click.option("--seed", type=int, help="shuffle seed, for a repeatable order")
@click.option("--room", is_flag=True, help="a room: several users (RecordMode 0), one pausing")
@click.option("--users", default=3, show_default=True, type=click.IntRange(2, 20),
              help="users in the room, with --room")  # fmt: skip
@click.option("--wait/--no-wait", default=False, help="follow until archived or failed")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to wait with --wait")
def simulate_gme(
    url: str,
    biz_id: int | None,
    segments: int,
    seconds: float,
    seed: int | None,
    room: bool,
    users: int,
    wait: bool,
    timeout: float,
) -> None:
    """Segments into the GME source, then callbacks in shuffled order with a duplicate.
    With --room, several users of one task who join 2 s apart, the second pausing: the
    room is mixed on one clock once they are all archived."""
    from recpipe.simulate import post_callbacks, simulate_gme_recording, simulate_gme_room

    settings = load_settings()
    if not settings.gme_secret_keys:
        fail("set RECPIPE_GME_SECRET_KEYS to the same BizID=key the webhook uses")
    biz = biz_id or next(iter(settings.gme_secret_keys))
    if biz not in settings.gme_secret_keys:
        fail(f"no key for BizID {biz} in RECPIPE_GME_SECRET_KEYS")
    try:
        require_ffmpeg()
    except ConfigError as exc:
        fail(str(exc), 2)
    if room:
        made = simulate_gme_room(settings, biz, users=users, seconds=seconds, seed=seed)
        callbacks, follow = made.callbacks, made.room_id
        click.echo(f"room {made.room_id}: {users} users in {settings.gme_source_url}")
        for rid in made.recording_ids:
            click.echo(f"  recording {rid}")
    else:
        sim = simulate_gme_recording(
            settings, biz, segments=segments, first_seconds=seconds, seed=seed
        )
        callbacks, follow = sim.callbacks, sim.recording_id
        click.echo(
            f"recording {sim.recording_id}: {segments} segments in {settings.gme_source_url}"
        )
    endpoint = url.rstrip("/") + "/callbacks/gme"
    with _posting_to(endpoint):
        statuses = post_callbacks(endpoint, callbacks, timeout=POST_TIMEOUT)
    for (label, _body, _sig), code in zip(callbacks, statuses, strict=True):
        click.echo(f"  {label:<28} -> {code}")
    if any(code != 200 for code in statuses):
        fail("some callbacks were refused (is the webhook using the same key?)")
    click.echo(
        f"settles after {settings.settle_seconds:g}s of quiet; follow with: recpipe status {follow}"
    )
    if wait:
        with operator_errors():
            _follow(settings, follow, timeout)


@simulate.command("css")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="webhook base URL")
@click.option("--appid", default=1253000000, show_default=True, type=int)
@click.option("--seconds", default=3.0, show_default=True, help="length of each file")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to serve files on")
@click.option("--port", default=0, type=int, help="port to serve files on (default: any free)")
@click.option("--seed", type=int, help="shuffle seed, for a repeatable order")
@click.option("--wait/--no-wait", default=False, help="serve and follow until archived or failed")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to wait with --wait")
@click.option(
    "--serve-seconds", default=300.0, show_default=True, help="how long to serve without --wait"
)
def simulate_css(
    url: str,
    appid: int,
    seconds: float,
    host: str,
    port: int,
    seed: int | None,
    wait: bool,
    timeout: float,
    serve_seconds: float,
) -> None:
    """A split stream (two mp4 files) and an HLS recording, served over HTTP, then their
    signed callbacks in shuffled order with a duplicate."""
    import tempfile
    from pathlib import Path

    from recpipe.simulate import MediaServer, post_css_callbacks, simulate_css_recordings
    from tasks.css.fetch import FetchError, check_url

    settings = load_settings()
    key = settings.css_callback_key
    if not key:
        fail("set RECPIPE_CSS_CALLBACK_KEY to the key the webhook uses")
    try:
        require_ffmpeg()
    except ConfigError as exc:
        fail(str(exc), 2)
    with tempfile.TemporaryDirectory(prefix="recpipe-css-") as tmp:
        try:
            server = MediaServer(Path(tmp), host, port)
        except OSError as exc:
            fail(f"cannot serve files on {host}:{port}: {exc.strerror or exc}")
        try:
            check_url(server.url("recording.mp4"), settings.css_allowed_hosts)
        except FetchError:
            click.echo(
                f"note: {host}:{server.port} is not in RECPIPE_CSS_ALLOWED_HOSTS; unless the "
                "worker allows it, the recordings will fail (that is the fetch policy at work)",
                err=True,
            )
        try:
            sim = simulate_css_recordings(key, appid, Path(tmp), server, seconds=seconds, seed=seed)
            click.echo(f"serving {len(sim.recordings)} recordings at {server.url('')}")
            endpoint = url.rstrip("/") + "/callbacks/css"
            with _posting_to(endpoint):
                statuses = post_css_callbacks(endpoint, sim.callbacks, timeout=POST_TIMEOUT)
            for (label, _body), code in zip(sim.callbacks, statuses, strict=True):
                click.echo(f"  {label:<44} -> {code}")
            if any(code != 200 for code in statuses):
                fail("some callbacks were refused (is the webhook using the same key?)")
            click.echo(f"settles after {settings.settle_seconds:g}s of quiet")
            if wait:
                ledger = open_ledger(settings)
                with operator_errors():
                    for label, file_id in sim.recordings.items():
                        found = ledger.find_recordings(file_id)
                        if not found:
                            fail(f"{label}: no recording in the ledger (is it the webhook's?)")
                        _follow(settings, found[0], timeout)
            else:
                click.echo(
                    f"serving for {serve_seconds:g}s; follow with: recpipe status "
                    + " ".join(sim.recordings.values())
                )
                time.sleep(serve_seconds)
        finally:
            server.close()


def _follow(settings: Settings, recording_id: str, timeout: float) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    ledger = open_ledger(settings)
    deadline = time.monotonic() + timeout
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as bar:
        task = bar.add_task(recording_id, total=None)
        while time.monotonic() < deadline:
            recording = ledger.recording(recording_id)
            state = recording.state if recording else "unknown"
            bar.update(task, description=f"{recording_id}: {state}")
            if recording and state in ("archived", "failed"):
                break
            time.sleep(1)
    recording = ledger.recording(recording_id)
    if recording is None or recording.state != "archived":
        fail(
            f"{recording_id} is {recording.state if recording else 'unknown'}"
            + (f": {recording.error}" if recording and recording.error else "")
        )
    run = ledger.run(recording.current_run_id) if recording.current_run_id else None
    click.echo(f"{recording_id}: archived, revision {recording.revision}")
    if run:
        click.echo(f"  manifest {run.manifest_url}")
        for artifact in run.result.get("artifacts", []):
            click.echo(
                f"  {artifact['format']:<5} {artifact['duration_s']:>8.2f}s  {artifact['url']}"
            )
