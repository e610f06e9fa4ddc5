"""The services the integration tests talk to, and ports on this machine."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator

from tests.support.waits import wait_for

PG_ADMIN_URL = os.environ.get(
    "RECPIPE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("RECPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
AMQP_URL = os.environ.get("RECPIPE_TEST_AMQP_URL", "amqp://127.0.0.1:5672//")
# Test-only values for the S3 server the tests run; not credentials of anything real.
S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "recpipe-test",
    "AWS_SECRET_ACCESS_KEY": "recpipe-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A port nothing listens on now, for a server the test is about to start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on, for a client that must find nobody there."""
    return free_port()


@contextlib.contextmanager
def redis_database() -> Iterator[str]:
    """The URL of a Redis database of the caller's own, flushed before and after.

    Databases 1-14 (15 is the benchmarks') are leased one at a time through keys in
    database 0, so tests side by side (xdist workers, several checkouts on one machine)
    never share one and eat each other's messages. A lease outlives a killed run by an
    hour at most."""
    import redis

    client = redis.Redis.from_url(f"{REDIS_URL}/0")
    owner = uuid.uuid4().hex.encode()

    def lease() -> int | None:
        start = int(client.incr("recpipe-test:db-counter"))
        for i in range(14):
            db = 1 + (start + i) % 14
            if client.set(f"recpipe-test:db-lease:{db}", owner, nx=True, ex=3600):
                return db
        return None

    db = wait_for(lease, timeout=300, interval=0.5, what="a free Redis database")
    scoped = redis.Redis.from_url(f"{REDIS_URL}/{db}")
    scoped.flushdb()
    try:
        yield f"{REDIS_URL}/{db}"
    finally:
        scoped.flushdb()
        scoped.close()
        if client.get(f"recpipe-test:db-lease:{db}") == owner:
            client.delete(f"recpipe-test:db-lease:{db}")
        client.close()
