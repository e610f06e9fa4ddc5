"""Shared fixtures: real media made with ffmpeg, and real services (PostgreSQL, Redis, an
S3 server over HTTP) for the integration tests."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from sqlalchemy import create_engine, text

from tests.media import make_tone

PG_ADMIN_URL = os.environ.get(
    "RECPIPE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RECPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Test-only values for the S3 server the tests run; not credentials of anything real.
S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "recpipe-test",
    "AWS_SECRET_ACCESS_KEY": "recpipe-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the thing may not be up yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


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
    import redis

    # Numbers are handed out in turn by a counter in database 0, so test runs side by side
    # (several checkouts on one machine) do not share a database and eat each other's
    # messages; 1-14, leaving 15 to the benchmarks.
    client = redis.Redis.from_url(f"{REDIS_URL}/0")
    db = 1 + int(client.incr("recpipe-test:db-counter")) % 14
    client.close()
    scoped = redis.Redis.from_url(f"{REDIS_URL}/{db}")
    scoped.flushdb()
    try:
        yield f"{REDIS_URL}/{db}"
    finally:
        scoped.flushdb()
        scoped.close()


@pytest.fixture
def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


AMQP_URL = os.environ.get("RECPIPE_TEST_AMQP_URL", "amqp://127.0.0.1:5672//")


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
