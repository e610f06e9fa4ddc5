"""Fixtures of the integration tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.ledger import Ledger
from tests.stack import Receiver


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
