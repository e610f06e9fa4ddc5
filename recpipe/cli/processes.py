"""`recpipe serve`, `run` and `migrate`: the processes recpipe runs as."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from foundation.config import ConfigError, require_ffmpeg
from recpipe.cli.common import fail, load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn processes")
@click.option("--threads", default=8, show_default=True, type=int, help="threads per process")
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the webhook on gunicorn (a production WSGI server)."""
    settings = load_settings()
    _check_can_listen(host, port)
    # Before anything imports prometheus_client: /metrics adds up every gunicorn process.
    from foundation import metrics

    metrics.use_multiprocess_dir(settings.data_dir / "metrics" / f"webhook-{os.getpid()}")

    from gunicorn.app.base import BaseApplication

    from foundation import logs
    from recpipe.webapp import create_app
    from storage.ledger import Ledger, LedgerUnavailableError

    logs.configure(settings.log_level, secrets=logs.secrets_of(settings))
    try:
        Ledger(settings.database_url).migrate()
    except LedgerUnavailableError as exc:
        fail(f"ledger unreachable: {exc}")

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "threads": threads,
                "worker_class": "gthread",
                "accesslog": None,
                "timeout": 60,
                "graceful_timeout": 20,
                "keepalive": 5,
                # Nothing uses gunicornc; its socket would go to ~/.gunicorn, outside the data dir.
                "control_socket_disable": True,
                "child_exit": lambda _server, worker: metrics.mark_process_dead(worker.pid),
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    Server().run()


def _check_can_listen(host: str, port: int) -> None:
    """A port in use is one line and exit 1 (gunicorn retries it for five seconds, logging
    ten lines). The probe binds as gunicorn does, with SO_REUSEADDR."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
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
