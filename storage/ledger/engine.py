"""The ledger's database: engines for SQLite and PostgreSQL, sessions, time in UTC.

Each public ledger method is one short transaction. State changes that race (two workers,
the webhook and a worker) are guarded by the row's current state in the UPDATE's WHERE
clause, or by a row lock, so running anything twice is harmless.
"""

from __future__ import annotations

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

    def ping(self) -> None:
        with self.session() as s:
            s.execute(text("SELECT 1"))

    def migrate(self) -> None:
        from storage.migrate import upgrade

        upgrade(self.engine)

    def current_revision(self) -> str | None:
        from storage.migrate import current_revision

        return current_revision(self.engine)


def upsert(bind: Session | Connection, model: Any) -> Any:
    """An INSERT that takes ON CONFLICT clauses, in the bind's dialect."""
    dialect = (bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect).name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def make_engine(database_url: str, *, echo: bool = False) -> Engine:
    url = make_url(database_url)
    if url.drivername == "postgresql" or url.drivername == "postgres":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": 30, "isolation_level": None}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

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
        # No pre-ping: it costs a round trip per transaction on the webhook's hot path. A
        # connection the server dropped fails its transaction once (a 503 the vendor
        # retries) and SQLAlchemy then discards the whole pool; recycling keeps idle
        # connections younger than the usual server and proxy idle timeouts.
        pool_recycle=1800,
        # At least `recpipe serve`'s threads (8): past pool_size, a busy webhook would open
        # and close an overflow connection per request, and lose its prepared statements.
        pool_size=10,
        max_overflow=20,
        connect_args=connect_args,
    )
