"""The migrations and the ORM tables describe the same schema: what `recpipe migrate`
builds is what the code reads and writes, on PostgreSQL and on SQLite."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.ledger import Ledger
from storage.ledger.tables import Base

# The search index over transcript lines is of one database each, made by the migration
# in SQL the ORM does not describe: the trigram index on PostgreSQL, the FTS5 table (and
# the shadow tables FTS5 keeps) on SQLite.
SEARCH_INDEX = "ix_transcript_lines_text_trgm"
SEARCH_TABLES = "transcript_lines_fts"


def _search_index(diff: tuple) -> bool:
    return (diff[0] == "remove_index" and diff[1].name == SEARCH_INDEX) or (
        diff[0] == "remove_table" and diff[1].name.startswith(SEARCH_TABLES)
    )


def test_the_migrated_schema_is_the_tables_of_the_code(ledger: Ledger):
    with ledger.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        drift = [
            diff
            for diff in compare_metadata(context, Base.metadata)
            # alembic's own table is not one of the code's
            if not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
            and not _search_index(diff)
        ]
    assert drift == []
