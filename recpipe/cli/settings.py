"""`recpipe config`: the settings in effect, secrets masked; or the reference, as Markdown."""

from __future__ import annotations

import click

from foundation import config
from recpipe.cli.common import fail


@click.command("config")
@click.option(
    "--markdown",
    is_flag=True,
    help="print the reference of every setting (docs/configuration.md) instead",
)
def show_config(markdown: bool) -> None:
    """Print every RECPIPE_* setting this environment gives, one `NAME=value` line each,
    secrets masked; a default is marked `# default`."""
    if markdown:
        click.echo(config.markdown(), nl=False)
        return
    try:
        effective = list(config.read())
    except config.ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    for item in effective:
        line = f"{item.setting.env}={item.shown()}"
        click.echo(line if item.given else f"{line}  # default")
