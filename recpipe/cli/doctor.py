"""`recpipe doctor`: configuration, ledger, broker, stores and ffmpeg, one line each."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import click

from foundation.config import ConfigError, Settings, require_ffmpeg
from recpipe.cli.common import connect_broker, first_line, open_ledger


@click.command()
def doctor() -> None:
    """Check configuration, ledger, broker, storage, ffmpeg and the speech engine, one line
    each."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        click.echo(f"FAIL configuration: {exc}")
        sys.exit(1)
    click.echo("ok   configuration")

    def ledger_check() -> str:
        from storage.migrate import head_revision

        ledger = open_ledger(settings)
        try:
            ledger.ping()
            current, head = ledger.current_revision(), head_revision()
        finally:
            ledger.dispose()
        if current != head:
            raise RuntimeError(f"schema at {current}, code expects {head}: run `recpipe migrate`")
        return f"{ledger.engine.dialect.name}, schema {current}"

    def broker_check() -> str:
        connect_broker(settings)
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

    def transcribe_check() -> str:
        from tasks.transcripts.engines import check_engine, describe

        check_engine(settings)
        return describe(settings)

    checks: list[tuple[str, Callable[[], str]]] = [
        ("ledger", ledger_check),
        ("broker", broker_check),
        ("archive", archive_check),
        ("source", source_check),
        ("ffmpeg", tool_check("ffmpeg")),
        ("ffprobe", tool_check("ffprobe")),
        ("transcribe", transcribe_check),
    ]
    failed = 0
    for name, check in checks:
        try:
            click.echo(f"ok   {name}: {check()}")
        except Exception as exc:
            failed += 1
            click.echo(f"FAIL {name}: {first_line(exc)}")
    sys.exit(1 if failed else 0)
