"""`recpipe forget`: forget a player (a UserID of one BizID), or with --dry-run say what
that would do."""

from __future__ import annotations

import click

from foundation import jsonsafe, logs
from recpipe.cli.common import connect_broker, fail, load_settings, operator_errors
from recpipe.cli.console import cli_actor
from storage.domain.players import ForgetReport


@click.command()
@click.option("--app", "biz_id", required=True, type=click.IntRange(min=1), help="the BizID")
@click.option("--user", "user_id", required=True, help="the player's UserID")
@click.option("--dry-run", is_flag=True, help="say what would go, change nothing")
@click.option("--json", "as_json", is_flag=True, help="the report as JSON")
def forget(biz_id: int, user_id: str, dry_run: bool, as_json: bool) -> None:
    """Forget a player: every archived object of their recordings is deleted (every
    revision, every version); each room they were in is remixed without them (a room with
    no one else left is deleted); their UserID becomes a keyed hash (RECPIPE_PLAYER_KEY)
    in every row of the ledger; the recordings stay as tombstones (state forgotten), and
    `player.forgotten` is notified. What is on hold is kept, and finished when released.
    Asking again reports the standing erasure and finishes what is left."""
    from tasks import forgetting, jobs

    if not user_id.strip():
        fail("--user: the player's UserID, not blank", 2)
    settings = load_settings()
    # The report is the output; what goes wrong goes to stderr.
    logs.configure("WARNING", secrets=logs.secrets_of(settings))
    try:
        forgetting.player_key(settings)
    except forgetting.PlayerKeyMissingError as exc:
        fail(str(exc), 2)
    with operator_errors():
        if not dry_run:
            connect_broker(settings)
        report = forgetting.forget_player(
            jobs.services(), biz_id, user_id, actor=cli_actor(), dry_run=dry_run,
            deliver=lambda nid: jobs.deliver_notification.delay(nid),
        )  # fmt: skip
    if as_json:
        click.echo(jsonsafe.dumps(report.as_json(), indent=2, ensure_ascii=False))
        return
    for line in describe(report):
        click.echo(line)


def describe(report: ForgetReport) -> list[str]:
    """The report as lines for an operator: what went (or, dry run, would go)."""
    would = "would be " if report.dry_run else ""
    erasure = f" (erasure {report.erasure_id})" if report.erasure_id is not None else ""
    rows = ", ".join(f"{table} {n}" for table, n in sorted(report.rows.items())) or "none"
    lines = [
        f"player {report.player} of BizID {report.biz_id}: {report.state}{erasure}",
        f"  recordings: {len(report.recordings)}",
        *(f"    {rid}" for rid in report.recordings),
        f"  objects {would}deleted: {report.objects}",
        f"  revisions whose media goes: {report.revisions}",
        f"  rooms {would}remixed: {', '.join(report.rooms_remixed) or 'none'}",
        f"  rooms {would}deleted: {', '.join(report.rooms_deleted) or 'none'}",
        f"  rows {would}changed: {rows}",
    ]
    for kept in report.kept:
        lines.append(f"  kept ({kept.reason}): {kept.id}: {kept.hold_reason}")
    if report.dry_run:
        lines.append("(dry run: nothing changed)")
    elif report.state == "running":
        lines.append("(the rooms' remixes are on their way; the erasure finishes after them)")
    elif report.state == "waiting":
        lines.append("(what is held is erased when its hold is released)")
    return lines
