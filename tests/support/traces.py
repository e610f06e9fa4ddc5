"""A forgotten player's voice in a store: every object of the archive (every version of
every key on a versioned bucket, every file of a local archive) with its bytes, and those
that hold sound whatever their name (ffmpeg decodes them). Where their UserID is kept is
tests/support/archives.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.archives import spellings
from tests.support.media import ANALYSIS_RATE


def holds(data: bytes | str, user_id: str) -> bool:
    """Whether text or bytes hold the UserID in any of its spellings."""
    raw = data.encode() if isinstance(data, str) else data
    return any(spelled.encode() in raw for spelled in spellings(user_id))


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


def sounds(
    objects: Iterable[StoredObject], scratch: Path
) -> Iterator[tuple[StoredObject, np.ndarray]]:
    """The objects that hold sound, with their samples."""
    for stored in objects:
        samples = sound_of(stored.data, scratch)
        if samples is not None:
            yield stored, samples


# The level (tests/support/media.level_at) of a tone heard in a sound of the pipeline made
# from the tests' tones, and under which it is not there: encoders and the mixer leave
# nothing near that at a frequency no one spoke at.
HEARD, ABSENT = 0.01, 0.001
