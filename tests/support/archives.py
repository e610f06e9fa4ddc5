"""Where a text (a forgotten player's UserID) is still kept: in any row of any table of the
ledger, or in any object (any version, its key or its bytes) of an archive, on disk or on
a versioned S3 bucket. For the forget tests and the end-to-end proof."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, cast, column, inspect, or_, select, table


def spellings(needle: str) -> list[str]:
    """The text as is and JSON-escaped (ASCII escapes and not)."""
    forms = {needle, json.dumps(needle)[1:-1], json.dumps(needle, ensure_ascii=False)[1:-1]}
    return sorted(f for f in forms if f)


def ledger_rows_holding(engine: Engine, needle: str) -> list[tuple[str, str, str]]:
    """(table, column, the value cut short) for every value of every column of every table
    (alembic's and SQLite's search tables too) that holds the text in any spelling."""
    found: list[tuple[str, str, str]] = []
    with engine.connect() as conn:
        described = inspect(conn)
        for name in described.get_table_names():
            columns = [c["name"] for c in described.get_columns(name)]
            t = table(name, *(column(c) for c in columns))
            for col in columns:
                text = cast(t.c[col], String)
                # autoescape: a JSON-escaped spelling's backslashes are LIKE's escape
                # character on PostgreSQL, and would match the unescaped letters instead.
                forms = (text.contains(f, autoescape=True) for f in spellings(needle))
                query = select(text).where(or_(*forms))
                values = conn.execute(query).scalars().all()
                found += [(name, col, str(v)[:200]) for v in values]
    return found


def objects_holding(archive: Path | Any, needle: str, *, bucket: str | None = None) -> list[str]:
    """Every object (on S3 every version) whose key or bytes hold the text: `archive` is
    the archive's folder on disk, or a boto3 client with `bucket`."""
    forms = [f.encode() for f in spellings(needle)]
    hits: list[str] = []
    if isinstance(archive, Path):
        for path in sorted(archive.rglob("*")):
            if path.is_file() and (
                any(f.decode() in str(path) for f in forms)
                or any(f in path.read_bytes() for f in forms)
            ):
                hits.append(str(path))
        return hits
    pages = archive.get_paginator("list_object_versions").paginate(Bucket=bucket)
    for page in pages:
        for version in page.get("Versions", []):
            key, vid = version["Key"], version["VersionId"]
            data = archive.get_object(Bucket=bucket, Key=key, VersionId=vid)["Body"].read()
            if any(f.decode() in key for f in forms) or any(f in data for f in forms):
                hits.append(f"{key}?versionId={vid}")
        for marker in page.get("DeleteMarkers", []):
            if any(f.decode() in marker["Key"] for f in forms):
                hits.append(f"{marker['Key']} (delete marker)")
    return hits


def versions_under(archive: Path | Any, prefix: str, *, bucket: str | None = None) -> list[str]:
    """Everything kept under a prefix: files on disk, or every version and delete marker."""
    if isinstance(archive, Path):
        folder = archive / prefix
        return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    found: list[str] = []
    for page in archive.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        found += [v["Key"] for v in page.get("Versions", [])]
        found += [m["Key"] + " (delete marker)" for m in page.get("DeleteMarkers", [])]
    return sorted(found)
