"""The `recpipe` command: serve, run, operator commands and the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from foundation.config import ConfigError, Settings, require_ffmpeg


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
@click.option("--workers", default=1, show_default=True, type=int, help="server processes")
@click.option("--threads", default=8, show_default=True, type=int, help="app threads per process")
@click.option(
    "--max-connections",
    default=4096,
    show_default=True,
    type=click.IntRange(16),
    help="open connections per process; one more closes the oldest unanswered one",
)
@click.option(
    "--request-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5),
    help="seconds a request (line, headers, body) may take to arrive whole",
)
@click.option(
    "--keepalive",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="seconds an idle connection is kept open for the next request",
)
def serve(
    host: str,
    port: int,
    workers: int,
    threads: int,
    max_connections: int,
    request_timeout: float,
    keepalive: float,
) -> None:
    """Run the webhook on recpipe's HTTP server: whole requests are read under deadlines
    by an event loop, then answered on a thread pool, so slow clients hold no thread."""
    settings = load_settings()
    # Before anything imports prometheus_client: /metrics adds up every server process.
    from foundation import metrics

    metrics.use_multiprocess_dir(settings.data_dir / "metrics" / f"webhook-{os.getpid()}")

    from foundation import logs
    from recpipe import serving
    from storage.ledger import Ledger, LedgerUnavailableError
    from webhook.app import create_app

    logs.configure(settings.log_level, secrets=logs.secrets_of(settings))
    ledger = Ledger(settings.database_url)
    try:
        ledger.migrate()
    except LedgerUnavailableError as exc:
        fail(f"ledger unreachable: {exc}")
    finally:
        ledger.dispose()  # the server processes are forked: they open their own
    limits = serving.Limits(
        max_connections=max_connections,
        request_seconds=request_timeout,
        keepalive_seconds=keepalive,
        max_body_bytes=settings.max_body_bytes,
    )
    sys.exit(
        serving.serve(
            lambda: create_app(settings),
            host,
            port,
            workers=workers,
            threads=threads,
            limits=limits,
            on_worker_exit=metrics.mark_process_dead,
        )
    )


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
    if settings.gme_source_url.startswith("file://"):
        Path(urlsplit(settings.gme_source_url).path).mkdir(parents=True, exist_ok=True)
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

RECORDING_STATES = ("collecting", "processing", "archived", "failed")
SOURCES = ("gme", "css")
TIME_HELP = "ISO date/time (UTC unless it says) or an age: 30m, 2h, 3d"


class BrokerUnavailableError(Exception):
    """The Celery broker does not answer."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


@contextmanager
def _operator_errors() -> Iterator[None]:
    """Turn the ledger's and the broker's failures into one line and a non-zero exit."""
    from kombu.exceptions import OperationalError as BrokerOperationalError
    from sqlalchemy.exc import SQLAlchemyError

    from storage.ledger import LedgerUnavailableError

    try:
        yield
    except LedgerUnavailableError as exc:
        if "no such table" in str(exc):  # SQLite's word for an unmigrated ledger
            fail(f"ledger error: {exc} (is the schema current? `recpipe migrate`)")
        fail(f"ledger unreachable: {exc}")
    except SQLAlchemyError as exc:
        fail(f"ledger error: {_first_line(exc)} (is the schema current? `recpipe migrate`)")
    except (BrokerUnavailableError, BrokerOperationalError) as exc:
        fail(
            f"broker unreachable: {_first_line(exc)} "
            "(a run already recorded is dispatched by beat's sweep once the broker answers)"
        )


def _ledger(settings: Settings) -> Any:
    from storage.ledger import Ledger

    return Ledger(settings.database_url)


def _connect_broker(settings: Settings) -> Any:
    """The Celery app on these settings, after checking that its broker answers, quickly."""
    from tasks.celery import configure

    app = configure(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        scheme = settings.broker_url.split("://")[0]
        raise BrokerUnavailableError(f"{scheme}: {_first_line(exc)}") from exc
    return app


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _when(value: str | None, option: str) -> datetime | None:
    from recpipe.timespec import BadTimeError, parse_when

    if value is None:
        return None
    try:
        return parse_when(value, datetime.now(UTC), option)
    except BadTimeError as exc:
        fail(str(exc), 2)


def _choice(value: str | None, option: str, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        fail(f"{option}: {value!r} is not one of {', '.join(choices)}", 2)
    return value


def _resolve(ledger: Any, terms: tuple[str, ...]) -> list[str]:
    """Recording ids the terms name (id, GME TaskID, CSS stream or file id), in order;
    one line and exit 1 if any term names nothing."""
    found: list[str] = []
    unknown = []
    for term in terms:
        matches = ledger.find_recordings(term)
        if not matches:
            unknown.append(term)
        found.extend(rid for rid in matches if rid not in found)
    if unknown:
        fail(f"no recording matches {', '.join(map(repr, unknown))}")
    return found


@main.command()
@click.argument("recording_id", required=False)
@click.option("--state", help="only recordings in this state: " + ", ".join(RECORDING_STATES))
@click.option("--source", help="only recordings from gme or css")
@click.option("--limit", default=20, show_default=True, help="rows in the table")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(
    recording_id: str | None, state: str | None, source: str | None, limit: int, as_json: bool
) -> None:
    """One recording in detail, or a table of recent ones.

    RECORDING_ID may be a recording id, a GME TaskID or a CSS stream or file id; with
    --json a single recording is an object, several (a TaskID of several users) a list.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    _choice(state, "--state", RECORDING_STATES)
    _choice(source, "--source", SOURCES)
    settings = load_settings()
    ledger = _ledger(settings)
    console = Console()
    with _operator_errors():
        if recording_id is None:
            recordings = ledger.recent_recordings(limit=limit, state=state, source=source)
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
                    Text(r.id), r.source, r.state, str(r.revision), _age(r.created_at),
                    notified.get(r.id, "-"), Text(r.error or ""),
                )  # fmt: skip
            console.print(table)
            return
        details = [_recording_detail(ledger, rid) for rid in _resolve(ledger, (recording_id,))]
    if as_json:
        click.echo(json.dumps(details[0] if len(details) == 1 else details, indent=2))
        return
    for detail in details:
        _print_detail(console, detail)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _recording_json(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "source": r.source,
        "state": r.state,
        "revision": r.revision,
        "identity": r.identity or r.details,
        "created_at": _iso(r.created_at),
        "last_event_at": r.last_event_at.isoformat(),
        "settle_due_at": _iso(r.settle_due_at),
        "error": r.error,
    }


def _recording_detail(ledger: Any, recording_id: str) -> dict[str, Any]:
    recording = ledger.recording(recording_id)
    detail = _recording_json(recording)
    detail["current_run_id"] = recording.current_run_id
    detail["notification"] = ledger.notification_summary([recording_id]).get(recording_id)
    detail["segments"] = [
        {"seq_no": s.seq_no, "state": s.state, "file_name": s.file_name, "recovered": s.recovered}
        for s in recording.segments
    ]
    detail["runs"] = [
        {
            "id": r.id,
            "revision": r.revision,
            "state": r.state,
            "from_step": r.result.get("from_step"),
            "attempts": r.attempts,
            "started_at": _iso(r.started_at),
            "finished_at": _iso(r.finished_at),
            "steps": r.steps,
            "error": r.error,
            "manifest": r.manifest_url,
            "artifacts": r.result.get("artifacts", []),
            "notifications": [
                {
                    "id": n.id,
                    "url": n.url,
                    "type": n.event_type,
                    "webhook_id": n.webhook_id,
                    "state": n.state,
                    "attempts": n.attempts,
                    "last_status": n.last_status,
                    "last_error": n.last_error,
                    "delivery_attempts": [
                        {
                            "at": _iso(a.at),
                            "status": a.status_code,
                            "error": a.error,
                            "ms": a.duration_ms,
                        }
                        for a in ledger.delivery_attempts(n.id)
                    ],
                }
                for n in ledger.notifications_for_run(r.id)
            ],
        }
        for r in ledger.runs_for(recording_id)
    ]
    return detail


def _clock(value: str | None) -> str:
    if not value:
        return "-"
    when = datetime.fromisoformat(value)
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({_age(when)} ago)"


def _print_detail(console: Any, d: dict[str, Any]) -> None:
    """The detail view for a terminal: the same facts as --json, as tables."""
    from rich.table import Table
    from rich.text import Text

    head = Text.assemble(
        (d["id"], "bold"), "  ", (d["state"], "bold"), f"  revision {d['revision']}"
    )
    console.print(head)
    identity = "  ".join(f"{k}={v}" for k, v in (d["identity"] or {}).items())
    console.print(Text(f"  {d['source']}  {identity}"))
    console.print(
        Text(
            f"  first event {_clock(d['created_at'])}   last event {_clock(d['last_event_at'])}"
            + (f"   settles {_clock(d['settle_due_at'])}" if d["settle_due_at"] else "")
        )
    )
    if d["error"]:
        console.print(Text(f"  error: {d['error']}", style="red"))
    if d.get("notification"):
        style = "red" if d["notification"] == "failed" else ""
        console.print(Text(f"  notification: {d['notification']}", style=style))

    segments = Table("seq", "state", "file", title="segments", title_justify="left")
    for s in d["segments"]:
        note = " (found in the source)" if s["recovered"] else ""
        segments.add_row(str(s["seq_no"]), s["state"], Text(s["file_name"] + note))
    console.print(segments)

    for run in d["runs"]:
        title = (
            f"run {run['id']}: revision {run['revision']}, {run['state']}, "
            f"attempts {run['attempts']}"
            + (f", from {run['from_step']}" if run["from_step"] else "")
        )
        steps = Table("step", "attempt", "started", "seconds", "result", title=title,
                      title_justify="left")  # fmt: skip
        for step in run["steps"]:
            if "finished_at" not in step:
                result = Text("running", style="yellow")
            elif step.get("ok"):
                result = Text("ok", style="green")
            else:
                result = Text("failed", style="red")
            steps.add_row(
                step["step"], str(step.get("attempt", "")), _clock(step.get("started_at")),
                str(step.get("seconds", "")), result,
            )  # fmt: skip
        console.print(steps)
        for step in run["steps"]:
            if step.get("error") and step["error"] != run["error"]:
                line = f"  {step['step']} (attempt {step.get('attempt', '?')}): {step['error']}"
                console.print(Text(line, style="red"))
        if run["error"]:
            console.print(Text(f"  error: {run['error']}", style="red"))
        for a in run["artifacts"]:
            console.print(
                Text(
                    f"  {a.get('format', '?'):<5} {a.get('duration_s', 0):>9.2f}s "
                    f"{a.get('bytes', 0):>12} B  {a.get('url')}"
                )
            )
        if run["manifest"]:
            console.print(Text(f"  manifest {run['manifest']}"))
        if run["notifications"]:
            notes = Table("url", "type", "state", "attempts", "last", title="notifications",
                          title_justify="left")  # fmt: skip
            for n in run["notifications"]:
                last = n["last_error"] or (str(n["last_status"]) if n["last_status"] else "-")
                notes.add_row(Text(n["url"]), n["type"], n["state"], str(n["attempts"]), Text(last))
            console.print(notes)
    console.print()


@main.command()
@click.argument("terms", nargs=-1)
@click.option(
    "--status", "state", help="only recordings in this state: " + ", ".join(RECORDING_STATES)
)
@click.option("--since", help="only recordings whose first event is at or after this: " + TIME_HELP)
@click.option("--until", help="only recordings whose first event is before this: " + TIME_HELP)
@click.option("--source", help="only recordings from gme or css")
@click.option(
    "--from-step",
    default="fetch",
    show_default=True,
    help="fetch, concat, transcode, archive: a new revision, media from fetch (the steps share "
    "one scratch directory per run, so the later steps' inputs do not outlive it); notify: "
    "re-send the current revision's outcome, no new media",
)
@click.option("--dry-run", is_flag=True, help="list what would run, change nothing")
@click.option("--wait", is_flag=True, help="follow with a progress bar until each run ends")
@click.option("--timeout", type=float, help="with --wait: stop following after this many seconds")
def reprocess(
    terms: tuple[str, ...],
    state: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    from_step: str,
    dry_run: bool,
    wait: bool,
    timeout: float | None,
) -> None:
    """Re-run recordings' chains as new revisions, replacing their archived objects.

    TERMS are recording ids, GME TaskIDs, or CSS stream or file ids; the filters narrow
    them, or select from all recordings when no term is given. Exit status is non-zero
    when a recording is not reprocessed or, with --wait, when a run fails.
    """
    from tasks.workflow import STEPS, plan_reprocess

    _choice(from_step, "--from-step", STEPS)
    _choice(state, "--status", RECORDING_STATES)
    _choice(source, "--source", SOURCES)
    since_at, until_at = _when(since, "--since"), _when(until, "--until")
    if not terms and not (state or since or until or source):
        fail(
            "name recordings (id, TaskID, stream id, file id) or select them with "
            "--status, --since, --until or --source",
            2,
        )
    settings = load_settings()
    ledger = _ledger(settings)
    with _operator_errors():
        ids = _resolve(ledger, terms) if terms else None
        selected = ledger.select_recordings(
            state=state, source=source, since=since_at, until=until_at, ids=ids
        )
        if not selected:
            click.echo("no recording matches: nothing to reprocess")
            return
        if dry_run:
            refusing = 0
            for rid in selected:
                recording = ledger.recording(rid)
                current = ledger.run(recording.current_run_id) if recording.current_run_id else None
                plan = plan_reprocess(recording, current, from_step, settings.notify_urls)
                verb = {"media": "would reprocess", "notify": "would notify"}.get(plan.action)
                refusing += verb is None
                click.echo(f"{verb or 'would refuse'} {rid}: {plan.detail}")
            click.echo(f"{len(selected) - refusing} of {len(selected)} would run (dry run)")
            return
        outcomes = _reprocess_all(settings, selected, from_step)
    refused = [o for o in outcomes if o.action == "refused"]
    started = [o for o in outcomes if o.action != "refused"]
    ok = _follow_outcomes(settings, started, timeout) if wait and started else True
    if refused:
        fail(f"{len(refused)} of {len(outcomes)} not reprocessed")
    if not ok:
        sys.exit(1)


def _reprocess_all(settings: Settings, recording_ids: list[str], from_step: str) -> list[Any]:
    from tasks import jobs, workflow

    _connect_broker(settings)
    svc = jobs.services()
    outcomes = []
    for rid in recording_ids:
        outcome = workflow.reprocess(
            svc, rid, from_step,
            start_chain=jobs.start_chain,
            deliver=lambda nid: jobs.deliver_notification.delay(nid),
        )  # fmt: skip
        if outcome.action == "queued":
            click.echo(f"{rid}: queued run {outcome.run_id}, {outcome.detail}")
        elif outcome.action == "notified":
            click.echo(f"{rid}: {outcome.detail}")
        else:
            click.echo(f"{rid}: not reprocessed: {outcome.detail}")
        outcomes.append(outcome)
    return outcomes


def _follow_outcomes(settings: Settings, outcomes: list[Any], timeout: float | None) -> bool:
    """A progress bar until every queued run has ended and every re-sent notification is
    settled; then a summary. True when all archived / delivered."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from storage.models import NotificationState, RunState

    ledger = _ledger(settings)
    deadline = None if timeout is None else time.monotonic() + timeout

    def look(outcome: Any) -> tuple[bool, str]:
        if outcome.action == "queued":
            run = ledger.run(outcome.run_id)
            if run.state in RunState.TERMINAL:
                return True, run.state
            current = [s["step"] for s in run.steps if "finished_at" not in s]
            return False, current[-1] if current and run.state == "running" else run.state
        states = [ledger.notification(n).state for n in outcome.notification_ids]
        if any(s == NotificationState.PENDING for s in states):
            return False, "delivering"
        if all(s == NotificationState.DELIVERED for s in states):
            return True, "delivered"
        return True, "failed" if NotificationState.FAILED in states else "disabled"

    final: dict[str, str] = {}
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with _operator_errors(), Progress(*columns, console=console) as progress:
        overall = progress.add_task("reprocessing", total=len(outcomes))
        rows = {}
        if len(outcomes) <= 20:
            for o in outcomes:
                rows[o.recording_id] = progress.add_task(f"  {o.recording_id}", total=1)
        while len(final) < len(outcomes):
            for o in outcomes:
                if o.recording_id in final:
                    continue
                done, state = look(o)
                if done:
                    final[o.recording_id] = state
                if o.recording_id in rows:
                    progress.update(
                        rows[o.recording_id],
                        description=f"  {o.recording_id}: {state}",
                        completed=1 if done else 0,
                    )
            progress.update(overall, completed=len(final))
            if len(final) == len(outcomes):
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(1)
    ok = True
    for o in outcomes:
        state = final.get(o.recording_id, "still running (stopped following)")
        line = f"{o.recording_id}: {state}"
        if state == "archived":
            recording = ledger.recording(o.recording_id)
            line += f", revision {recording.revision if recording else '?'}"
        elif o.action == "queued" and state == "failed":
            run = ledger.run(o.run_id)
            line += f": {run.error}" if run and run.error else ""
        ok = ok and state in ("archived", "delivered")
        click.echo(line)
    counts: dict[str, int] = {}
    for state in (final.get(o.recording_id, "unfinished") for o in outcomes):
        counts[state] = counts.get(state, 0) + 1
    click.echo(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    ledger.dispose()
    return ok


@main.command()
@click.argument("terms", nargs=-1)
@click.option("--since", help="only callbacks received at or after this: " + TIME_HELP)
@click.option("--until", help="only callbacks received before this: " + TIME_HELP)
@click.option("--undispatched", is_flag=True, help="only callbacks never handed to a worker")
@click.option("--dry-run", is_flag=True, help="list the callbacks, change nothing")
def replay(
    terms: tuple[str, ...], since: str | None, until: str | None, undispatched: bool, dry_run: bool
) -> None:
    """Re-dispatch stored callbacks through the intake's own path.

    TERMS are recording ids, GME TaskIDs, or CSS stream or file ids; --since/--until
    select by arrival, --undispatched those never handed to a worker (all of them when
    nothing else is given). Each callback is applied to the segment bookkeeping again
    (idempotent: a replay never moves a segment back) and its settle task sent, as when
    it arrived. Signatures are not checked again: callbacks were verified before they
    were stored, and the keys may have rotated since.
    """
    from webhook.intake import ReplayError

    since_at, until_at = _when(since, "--since"), _when(until, "--until")
    if not (terms or since or until or undispatched):
        fail("name recordings or select callbacks with --since, --until or --undispatched", 2)
    settings = load_settings()
    ledger = _ledger(settings)
    with _operator_errors():
        ids = _resolve(ledger, terms) if terms else None
        callbacks = ledger.callbacks(
            recording_ids=ids, since=since_at, until=until_at, undispatched=undispatched
        )
        if not callbacks:
            click.echo("no stored callback matches: nothing to replay")
            return
        if dry_run:
            for cb in callbacks:
                click.echo(f"would replay {_callback_label(cb)}")
            click.echo(f"{len(callbacks)} callback(s) would be replayed (dry run)")
            return
        from webhook.dispatch import Dispatcher
        from webhook.intake import Intake

        _connect_broker(settings)
        intake = Intake(settings, ledger, Dispatcher(settings))
        counts = {"dispatched": 0, "undispatched": 0, "refused": 0}
        for cb in callbacks:
            try:
                outcome = intake.replay(cb)
            except ReplayError as exc:
                outcome = "refused"
                click.echo(f"{_callback_label(cb)}: {exc}", err=True)
            else:
                click.echo(f"{_callback_label(cb)}: {outcome}")
            counts[outcome] += 1
    click.echo(", ".join(f"{n} {name}" for name, n in counts.items()))
    if counts["undispatched"] or counts["refused"]:
        sys.exit(1)


def _callback_label(cb: Any) -> str:
    return (
        f"callback {cb.id} ({cb.provider} event {cb.event_type}, {cb.recording_id}, "
        f"received {cb.received_at:%Y-%m-%d %H:%M:%S}Z"
        + (", never dispatched)" if cb.dispatched_at is None else ")")
    )


@main.command()
def doctor() -> None:
    """Check configuration, ledger, broker, storage and ffmpeg, one line each."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        click.echo(f"FAIL configuration: {exc}")
        sys.exit(1)
    click.echo("ok   configuration")

    def ledger_check() -> str:
        from storage.migrate import head_revision

        ledger = _ledger(settings)
        try:
            ledger.ping()
            current, head = ledger.current_revision(), head_revision()
        finally:
            ledger.dispose()
        if current != head:
            raise RuntimeError(f"schema at {current}, code expects {head}: run `recpipe migrate`")
        return f"{ledger.engine.dialect.name}, schema {current}"

    def broker_check() -> str:
        _connect_broker(settings)
        return settings.broker_url.split("://")[0]

    def archive_check() -> str:
        from storage.objectstore import store_from_url

        store_from_url(settings.archive_url).check_writable()
        return f"{settings.archive_url} writable"

    def source_check() -> str:
        from storage.objectstore import store_from_url

        url = settings.gme_source_url
        if url.startswith("file://") and not Path(urlsplit(url).path).is_dir():
            raise FileNotFoundError(f"{url} is not a directory")
        next(iter(store_from_url(url).list("")), None)
        return f"{url} readable"

    def tool_check(name: str) -> Callable[[], str]:
        def check() -> str:
            ffmpeg, ffprobe = require_ffmpeg()
            tool = ffmpeg if name == "ffmpeg" else ffprobe
            out = subprocess.run([tool, "-version"], capture_output=True, text=True, check=True)
            return out.stdout.splitlines()[0]

        return check

    checks: list[tuple[str, Callable[[], str]]] = [
        ("ledger", ledger_check),
        ("broker", broker_check),
        ("archive", archive_check),
        ("source", source_check),
        ("ffmpeg", tool_check("ffmpeg")),
        ("ffprobe", tool_check("ffprobe")),
    ]
    failed = 0
    for name, check in checks:
        try:
            click.echo(f"ok   {name}: {check()}")
        except Exception as exc:
            failed += 1
            click.echo(f"FAIL {name}: {_first_line(exc)}")
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

    settings = load_settings()
    key = settings.css_callback_key
    if not key:
        fail("set RECPIPE_CSS_CALLBACK_KEY to the key the webhook uses")
    if host not in settings.css_allowed_hosts:
        click.echo(
            f"note: {host} is not in RECPIPE_CSS_ALLOWED_HOSTS; unless the worker allows it, "
            "the recordings will fail (that is the fetch policy at work)",
            err=True,
        )
    try:
        require_ffmpeg()
    except ConfigError as exc:
        fail(str(exc), 2)
    with tempfile.TemporaryDirectory(prefix="recpipe-css-") as tmp:
        server = MediaServer(Path(tmp), host, port)
        try:
            sim = simulate_css_recordings(key, appid, Path(tmp), server, seconds=seconds, seed=seed)
            click.echo(f"serving {len(sim.recordings)} recordings at {server.url('')}")
            statuses = post_css_callbacks(url.rstrip("/") + "/callbacks/css", sim.callbacks)
            for (label, _body), code in zip(sim.callbacks, statuses, strict=True):
                click.echo(f"  {label:<44} -> {code}")
            if any(code != 200 for code in statuses):
                fail("some callbacks were refused (is the webhook using the same key?)")
            click.echo(f"settles after {settings.settle_seconds:g}s of quiet")
            if wait:
                ledger = _ledger(settings)
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
