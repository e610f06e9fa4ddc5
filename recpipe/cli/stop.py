"""`recpipe stop`: finalize a GME task's recordings now, without the quiet window."""

from __future__ import annotations

import click

from recpipe.cli.common import fail, load_settings, open_ledger, operator_errors


@click.command()
@click.argument("task_id")
def stop(task_id: str) -> None:
    """Stop GME task TASK_ID: each of its collecting recordings is finalized as soon as
    every started segment is uploaded, without waiting for the settle window: they are due
    now, and beat's settle clock looks at them within a second. Also a Celery task:
    `celery -A tasks call recpipe.stop_gme_task --args='["TASK_ID"]'`."""
    from storage.ledger import utcnow

    settings = load_settings()
    ledger = open_ledger(settings)
    with operator_errors():
        if not task_id.isdigit() or not ledger.find_recordings(task_id):
            fail(f"no recording of GME task {task_id!r}")
        stopped = ledger.stop_gme_task(task_id, now=utcnow())
    if not stopped:
        click.echo(f"GME task {task_id}: no recording is collecting; nothing to stop")
    for recording_id in stopped:
        click.echo(f"{recording_id}: stopped; finalized once every started segment is uploaded")
