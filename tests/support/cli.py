"""`recpipe` run as an operator runs it (`python -m recpipe ...` in a subprocess) against a
test's ledger and broker, and what waits in the broker's queues. The fixtures `cli_env` and
`cli_ledger` (tests/conftest.py) give a migrated ledger and its settings."""

from __future__ import annotations

import os
import subprocess
import sys

from kombu import Connection, Exchange, Queue

from tests.support.services import free_port

BIZ = 1400000000
TASK = "446946705284000777"


def cli_settings(data_dir: str, database_url: str, broker_url: str, archive: str, source: str):
    """The settings the CLI tests run `recpipe` with."""
    return {
        "RECPIPE_DATA_DIR": data_dir,
        "RECPIPE_DATABASE_URL": database_url,
        "RECPIPE_BROKER_URL": broker_url,
        "RECPIPE_ARCHIVE_URL": archive,
        "RECPIPE_GME_SOURCE_URL": source,
        "RECPIPE_GME_SECRET_KEYS": f"{BIZ}=cli-test-key",
        "RECPIPE_NOTIFY_URLS": "http://127.0.0.1:9/hooks",
        "RECPIPE_SETTLE_SECONDS": "30",
        # `recpipe serve` opens its internal listener too: a port of its own, not 9108.
        "RECPIPE_INTERNAL_LISTEN": f"127.0.0.1:{free_port()}",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recpipe", *args],
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def queue_length(env: dict[str, str], queue: str) -> int:
    """Messages waiting in one of recpipe's queues on the broker."""
    with Connection(env["RECPIPE_BROKER_URL"], connect_timeout=5) as conn:
        declared = Queue(queue, Exchange(queue), routing_key=queue)(conn.default_channel)
        return int(declared.queue_declare().message_count)  # declared as Celery declares it
