"""The webhook's one-statement intake stays within what psycopg parses once and caches."""

from __future__ import annotations

import re

from psycopg import _queries

from storage.ledger import gme_statement


def test_statement_fits_psycopgs_query_cache() -> None:
    """Longer than psycopg's cached length, the statement is parsed again on every request."""
    assert len(gme_statement.RECORD_GME_EVENT) <= _queries.MAX_CACHED_STATEMENT_LENGTH


def test_compacting_keeps_placeholders_and_literals() -> None:
    """Only comments and whitespace go: every placeholder and quoted literal is kept, in order."""
    source, compacted = gme_statement.RECORD_GME_EVENT_SOURCE, gme_statement.RECORD_GME_EVENT
    code = re.sub(r"--[^\n]*", "", source)
    for pattern in (r"%\(\w+\)s", r"'[^']*'"):
        assert re.findall(pattern, compacted) == re.findall(pattern, code)
    assert "--" not in compacted
    assert re.sub(r"\s", "", compacted) == re.sub(r"\s", "", code)


def test_compact_drops_comments_and_runs_of_whitespace() -> None:
    assert gme_statement.compact("SELECT 1,  -- one\n\n   2") == "SELECT 1, 2"
