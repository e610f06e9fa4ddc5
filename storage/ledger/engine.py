"""The ledger's database: engines for SQLite and PostgreSQL, sessions, time in UTC.

Each public ledger method is one short transaction. State changes that race (two workers,
the webhook and a worker) are guarded by the row's current state in the UPDATE's WHERE
clause, or by a row lock, so running anything twice is harmless.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from foundation import jsonsafe
from foundation.private import private_file


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: datetime | None) -> datetime | None: ...
def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the ledger stores is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class LedgerUnavailableError(Exception):
    """The ledger database cannot be reached or written right now."""


def first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0]


class LedgerBase:
    """The engine and its sessions; every aggregate's methods run on these."""

    def __init__(self, database_url: str, *, echo: bool = False):
        self.url = database_url
        self.engine = make_engine(database_url, echo=echo)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self._session.begin() as session:
                yield session
        except OperationalError as exc:
            raise LedgerUnavailableError(first_line(exc.orig)) from exc

    @contextmanager
    def bookkeeping(self) -> Iterator[Session]:
        """A session for writes that are only bookkeeping (a run's step times, heartbeats,
        when a message was handed out): on PostgreSQL it commits without waiting for the
        WAL flush (`synchronous_commit` off for this transaction). A crash may lose the
        last such write, never a callback, a claim or a run's end, and never out of order:
        whatever reads them (status, the sweep) already copes with an older value."""
        with self.session() as session:
            if self.engine.dialect.name == "postgresql":
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.thread_connections.close_all()

    @property
    def thread_connections(self) -> ThreadConnections:
        connections = self.__dict__.get("_thread_connections")
        if connections is None:
            connections = self.__dict__.setdefault(
                "_thread_connections", ThreadConnections(self.engine)
            )
        return connections

    def ping(self) -> None:
        with self.session() as s:
            s.execute(text("SELECT 1"))

    def migrate(self) -> None:
        from storage.migrate import upgrade

        upgrade(self.engine)

    def current_revision(self) -> str | None:
        from storage.migrate import current_revision

        return current_revision(self.engine)


# As `make_engine`'s pool_recycle: younger than the usual server and proxy idle timeouts.
RECYCLE_SECONDS = 1800


class _Held:
    __slots__ = ("born", "connection", "finalizer", "generation")

    def __init__(self, connection: Any, generation: int, finalizer: weakref.finalize):
        self.connection, self.generation, self.finalizer = connection, generation, finalizer
        self.born = time.monotonic()


class ThreadConnections:
    """One driver connection per thread, taken out of the engine's pool for good and kept in
    autocommit mode, for a statement that is its own transaction and runs on every request
    (the webhook's intake): a pool checkout, two autocommit switches and the check-in cost
    as much CPU as the statement's own round trip.

    A connection is closed when its thread ends, when this object is collected or
    `close_all` is called, after `RECYCLE_SECONDS`, and, for every thread, once one of them
    found the server gone (`discard_all`): each thread's next statement connects anew, as
    SQLAlchemy's pool does after a disconnect."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._local = threading.local()
        self._generation = 0
        # What the finalizers close; they hold this set, never `self`.
        self._open: set[Any] = set()
        weakref.finalize(self, _close_all, self._open)

    def get(self) -> Any:
        """This thread's connection; raises the driver's error when it cannot connect."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None:
            if (
                held.generation == self._generation
                and time.monotonic() - held.born < RECYCLE_SECONDS
                and not held.connection.closed
            ):
                return held.connection
            self.discard()
        pooled = self.engine.raw_connection()
        connection: Any = pooled.driver_connection
        pooled.detach()  # the pool forgets it: it is this thread's now
        connection.autocommit = True
        self._open.add(connection)
        finalizer = weakref.finalize(threading.current_thread(), _close, self._open, connection)
        self._local.held = _Held(connection, self._generation, finalizer)
        return connection

    def discard(self) -> None:
        """Close this thread's connection (it failed, or is stale)."""
        held: _Held | None = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            held.finalizer()  # closes it, once

    def discard_all(self) -> None:
        """Every thread connects anew on its next statement: the server dropped one of their
        connections, so the others are likely gone too."""
        self._generation += 1
        self.discard()

    def close_all(self) -> None:
        self._generation += 1
        _close_all(self._open)


def _close(open_connections: set[Any], connection: Any) -> None:
    open_connections.discard(connection)
    with contextlib.suppress(Exception):  # a broken connection may fail to close: it is gone
        connection.close()


def _close_all(open_connections: set[Any]) -> None:
    for connection in list(open_connections):
        _close(open_connections, connection)


def upsert(bind: Session | Connection, model: Any) -> Any:
    """An INSERT that takes ON CONFLICT clauses, in the bind's dialect."""
    dialect = (bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect).name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def make_engine(database_url: str, *, echo: bool = False) -> Engine:
    url = make_url(database_url)
    if url.drivername == "postgresql" or url.drivername == "postgres":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        database = url.database if url.database and url.database != ":memory:" else None
        if database:
            Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=jsonsafe.dumps,
            connect_args={"timeout": 30, "isolation_level": None},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            if database:  # the ledger holds argon2 hashes and raw callbacks
                for suffix in ("", "-wal", "-shm"):
                    private_file(Path(database + suffix))

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock up front: several processes write, and a deferred
            # transaction that upgrades its lock late fails instead of waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # A server that accepts but never answers must not hang intake or /readyz: libpq's
    # connect_timeout bounds the whole connection set-up (the URL may set its own).
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": 5}
    return create_engine(
        url,
        echo=echo,
        # Strict JSON in every JSON column (PostgreSQL refuses NaN and Infinity).
        json_serializer=jsonsafe.dumps,
        # No pre-ping: it costs a round trip per transaction on the webhook's hot path. A
        # connection the server dropped fails its transaction once (a 503 the vendor
        # retries) and SQLAlchemy then discards the whole pool; recycling keeps idle
        # connections younger than the usual server and proxy idle timeouts.
        pool_recycle=1800,
        # At least `recpipe serve`'s threads (8): past pool_size, a busy webhook would open
        # and close an overflow connection per request. (Its GME intake runs on connections
        # of each thread's own, `ThreadConnections`, taken from here.)
        pool_size=10,
        max_overflow=20,
        connect_args=connect_args,
    )
