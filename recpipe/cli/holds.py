"""`recpipe hold`, `recpipe release` and `recpipe holds`: legal holds on recordings and rooms."""

from __future__ import annotations

import click

from recpipe.cli.common import fail, load_settings, open_ledger, operator_errors
from recpipe.cli.console import cli_actor
from storage.domain.console import MAX_HOLD_REASON, hold_reason


@click.command()
@click.argument("recording_id")
@click.option("--reason", required=True, help="why it is kept (shown in the console, audited)")
def hold(recording_id: str, reason: str) -> None:
    """Keep a recording or a room (by its id): neither media retention nor a player's
    erasure deletes anything of it until `recpipe release`. Holding again replaces the
    reason."""
    why = hold_reason(reason)
    if why is None:
        fail(f"--reason: say why, in at most {MAX_HOLD_REASON} characters", 2)
    ledger = open_ledger(load_settings())
    with operator_errors():
        held = ledger.hold(recording_id, why, cli_actor())
    if held is None:
        fail(f"no recording or room {recording_id!r}")
    click.echo(f"held {held.source} {held.recording_id}: {held.reason}")


@click.command()
@click.argument("recording_id")
def release(recording_id: str) -> None:
    """Lift a recording's or a room's hold; what waited for it (retention, an erasure)
    goes on at beat's next pass."""
    ledger = open_ledger(load_settings())
    with operator_errors():
        released = ledger.release(recording_id, cli_actor())
    if not released:
        fail(f"{recording_id!r} is not on hold")
    click.echo(f"released {recording_id}")


@click.command()
def holds() -> None:
    """Every standing hold: id, kind, since, by whom, why."""
    ledger = open_ledger(load_settings())
    with operator_errors():
        found = ledger.holds()
    for h in found:
        click.echo(
            f"{h.recording_id}\t{h.source}\t{h.held_at:%Y-%m-%d %H:%M}Z\t{h.held_by}\t{h.reason}"
        )
    if not found:
        click.echo("nothing is on hold", err=True)
