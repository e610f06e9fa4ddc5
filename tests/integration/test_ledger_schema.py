"""The migrations and the ORM tables describe the same schema: what `recpipe migrate`
builds is what the code reads and writes, on PostgreSQL and on SQLite."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.ledger import Ledger
from storage.ledger.tables import Base


def test_the_migrated_schema_is_the_tables_of_the_code(ledger: Ledger):
    with ledger.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        drift = [
            diff
            for diff in compare_metadata(context, Base.metadata)
            # alembic's own table is not one of the code's
            if not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
        ]
    assert drift == []
