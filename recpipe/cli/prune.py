"""`recpipe prune`: delete old callbacks and delivery attempts of finished work."""

from __future__ import annotations

import click

from recpipe.cli.common import fail, load_settings, open_ledger, operator_errors, time_option
from storage.domain import retention

AGE_HELP = "an age (30d, 12h, 2w) or an ISO date/time (UTC unless it says)"


@click.command()
@click.option(
    "--older-than",
    help="delete what is older than this: " + AGE_HELP + "; default RECPIPE_RETENTION_DAYS",
)
@click.option("--dry-run", is_flag=True, help="count what would be deleted, delete nothing")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=retention.BATCH_ROWS,
    show_default=True,
    help="rows per transaction",
)
def prune(older_than: str | None, dry_run: bool, batch: int) -> None:
    """Delete stored callbacks and delivery attempts that finished work no longer needs.

    A recording's callbacks go once it is archived or failed with nothing waiting, and
    it has been quiet since before the cutoff (callbacks never handed to a worker stay);
    a notification's delivery attempts once it is no longer pending. Recordings, runs,
    segments and notifications stay, so `recpipe status` and `reprocess` keep working.
    Deleted in batches of short transactions; beat does the same every hour when
    RECPIPE_RETENTION_DAYS is not 0.
    """
    from storage.ledger import utcnow

    settings = load_settings()
    if older_than is not None:
        before = time_option(older_than, "--older-than")
    else:
        before = retention.cutoff(utcnow(), settings.retention_days)
    if before is None:
        fail("RECPIPE_RETENTION_DAYS is 0 (keep everything): pass --older-than", 2)
    if before > utcnow():
        fail(f"--older-than: {older_than!r} is in the future", 2)
    ledger = open_ledger(settings)
    with operator_errors():
        counts = ledger.prune(before, batch=batch, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"older than {before.isoformat(timespec='seconds')}:")
    for table in retention.TABLES:
        click.echo(f"  {table}: {verb} {getattr(counts, table)}")
    if dry_run:
        click.echo("(dry run: nothing deleted)")
