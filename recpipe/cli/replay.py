"""`recpipe replay`: stored callbacks through the intake's own path again."""

from __future__ import annotations

import sys
from typing import Any

import click

from recpipe.cli.common import (
    TIME_HELP,
    fail,
    load_settings,
    open_ledger,
    operator_errors,
    resolve,
    time_option,
)


@click.command()
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
    (idempotent: a replay never moves a segment back), which writes its recording's
    settle time, as when it arrived: beat's clock settles it from there. Signatures are
    not checked again: callbacks were verified before they were stored, and the keys may
    have rotated since.
    """
    from webhook.intake import ReplayError

    since_at, until_at = time_option(since, "--since"), time_option(until, "--until")
    if not (terms or since or until or undispatched):
        fail("name recordings or select callbacks with --since, --until or --undispatched", 2)
    settings = load_settings()
    ledger = open_ledger(settings)
    with operator_errors():
        ids = resolve(ledger, terms) if terms else None
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
        from webhook.intake import Intake

        intake = Intake(settings, ledger)
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
