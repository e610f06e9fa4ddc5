"""`recpipe serve`, `run` and `migrate`: the processes recpipe runs as."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from foundation.config import ConfigError, require_ffmpeg
from foundation.private import private_dir
from recpipe.cli.common import fail, load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="server processes")
@click.option("--threads", default=8, show_default=True, type=int, help="app threads per process")
@click.option(
    "--max-connections",
    default=4096,
    show_default=True,
    type=click.IntRange(16),
    help="open connections per process; one more closes the oldest unanswered one",
)
@click.option(
    "--request-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5),
    help="seconds a request (line, headers, body) may take to arrive whole",
)
@click.option(
    "--keepalive",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="seconds an idle connection is kept open for the next request",
)
def serve(
    host: str,
    port: int,
    workers: int,
    threads: int,
    max_connections: int,
    request_timeout: float,
    keepalive: float,
) -> None:
    """Run the webhook on recpipe's HTTP server: whole requests are read under deadlines
    by an event loop, then answered on a thread pool, so slow clients hold no thread."""
    settings = load_settings()
    private_dir(settings.data_dir)
    from foundation import css_hosts

    try:  # one line now, not a traceback from each server process
        css_hosts.intake_warnings(settings)
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    # Before anything imports prometheus_client: /metrics adds up every server process.
    from foundation import metrics

    metrics.use_multiprocess_dir(settings.data_dir / "metrics" / f"webhook-{os.getpid()}")

    from foundation import logs
    from recpipe import serving
    from recpipe.webapp import create_apps
    from storage.ledger import Ledger, LedgerUnavailableError

    logs.configure(settings.log_level, secrets=logs.secrets_of(settings))
    ledger = Ledger(settings.database_url)
    try:
        ledger.migrate()
    except LedgerUnavailableError as exc:
        fail(f"ledger unreachable: {exc}")
    finally:
        ledger.dispose()  # the server processes are forked: they open their own
    limits = serving.Limits(
        max_connections=max_connections,
        request_seconds=request_timeout,
        keepalive_seconds=keepalive,
        max_body_bytes=settings.max_body_bytes,
    )
    # The public port serves the callbacks and /healthz; /readyz and /metrics are on the
    # internal listener only (RECPIPE_INTERNAL_LISTEN, loopback unless set otherwise).
    addresses = [(host, port)]
    if settings.internal_listen is not None:
        addresses.append(settings.internal_listen)

    def make_apps() -> Sequence[serving.WsgiApp]:
        public, internal = create_apps(settings)
        return (public, internal)[: len(addresses)]

    try:
        code = serving.serve(
            make_apps,
            addresses,
            workers=workers,
            threads=threads,
            limits=limits,
            on_worker_exit=metrics.mark_process_dead,
        )
    except serving.ListenError as exc:
        fail(str(exc))
    sys.exit(code)


@click.command()
def migrate() -> None:
    """Create or upgrade the ledger's schema."""
    from storage.ledger import Ledger

    settings = load_settings()
    ledger = Ledger(settings.database_url)
    ledger.migrate()
    click.echo(f"ledger at revision {ledger.current_revision()}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--concurrency", default=2, show_default=True, type=int, help="worker processes")
def run(host: str, port: int, concurrency: int) -> None:
    """Everything on one machine: webhook, worker and beat (embedded defaults unless configured)."""
    from storage.ledger import Ledger

    settings = load_settings()
    try:
        require_ffmpeg()
    except ConfigError as exc:
        fail(str(exc), 2)
    private_dir(settings.data_dir)
    if settings.gme_source_url.startswith("file://"):
        Path(urlsplit(settings.gme_source_url).path).mkdir(parents=True, exist_ok=True)
    Ledger(settings.database_url).migrate()
    python = sys.executable
    commands = {
        "webhook": [python, "-m", "recpipe", "serve", "--host", host, "--port", str(port)],
        "worker": [
            python, "-m", "celery", "-A", "tasks", "worker", "--beat",
            "--concurrency", str(concurrency), "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle", "-n", "recpipe@%h",
        ],
    }  # fmt: skip
    click.echo(
        f"recpipe: webhook on http://{host}:{port}, data in {settings.data_dir}, "
        f"broker {settings.broker_url.split('://')[0]}, archive {settings.archive_url}",
        err=True,
    )
    if not settings.gme_secret_keys:
        click.echo(
            "recpipe: RECPIPE_GME_SECRET_KEYS is not set: every GME callback is 401", err=True
        )
    children = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
    _supervise(children)


def _supervise(children: dict[str, subprocess.Popen[bytes]]) -> NoReturn:
    """Wait until a child exits or we are told to stop; then stop them all."""
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                click.echo(f"recpipe: {name} exited with {child.returncode}", err=True)
                code = child.returncode or 1
                stopping = True
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    sys.exit(code)
