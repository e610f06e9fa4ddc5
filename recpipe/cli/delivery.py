"""`recpipe redeliver`: send finally failed notifications again."""

from __future__ import annotations

import click

from recpipe.cli.common import fail, load_settings
from storage.domain import NotificationState


@click.command()
@click.argument("recording_ids", nargs=-1)
@click.option(
    "--all-failed", is_flag=True, help="every recording whose notification finally failed"
)
@click.option(
    "--include-disabled", is_flag=True, help="also URLs that answered 410 Gone for the event"
)
@click.option("--dry-run", is_flag=True, help="list what would be sent")
def redeliver(
    recording_ids: tuple[str, ...], all_failed: bool, include_disabled: bool, dry_run: bool
) -> None:
    """Redeliver recordings' notifications (by recording id or GME TaskID) that finally
    failed: same webhook-id and body, a fresh attempt budget. Also a Celery task:
    `celery -A tasks call recpipe.redeliver --args='["gme-..."]'`."""
    from storage.ledger import LedgerUnavailableError
    from tasks import context
    from tasks.celery import configure
    from tasks.jobs import redeliver as redeliver_task

    if not recording_ids and not all_failed:
        fail("name recordings (id or TaskID) or pass --all-failed")
    configure(load_settings())
    ledger = context.ledger()
    states = {NotificationState.FAILED}
    if include_disabled:
        states.add(NotificationState.DISABLED)
    try:
        targets = [rid for term in recording_ids for rid in ledger.find_recordings(term)]
        unknown = [t for t in recording_ids if not ledger.find_recordings(t)]
        if unknown:
            fail(f"no recording {', '.join(map(repr, unknown))}")
        if all_failed:
            targets += [
                r for r in ledger.recordings_with_failed_notifications() if r not in targets
            ]
        if not targets:
            click.echo("no notification has finally failed")
        for rid in targets:
            recording = ledger.recording(rid)
            run_id = recording.current_run_id if recording else None
            notes = [
                n
                for n in (ledger.notifications_for_run(run_id) if run_id else [])
                if n.state in states
            ]
            if not notes:
                click.echo(f"{rid}: nothing to redeliver")
                continue
            if dry_run:
                for n in notes:
                    click.echo(f"{rid}: would redeliver {n.webhook_id} to {n.url} ({n.state})")
                continue
            reopened = redeliver_task(rid, include_disabled)
            click.echo(f"{rid}: {len(reopened)} notification(s) queued for redelivery")
    except LedgerUnavailableError as exc:
        fail(f"ledger unreachable: {exc}")
