"""The length of an MP4/M4A file from its movie header (`moov/mvhd`), without a process.

Used on the m4a that ffmpeg has just written, to put its duration in the manifest without
starting ffprobe (about 75 ms of CPU each, a large share of a short recording's media
time). Only box headers are read, seeking over the media data, so memory does not grow
with the file. None when the file is not laid out as expected; the caller asks ffprobe.
ffprobe's format duration for these files is the same number (tests/integration/test_media.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_MAX_BOXES = 1000  # a movie of a few boxes; anything longer is not what ffmpeg wrote


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box between `start` and `end`."""
    pos = start
    for _ in range(_MAX_BOXES):
        if pos + 8 > end:
            return
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", f.read(8))
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError("box runs past its parent")
        yield kind, pos + header, pos + size
        pos += size


def duration(path: Path) -> float | None:
    """Seconds, from the movie header's duration and time scale; None if not found."""
    try:
        with path.open("rb") as f:
            end = path.stat().st_size
            for kind, start, stop in _boxes(f, 0, end):
                if kind != b"moov":
                    continue
                for inner, at, _ in _boxes(f, start, stop):
                    if inner != b"mvhd":
                        continue
                    f.seek(at)
                    version = f.read(4)[0]
                    if version == 0:
                        scale, length = struct.unpack(">8xII", f.read(16))
                    else:
                        scale, length = struct.unpack(">16xIQ", f.read(28))
                    return length / scale if scale and length else None
    except (struct.error, ValueError, IndexError):
        return None
    return None
