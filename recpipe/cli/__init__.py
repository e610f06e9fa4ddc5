"""The `recpipe` command: the `main` group, with one module per command group.

processes.py: serve, run, migrate; status.py; reprocess.py; replay.py; delivery.py:
redeliver; doctor.py; settings.py: config; simulate.py: simulate gme|css; console.py:
console, users, tokens; stop.py; prune.py; holds.py: hold, release, holds; forget.py.
What they share (one-line failures, settings, the ledger and broker of the operator
commands) is in common.py.
"""

from __future__ import annotations

import click

from foundation.private import private_process
from recpipe.cli.common import fail, load_settings
from recpipe.cli.console import console, tokens, users
from recpipe.cli.delivery import redeliver
from recpipe.cli.doctor import doctor
from recpipe.cli.forget import forget
from recpipe.cli.holds import hold, holds, release
from recpipe.cli.processes import migrate, run, serve
from recpipe.cli.prune import prune
from recpipe.cli.replay import replay
from recpipe.cli.reprocess import reprocess
from recpipe.cli.settings import show_config
from recpipe.cli.simulate import simulate
from recpipe.cli.status import status
from recpipe.cli.stop import stop

__all__ = ["fail", "load_settings", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """recpipe: Tencent Cloud GME/CSS recording callbacks in, archived media out."""
    private_process()  # before anything is written: the data directory is not for others


for command in (
    serve,
    migrate,
    run,
    status,
    reprocess,
    replay,
    doctor,
    show_config,
    simulate,
    redeliver,
    stop,
    prune,
    hold,
    release,
    holds,
    forget,
):
    main.add_command(command)
for command in (console, users, tokens):
    main.add_command(command)
