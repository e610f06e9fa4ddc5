"""`recpipe status`: one recording in detail, or a table of recent ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from foundation import jsonsafe
from recpipe.cli.common import (
    RECORDING_STATES,
    SOURCES,
    age,
    choice_option,
    load_settings,
    open_ledger,
    operator_errors,
    resolve,
)
from recpipe.reports import recording_detail as _recording_detail
from recpipe.reports import recording_summary as _recording_json

_NO_WIDTH = 100_000  # rich's width for output that is not a terminal


@click.command()
@click.argument("recording_id", required=False)
@click.option("--state", help="only recordings in this state: " + ", ".join(RECORDING_STATES))
@click.option("--source", help="only recordings from gme, css or room")
@click.option("--rooms", "rooms", is_flag=True, help="a table of recent rooms")
@click.option("--limit", default=20, show_default=True, help="rows in the table")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(
    recording_id: str | None,
    state: str | None,
    source: str | None,
    rooms: bool,
    limit: int,
    as_json: bool,
) -> None:
    """One recording or room in detail, or a table of recent ones.

    RECORDING_ID may be a recording id, a room id, a GME TaskID or a CSS stream or file
    id; with --json a single recording is an object, several (a TaskID of several users)
    a list. A room shows its participants (offsets on the room's clock) and revisions.
    """
    from rich.console import Console

    choice_option(state, "--state", RECORDING_STATES)
    choice_option(source, "--source", SOURCES)
    settings = load_settings()
    ledger = open_ledger(settings)
    console = Console()
    if not console.is_terminal:  # a pipe or a file has no width: nothing is wrapped or cut
        console.width = _NO_WIDTH
    with operator_errors():
        if recording_id is None and rooms:
            _print_rooms(console, ledger.recent_rooms(limit=limit), as_json)
            return
        if recording_id is None:
            recordings = ledger.recent_recordings(limit=limit, state=state, source=source)
            notified = ledger.notification_summary([r.id for r in recordings])
            if as_json:
                rows = [
                    {**_recording_json(r), "notification": notified.get(r.id)} for r in recordings
                ]
                click.echo(jsonsafe.dumps(rows, indent=2))
                return
            table = _recordings_table(recordings, notified)
            # A terminal keeps its width unless the columns that never wrap need more.
            needed = console.measure(table, options=console.options.update_width(_NO_WIDTH))
            console.width = max(console.width, needed.minimum)
            console.print(table)
            return
        details = [_recording_detail(ledger, rid) for rid in resolve(ledger, (recording_id,))]
    if as_json:
        click.echo(jsonsafe.dumps(details[0] if len(details) == 1 else details, indent=2))
        return
    for detail in details:
        _print_detail(console, detail)


def _recordings_table(recordings: list[Any], notified: dict[str, str]) -> Any:
    """Every column but the error keeps its values whole (ids are copied into the next
    command); the error wraps."""
    from rich.table import Table
    from rich.text import Text

    rows = [
        (r.id, r.source, r.state, str(r.revision), age(r.created_at), notified.get(r.id, "-"))
        for r in recordings
    ]
    table = Table()
    headers = ("recording", "source", "state", "rev", "age", "notification")
    for i, header in enumerate(headers):
        widest = max([len(header), *(len(row[i]) for row in rows)])
        table.add_column(header, no_wrap=True, min_width=widest)
    table.add_column("error")
    for row, r in zip(rows, recordings, strict=True):
        table.add_row(*map(Text, row), Text(r.error or ""))
    return table


def _print_rooms(console: Any, rooms: list[Any], as_json: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    rows = [
        {
            "id": r.id, "BizID": r.biz_id, "RoomID": r.room_id, "TaskID": r.task_id,
            "state": r.state, "revision": r.revision, "users": r.members,
            "created_at": _iso(r.created_at),
        }
        for r in rooms
    ]  # fmt: skip
    if as_json:
        click.echo(jsonsafe.dumps(rows, indent=2))
        return
    table = Table()
    for header in ("room", "BizID", "RoomID", "TaskID", "state", "rev", "users", "age"):
        table.add_column(header, no_wrap=True)
    for r in rooms:
        table.add_row(
            Text(r.id), str(r.biz_id), Text(r.room_id or ""), str(r.task_id), r.state,
            str(r.revision), str(r.members), age(r.created_at),
        )  # fmt: skip
    console.print(table)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _clock(value: str | None) -> str:
    if not value:
        return "-"
    when = datetime.fromisoformat(value)
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({age(when)} ago)"


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

    if "members" in d:
        members = Table("user", "recording", "state", "rev", title="users", title_justify="left")
        for m in d["members"]:
            members.add_row(
                Text(m["UserID"]), Text(m["recording_id"]), m["state"], str(m["revision"])
            )
        console.print(members)
    else:
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
        if run["participants"]:
            mixed = Table("user", "recording", "rev", "offset s", "duration s",
                          title="participants", title_justify="left")  # fmt: skip
            for p in run["participants"]:
                mixed.add_row(
                    Text(str(p.get("UserID"))), Text(str(p.get("recording_id"))),
                    str(p.get("revision", "")), f"{p.get('offset_s', 0):.3f}",
                    f"{p.get('duration_s', 0):.3f}",
                )  # fmt: skip
            console.print(mixed)
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
