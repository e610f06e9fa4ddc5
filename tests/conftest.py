"""The fixtures every test can ask for: real media made with ffmpeg, and real services
(PostgreSQL, Redis, RabbitMQ, an S3 server over HTTP), each test with a database, Redis
database, virtual host or bucket of its own. Helpers the tests share are in tests/support.

Each directory's tests get their markers here, not in each file: tests/integration talks to
real services (`integration`), tests/e2e runs recpipe as processes (`integration`, `e2e`),
tests/unit and tests/deploy need neither."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from sqlalchemy import create_engine, text

from storage.ledger import Ledger
from tests.support.cli import cli_settings
from tests.support.media import make_tone
from tests.support.services import AMQP_URL, PG_ADMIN_URL, S3_TEST_ENV, free_port, redis_database
from tests.support.stack import Receiver
from tests.support.waits import wait_for

TESTS = Path(__file__).parent
_CHANGED_BEFORE = pytest.StashKey[set[str] | None]()
# The markers of each directory's tests: `pytest -m "not e2e"` leaves out the processes.
MARKERS = {
    "unit": (),
    "deploy": (),
    "integration": ("integration",),
    "e2e": ("integration", "e2e"),
}


# Tests that must not run side by side, by file: under `--dist loadgroup` (make test) each
# group runs on one xdist worker, one test after another. The separate hosts each pick an
# unused 10.x.y.0/24 and make bridges and namespaces: two at once could pick the same.
XDIST_GROUPS = {"e2e/test_many_hosts.py": "network-namespaces"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(TESTS)
        for marker in MARKERS[where.parts[0]]:
            item.add_marker(marker)
        if group := XDIST_GROUPS.get(where.as_posix()):
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def tone(tmp_path: Path):
    """make an mp3 tone: tone(name, frequency, seconds) -> Path"""

    def make(name: str, frequency: float, seconds: float, **kwargs) -> Path:
        return make_tone(tmp_path / name, frequency, seconds, **kwargs)

    return make


@pytest.fixture(scope="session", autouse=True)
def _s3_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in S3_TEST_ENV}
    os.environ.update(S3_TEST_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 server, over HTTP on its own port, for the whole session."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **S3_TEST_ENV},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(endpoint, timeout=1).ok, what="moto S3 server")
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def s3_client(s3_endpoint: str):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client) -> str:
    """A fresh, empty bucket on the S3 server."""
    name = f"recpipe-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"recpipe_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database number of its own, flushed before and after."""
    with redis_database() as url:
        yield url


@pytest.fixture
def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """RabbitMQ with kombu's default local login, in a virtual host of the test's own when
    rabbitmqctl is at hand (so concurrent runs never share queues), else the default one
    with recpipe's queues emptied."""
    import shutil

    from kombu import Connection, Exchange, Queue

    ctl = shutil.which("rabbitmqctl")
    vhost = f"recpipe-test-{uuid.uuid4().hex[:10]}"
    if ctl and os.environ.get("RECPIPE_TEST_AMQP_URL") is None:
        subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)
        subprocess.run(
            [ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        try:
            yield f"amqp://127.0.0.1:5672/{vhost}"
        finally:
            subprocess.run([ctl, "-q", "delete_vhost", vhost], check=False, capture_output=True)
        return

    def purge() -> None:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            for name in ("light", "media"):
                queue = Queue(name, Exchange(name), routing_key=name)(conn.default_channel)
                queue.declare()
                queue.purge()

    purge()
    yield AMQP_URL
    purge()


@pytest.fixture
def pg_ledger(pg_url: str) -> Iterator[Ledger]:
    """A migrated ledger on a fresh PostgreSQL database (for what only PostgreSQL has)."""
    ledger = Ledger(pg_url)
    ledger.migrate()
    yield ledger
    ledger.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A migrated ledger, once on a fresh PostgreSQL database and once on SQLite."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = Ledger(url)
    ledger.migrate()
    yield ledger
    ledger.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A downstream endpoint recording the notifications it gets."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def cli_env(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> dict[str, str]:
    """The settings `recpipe` runs with in the CLI tests, on a migrated PostgreSQL ledger and
    Redis, or RabbitMQ when a test asks for it (`indirect` parametrization with "amqp")."""
    broker_url = request.getfixturevalue(f"{getattr(request, 'param', 'redis')}_url")
    (tmp_path / "source").mkdir()
    migrating = Ledger(pg_url)
    migrating.migrate()
    migrating.dispose()
    return cli_settings(
        str(tmp_path / "var"),
        pg_url,
        broker_url,
        (tmp_path / "archive").as_uri(),
        (tmp_path / "source").as_uri(),
    )


@pytest.fixture
def cli_ledger(cli_env: dict[str, str]) -> Iterator[Ledger]:
    """The ledger of `cli_env`."""
    ledger = Ledger(cli_env["RECPIPE_DATABASE_URL"])
    yield ledger
    ledger.dispose()


def _changed_tracked_files() -> set[str] | None:
    """Tracked files that differ from git's index, or None outside a git checkout."""
    found = subprocess.run(
        ["git", "diff", "--name-only"], cwd=TESTS.parent, capture_output=True, text=True
    )
    return set(found.stdout.split()) if found.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # once, in the process that reports
        session.config.stash[_CHANGED_BEFORE] = _changed_tracked_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test writes a tracked file: one that a test run changed fails the run."""
    before = session.config.stash.get(_CHANGED_BEFORE, None)
    after = _changed_tracked_files()
    if before is None or after is None:
        return
    if written := sorted(after - before):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "tracked files written by the tests", red=True)
            for name in written:
                reporter.write_line(name)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
