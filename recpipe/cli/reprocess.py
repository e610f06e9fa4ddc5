"""`recpipe reprocess`: recordings' chains again, as new revisions, optionally followed."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from foundation.config import Settings
from recpipe.cli.common import (
    RECORDING_STATES,
    SOURCES,
    TIME_HELP,
    choice_option,
    connect_broker,
    fail,
    load_settings,
    open_ledger,
    operator_errors,
    resolve,
    time_option,
)


@click.command()
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
    "re-send the current revision's outcome, no new media; transcribe: the current "
    "revision's transcript again (RECPIPE_TRANSCRIBE), then transcript.ready",
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
    from tasks.reprocessing import STEPS, plan_reprocess

    choice_option(from_step, "--from-step", STEPS)
    choice_option(state, "--status", RECORDING_STATES)
    choice_option(source, "--source", SOURCES)
    since_at, until_at = time_option(since, "--since"), time_option(until, "--until")
    if not terms and not (state or since or until or source):
        fail(
            "name recordings (id, TaskID, stream id, file id) or select them with "
            "--status, --since, --until or --source",
            2,
        )
    settings = load_settings()
    ledger = open_ledger(settings)
    with operator_errors():
        ids = resolve(ledger, terms) if terms else None
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
                plan = plan_reprocess(
                    recording, current, from_step, settings.notify_urls,
                    engine=settings.transcribe,
                )  # fmt: skip
                verb = {"media": "would reprocess", "notify": "would notify",
                        "transcribe": "would transcribe"}.get(plan.action)  # fmt: skip
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
    from tasks import jobs, reprocessing

    connect_broker(settings)
    svc = jobs.services()
    outcomes = []
    for rid in recording_ids:
        outcome = reprocessing.reprocess(
            svc, rid, from_step,
            start_chain=jobs.start_chain,
            deliver=lambda nid: jobs.deliver_notification.delay(nid),
            transcribe=lambda run_id: jobs.transcribe.delay(run_id),
        )  # fmt: skip
        if outcome.action == "queued":
            click.echo(f"{rid}: queued run {outcome.run_id}, {outcome.detail}")
        elif outcome.action in ("notified", "transcribing"):
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

    from storage.domain import NotificationState, RunState

    ledger = open_ledger(settings)
    deadline = None if timeout is None else time.monotonic() + timeout

    def look(outcome: Any) -> tuple[bool, str]:
        if outcome.action == "queued":
            run = ledger.run(outcome.run_id)
            if run.state in RunState.TERMINAL:
                return True, run.state
            current = [s["step"] for s in run.steps if "finished_at" not in s]
            return False, current[-1] if current and run.state == "running" else run.state
        if outcome.action == "transcribing":
            transcript = ledger.transcript(outcome.run_id)
            state = transcript.state if transcript else "queued"
            return state in ("ready", "failed"), f"transcript {state}"
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
    with operator_errors(), Progress(*columns, console=console) as progress:
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
        ok = ok and state in ("archived", "delivered", "transcript ready")
        click.echo(line)
    counts: dict[str, int] = {}
    for state in (final.get(o.recording_id, "unfinished") for o in outcomes):
        counts[state] = counts.get(state, 0) + 1
    click.echo(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    ledger.dispose()
    return ok
