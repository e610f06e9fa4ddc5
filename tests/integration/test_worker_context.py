"""What a pool process builds before its first task (`tasks.context.warm`)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.config import Settings
from storage.ledger import LedgerUnavailableError
from tasks import context
from tests.support.logs import captured_lines


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def use_settings() -> Iterator:
    """Adopt settings for the test; whatever the process had is put back after."""
    seeded = list(context._seeded)

    def use(tmp_path: Path, **env: str) -> None:
        context.use(Settings.from_env({"RECPIPE_DATA_DIR": str(tmp_path), **env}))

    yield use
    context._seeded[:] = seeded
    context.reset()


def test_warming_builds_the_stores_and_connects_the_ledger(
    use_settings, pg_url: str, s3_endpoint: str, tmp_path: Path
):
    """After `warm` the object stores' clients exist and the ledger holds a connection in
    its pool, so the first task builds nothing."""
    use_settings(
        tmp_path,
        RECPIPE_DATABASE_URL=pg_url,
        RECPIPE_ARCHIVE_URL=f"s3://archive/r?endpoint_url={s3_endpoint}",
        RECPIPE_GME_SOURCE_URL=f"s3://source?endpoint_url={s3_endpoint}",
    )
    assert not (context.ledger.built or context.archive_store.built)
    with captured_lines(context, "recpipe.tasks") as lines:
        context.warm()
    assert [line for line in lines if line["log_level"] == "warning"] == []
    assert context.archive_store.built and context.source_store.built
    assert context.ledger.built and context.ledger().engine.pool.checkedin() == 1


def test_a_ledger_down_at_start_is_a_warning_and_the_rest_is_warmed(
    use_settings, s3_endpoint: str, tmp_path: Path
):
    """With the ledger unreachable, `warm` logs why and returns; the stores are built and
    the ledger is asked again (and fails as before) when a task needs it."""
    use_settings(
        tmp_path,
        RECPIPE_DATABASE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none",
        RECPIPE_ARCHIVE_URL=f"s3://archive/r?endpoint_url={s3_endpoint}",
    )
    with captured_lines(context, "recpipe.tasks") as lines:
        context.warm()
    [warning] = [line for line in lines if line["log_level"] == "warning"]
    assert warning["event"] == "worker.warm_failed" and warning["what"] == "ledger"
    assert "refused" in warning["error"].lower(), warning  # the reason, for the operator
    assert context.archive_store.built and context.source_store.built
    with pytest.raises(LedgerUnavailableError):
        context.ledger().ping()
