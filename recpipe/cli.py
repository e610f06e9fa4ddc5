"""The `recpipe` command: serve, run, operator commands and the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from recpipe.config import ConfigError, Settings, require_ffmpeg


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"recpipe: {message}", err=True)
    sys.exit(code)


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """recpipe: Tencent Cloud GME/CSS recording callbacks in, archived media out."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn processes")
@click.option("--threads", default=8, show_default=True, type=int, help="threads per process")
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the webhook on gunicorn (a production WSGI server)."""
    from gunicorn.app.base import BaseApplication

    from recpipe import logs
    from storage.ledger import Ledger, LedgerUnavailableError
    from webhook.app import create_app

    settings = load_settings()
    logs.configure(settings.log_level)
    try:
        Ledger(settings.database_url).migrate()
    except LedgerUnavailableError as exc:
        fail(f"ledger unreachable: {exc}")

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "accesslog": None,
                "timeout": 60,
                "graceful_timeout": 20,
                "keepalive": 5,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    Server().run()


@main.command()
def migrate() -> None:
    """Create or upgrade the ledger's schema."""
    from storage.ledger import Ledger

    settings = load_settings()
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    click.echo(f"ledger at revision {ledger.current_revision()}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--concurrency", default=2, show_default=True, type=int, help="worker processes")
def run(host: str, port: int, concurrency: int) -> None:
    """Everything on one machine: webhook, worker and beat (embedded defaults unless configured)."""
    from storage.ledger import Ledger

    settings = load_settings()
    try:
        require_ffmpeg()
    except ConfigError as exc:
        fail(str(exc), 2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Ledger(settings.database_url).migrate()
    python = sys.executable
    commands = {
        "webhook": [python, "-m", "recpipe", "serve", "--host", host, "--port", str(port)],
        "worker": [
            python, "-m", "celery", "-A", "tasks", "worker", "--beat",
            "--concurrency", str(concurrency), "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle", "-n", "recpipe@%h",
        ],
    }  # fmt: skip
    click.echo(
        f"recpipe: webhook on http://{host}:{port}, data in {settings.data_dir}, "
        f"broker {settings.broker_url.split('://')[0]}, archive {settings.archive_url}",
        err=True,
    )
    if not settings.gme_secret_keys:
        click.echo(
            "recpipe: RECPIPE_GME_SECRET_KEYS is not set: every GME callback is 401", err=True
        )
    children = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
    _supervise(children)


def _supervise(children: dict[str, subprocess.Popen[bytes]]) -> NoReturn:
    """Wait until a child exits or we are told to stop; then stop them all."""
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                click.echo(f"recpipe: {name} exited with {child.returncode}", err=True)
                code = child.returncode or 1
                stopping = True
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    sys.exit(code)


# -- operators --------------------------------------------------------------------


def _ledger(settings: Settings) -> Any:
    from storage.ledger import Ledger

    return Ledger(settings.database_url)


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@main.command()
@click.argument("recording_id", required=False)
@click.option("--state", help="only recordings in this state")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(recording_id: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """One recording in detail, or a table of recent ones."""
    from rich.console import Console
    from rich.table import Table

    from storage.ledger import LedgerUnavailableError

    settings = load_settings()
    ledger = _ledger(settings)
    console = Console()
    try:
        if recording_id is None:
            recordings = ledger.recent_recordings(limit=limit, state=state)
            notified = ledger.notification_summary([r.id for r in recordings])
            if as_json:
                rows = [
                    {**_recording_json(r), "notification": notified.get(r.id)} for r in recordings
                ]
                click.echo(json.dumps(rows, indent=2))
                return
            table = Table("recording", "source", "state", "rev", "age", "notification", "error")
            for r in recordings:
                table.add_row(
                    r.id, r.source, r.state, str(r.revision), _age(r.created_at),
                    notified.get(r.id, "-"), r.error or "",
                )  # fmt: skip
            console.print(table)
            return
        matches = ledger.find_recordings(recording_id)
        if not matches:
            fail(f"no recording {recording_id!r}")
        for rid in matches:
            recording = ledger.recording(rid)
            runs = ledger.runs_for(rid)
            detail = _recording_json(recording)
            detail["notification"] = ledger.notification_summary([rid]).get(rid)
            detail["segments"] = [s.__dict__ for s in recording.segments]
            detail["runs"] = [
                {
                    "id": r.id,
                    "revision": r.revision,
                    "state": r.state,
                    "attempts": r.attempts,
                    "steps": r.steps,
                    "error": r.error,
                    "manifest": r.manifest_url,
                    "artifacts": r.result.get("artifacts", []),
                    "notifications": [
                        {
                            "url": n.url,
                            "type": n.event_type,
                            "state": n.state,
                            "attempts": n.attempts,
                            "last_status": n.last_status,
                            "last_error": n.last_error,
                        }
                        for n in ledger.notifications_for_run(r.id)
                    ],
                }
                for r in runs
            ]
            if as_json:
                click.echo(json.dumps(detail, indent=2, default=str))
            else:
                console.print_json(json.dumps(detail, default=str))
    except LedgerUnavailableError as exc:
        fail(f"ledger unreachable: {exc}")


def _recording_json(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "source": r.source,
        "state": r.state,
        "revision": r.revision,
        "identity": r.identity or r.details,
        "created_at": r.created_at.isoformat() if r.created_at else None,
        "last_event_at": r.last_event_at.isoformat(),
        "settle_due_at": r.settle_due_at.isoformat() if r.settle_due_at else None,
        "error": r.error,
    }


@main.command()
@click.argument("recording_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="list what would run")
def reprocess(recording_ids: tuple[str, ...], dry_run: bool) -> None:
    """Re-run recordings' chains (by recording id or GME TaskID) as new revisions."""
    from storage.ledger import utcnow
    from tasks import context
    from tasks.celery import configure
    from tasks.jobs import start_chain

    configure(load_settings())
    ledger = context.ledger()
    targets = [rid for term in recording_ids for rid in ledger.find_recordings(term)]
    unknown = [t for t in recording_ids if not ledger.find_recordings(t)]
    if unknown:
        fail(f"no recording {', '.join(map(repr, unknown))}")
    for rid in targets:
        if dry_run:
            click.echo(f"would reprocess {rid}")
            continue
        run_id = ledger.claim(rid, now=utcnow(), force=True)
        if run_id is None:
            click.echo(f"{rid}: already processing, skipped")
            continue
        start_chain(run_id)
        click.echo(f"{rid}: queued as run {run_id}")


@main.command()
def doctor() -> None:
    """Check configuration, ledger, broker, storage and ffmpeg, one line each."""
    checks: list[tuple[str, Callable[[], str]]] = []
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        click.echo(f"FAIL configuration: {exc}")
        sys.exit(1)
    click.echo("ok   configuration")

    def ledger_check() -> str:
        from storage.migrate import head_revision

        ledger = _ledger(settings)
        ledger.ping()
        current, head = ledger.current_revision(), head_revision()
        if current != head:
            raise RuntimeError(f"schema at {current}, code expects {head}: run `recpipe migrate`")
        return f"{ledger.engine.dialect.name}, schema {current}"

    def broker_check() -> str:
        from tasks.celery import configure

        with configure(settings).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return settings.broker_url.split("://")[0]

    def archive_check() -> str:
        from storage.objectstore import store_from_url

        store_from_url(settings.archive_url).check_writable()
        return settings.archive_url

    def source_check() -> str:
        from storage.objectstore import store_from_url

        store = store_from_url(settings.gme_source_url)
        next(iter(store.list("")), None)
        return settings.gme_source_url

    def ffmpeg_check() -> str:
        ffmpeg, _ffprobe = require_ffmpeg()
        out = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()[0]

    checks = [
        ("ledger", ledger_check),
        ("broker", broker_check),
        ("archive", archive_check),
        ("source", source_check),
        ("ffmpeg", ffmpeg_check),
    ]
    failed = 0
    for name, check in checks:
        try:
            click.echo(f"ok   {name}: {check()}")
        except Exception as exc:
            failed += 1
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            click.echo(f"FAIL {name}: {first}")
    sys.exit(1 if failed else 0)


@main.group()
def simulate() -> None:
    """Make a short real recording and post its signed callbacks to a running webhook."""


@simulate.command("gme")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="webhook base URL")
@click.option("--biz-id", type=int, help="BizID (default: the first in RECPIPE_GME_SECRET_KEYS)")
@click.option("--segments", default=3, show_default=True, type=click.IntRange(1, 50))
@click.option("--seconds", default=4.0, show_default=True, help="length of the first segment")
@click.option("--seed", type=int, help="shuffle seed, for a repeatable order")
@click.option("--wait/--no-wait", default=False, help="follow until archived or failed")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to wait with --wait")
def simulate_gme(
    url: str,
    biz_id: int | None,
    segments: int,
    seconds: float,
    seed: int | None,
    wait: bool,
    timeout: float,
) -> None:
    """Segments into the GME source, then callbacks in shuffled order with a duplicate."""
    from recpipe.simulate import post_callbacks, simulate_gme_recording

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
    sim = simulate_gme_recording(settings, biz, segments=segments, first_seconds=seconds, seed=seed)
    click.echo(f"recording {sim.recording_id}: {segments} segments in {settings.gme_source_url}")
    statuses = post_callbacks(url.rstrip("/") + "/callbacks/gme", sim.callbacks)
    for (label, _body, _sig), code in zip(sim.callbacks, statuses, strict=True):
        click.echo(f"  {label:<28} -> {code}")
    if any(code != 200 for code in statuses):
        fail("some callbacks were refused (is the webhook using the same key?)")
    click.echo(
        f"settles after {settings.settle_seconds:g}s of quiet; "
        f"follow with: recpipe status {sim.recording_id}"
    )
    if wait:
        _follow(settings, sim.recording_id, timeout)


def _follow(settings: Settings, recording_id: str, timeout: float) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    ledger = _ledger(settings)
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


from recpipe.cli_delivery import redeliver  # noqa: E402

main.add_command(redeliver)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
