"""Where a forgotten player could still be, looked for without knowing where recpipe keeps
anything: every object in the archive (every version of every key on a versioned bucket,
every file of a local archive), every column of every row of every ledger table, and their
voice in any sound left (ffmpeg decodes whatever holds sound, whatever its name)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import MetaData, create_engine, select

from tests.support.media import ANALYSIS_RATE


def spellings(user_id: str) -> tuple[bytes, ...]:
    """The byte strings that are the UserID: as UTF-8, and as JSON writes it escaped."""
    escaped = json.dumps(user_id)[1:-1]
    return tuple({user_id.encode(), escaped.encode()})


def holds(data: bytes | str, user_id: str) -> bool:
    raw = data.encode() if isinstance(data, str) else data
    return any(spelled in raw for spelled in spellings(user_id))


@dataclass(frozen=True)
class StoredObject:
    """One stored version of one object: its name (key, or path under the archive), the
    version (S3's VersionId; "" for a file), its bytes, whether it is the current one."""

    name: str
    version: str
    data: bytes
    latest: bool = True


def s3_objects(s3_client, bucket: str, prefix: str = "") -> list[StoredObject]:
    """Every version of every object in `bucket` under `prefix` (delete markers hold no
    bytes and are not listed; on an unversioned bucket, each object once)."""
    found = []
    for page in s3_client.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        for version in page.get("Versions", []):
            key, vid = version["Key"], version["VersionId"]
            got = s3_client.get_object(Bucket=bucket, Key=key, VersionId=vid)
            found.append(StoredObject(key, vid, got["Body"].read(), version["IsLatest"]))
    return sorted(found, key=lambda o: (o.name, o.version))


def delete_markers(s3_client, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
    markers = []
    for page in s3_client.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        markers += [(m["Key"], m["VersionId"]) for m in page.get("DeleteMarkers", [])]
    return sorted(markers)


def local_objects(root: Path) -> list[StoredObject]:
    """Every file under a local archive."""
    return [
        StoredObject(path.relative_to(root).as_posix(), "", path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]


def objects_holding(objects: Iterable[StoredObject], user_id: str) -> list[str]:
    """The objects whose name or bytes hold the UserID."""
    return [
        f"{o.name}@{o.version}" for o in objects if holds(o.name, user_id) or holds(o.data, user_id)
    ]


def sound_of(data: bytes, scratch: Path) -> np.ndarray | None:
    """The samples of an object (mono, ANALYSIS_RATE) when ffmpeg decodes sound from it,
    whatever its name says; None when it holds no sound."""
    scratch.write_bytes(data)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(scratch), "-vn",
         "-ac", "1", "-ar", str(ANALYSIS_RATE), "-f", "s16le", "-"],
        capture_output=True,
    )  # fmt: skip
    scratch.unlink()
    if decoded.returncode != 0 or len(decoded.stdout) < 2 * ANALYSIS_RATE // 10:
        return None
    return np.frombuffer(decoded.stdout, dtype="<i2").astype(np.float32) / 32768.0


def sounds(objects: Iterable[StoredObject], scratch: Path) -> Iterator[tuple[StoredObject, Any]]:
    """The objects that hold sound, with their samples."""
    for stored in objects:
        samples = sound_of(stored.data, scratch)
        if samples is not None:
            yield stored, samples


# The level (tests/support/media.level_at) of a tone heard in a sound of the pipeline made
# from the tests' tones, and under which it is not there: encoders and the mixer leave
# nothing near that at a frequency no one spoke at.
HEARD, ABSENT = 0.01, 0.001


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False) + json.dumps(value)
    return str(value)


def ledger_rows_holding(database_url: str, user_id: str) -> list[str]:
    """`table.column (primary key)` for every column of every row of every table of the
    ledger (found by inspecting the database, not from recpipe's models) that holds the
    UserID, however the value is stored."""
    engine = create_engine(database_url)
    found = []
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                keys = [c.name for c in table.primary_key.columns]
                for row in conn.execute(select(table)).mappings():
                    for column, value in row.items():
                        if value is not None and holds(_text(value), user_id):
                            key = ",".join(str(row[k]) for k in keys)
                            found.append(f"{table.name}.{column} ({key})")
    finally:
        engine.dispose()
    return found


def ledger_rows(database_url: str) -> dict[str, int]:
    """How many rows each table of the ledger has."""
    engine = create_engine(database_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                table.name: len(conn.execute(select(table)).all()) for table in meta.sorted_tables
            }
    finally:
        engine.dispose()
