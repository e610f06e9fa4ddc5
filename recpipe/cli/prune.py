"""`recpipe prune`: delete old callbacks and delivery attempts of finished work; with
`--media`, the archived media that media retention lets go."""

from __future__ import annotations

from datetime import timedelta

import click

from foundation.config import Settings
from recpipe.cli.common import (
    connect_broker,
    fail,
    load_settings,
    open_ledger,
    operator_errors,
    time_option,
)
from storage.domain import retention

AGE_HELP = "an age (30d, 12h, 2w) or an ISO date/time (UTC unless it says)"


@click.command()
@click.option(
    "--older-than",
    help="delete what is older than this: " + AGE_HELP + "; default RECPIPE_RETENTION_DAYS",
)
@click.option("--dry-run", is_flag=True, help="count what would be deleted, delete nothing")
@click.option(
    "--media",
    is_flag=True,
    help="archived media instead: of recordings and rooms whose newest run ended before "
    "the cutoff (default RECPIPE_MEDIA_RETENTION_DAYS), never held ones",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=retention.BATCH_ROWS,
    show_default=True,
    help="rows per transaction",
)
def prune(older_than: str | None, dry_run: bool, media: bool, batch: int) -> None:
    """Delete stored callbacks and delivery attempts that finished work no longer needs.

    A recording's callbacks go once it is archived or failed with nothing waiting, and
    it has been quiet since before the cutoff (callbacks never handed to a worker stay);
    a notification's delivery attempts once it is no longer pending. Recordings, runs,
    segments and notifications stay, so `recpipe status` and `reprocess` keep working.
    Deleted in batches of short transactions; beat does the same every hour when
    RECPIPE_RETENTION_DAYS is not 0.

    With --media: every archived object of each recording and room whose newest run
    ended before the cutoff (all versions on a versioned bucket); each stays as a
    tombstone (state expired) and `recording.expired` is notified. Held ones are kept.
    Beat does the same every hour when RECPIPE_MEDIA_RETENTION_DAYS is set.
    """
    from storage.ledger import utcnow

    settings = load_settings()
    if media:
        _prune_media(settings, older_than, dry_run, batch)
        return
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


def _prune_media(settings: Settings, older_than: str | None, dry_run: bool, batch: int) -> None:
    from storage.ledger import utcnow

    now = utcnow()
    if older_than is not None:
        before = time_option(older_than, "--older-than")
    elif settings.media_retention_days is not None:
        before = now - timedelta(days=settings.media_retention_days)
    else:
        fail("RECPIPE_MEDIA_RETENTION_DAYS is off (keep all media): pass --older-than", 2)
    if before is None or before > now:
        fail(f"--older-than: {older_than!r} is in the future", 2)
    ledger = open_ledger(settings)
    click.echo(
        f"media of recordings and rooms finished before {before.isoformat(timespec='seconds')}:"
    )
    if dry_run:
        with operator_errors():
            count = ledger.count_expirable_media(before)
            shown = ledger.expirable_media(before, 50)
            held = len(ledger.holds())
        for recording_id in shown:
            click.echo(f"  would expire {recording_id}")
        if count > len(shown):
            click.echo(f"  ... and {count - len(shown)} more")
        click.echo(f"{count} would expire; {held} on hold, kept")
        click.echo("(dry run: nothing deleted)")
        return
    from tasks import expiry, jobs

    with operator_errors():
        connect_broker(settings)
        svc = jobs.services()
        expired = objects = 0
        while True:
            report = expiry.expire_media(
                svc, before=before, now=utcnow(), limit=batch,
                deliver=lambda nid: jobs.deliver_notification.delay(nid),
            )  # fmt: skip
            for recording_id in report.expired:
                click.echo(f"  expired {recording_id}")
            expired += len(report.expired)
            objects += report.objects
            if not report.expired and not report.purged:
                break
    click.echo(f"{expired} expired, {objects} objects deleted")
