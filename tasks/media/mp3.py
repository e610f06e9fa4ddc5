"""An MP3 segment's layout and length from its frame headers, without a process.

ffprobe costs a process per segment, about 75 ms of CPU here, most of it start-up: for a
recording of short segments that is most of its media time. A GME segment is a plain
MPEG audio Layer III stream, and what the chain needs of it (sample rate, channels and
duration, and that the file is whole) is in its frame headers. `read` walks them, as
`ffprobe -count_packets` does (a demux, no decoding).

It only answers for a file it understands completely: an optional ID3v2 tag, then Layer
III frames back to back to the end with one sample rate and channel count, then an
optional ID3v1 tag, and (when the first frame is a Xing/Info/VBRI header) exactly the
frame count that header declares. Anything else (free-format bitrates, Layer I or II,
junk between frames, a frame cut off at the end, a count that disagrees) gives None and
the caller asks ffprobe, whose answers and error messages stay the reference; the
durations agree with ffprobe's (tests/unit/test_mp3.py checks it on files ffmpeg makes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Layer III bitrates in kbit/s by index, for MPEG-1 and for MPEG-2/2.5.
_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Sample rates by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5) and index.
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ID3V1_SIZE = 128
_READ_SIZE = 1 << 16


@dataclass(frozen=True)
class Mp3Info:
    sample_rate: int
    channels: int
    frames: int  # audio frames held (a Xing/Info/VBRI frame is not audio)
    samples_per_frame: int

    @property
    def duration_s(self) -> float:
        return self.frames * self.samples_per_frame / self.sample_rate


@dataclass(frozen=True)
class _Frame:
    mpeg1: bool
    sample_rate: int
    channels: int
    length: int
    crc: bool

    @property
    def samples(self) -> int:
        return 1152 if self.mpeg1 else 576

    @property
    def side_info(self) -> int:
        if self.mpeg1:
            return 17 if self.channels == 1 else 32
        return 9 if self.channels == 1 else 17


@lru_cache(maxsize=256)  # a stream repeats a handful of distinct headers
def _frame(header: bytes) -> _Frame | None:
    """A Layer III frame header, or None if these 4 bytes are not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved, not Layer III, free format or invalid
    mpeg1 = version == 3
    bitrate = _BITRATES[1 if mpeg1 else 2][bitrate_index] * 1000
    sample_rate = _SAMPLE_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    length = (144 if mpeg1 else 72) * bitrate // sample_rate + padding
    channels = 1 if header[3] >> 6 == 3 else 2
    return _Frame(mpeg1, sample_rate, channels, length, crc=not header[1] & 1)


def _declared_frames(first: bytes, frame: _Frame) -> int | None:
    """The frame count of a Xing/Info or VBRI header in the first frame; -1 for such a
    header without a count; None when the first frame is audio."""
    at = 4 + (2 if frame.crc else 0) + frame.side_info
    tag = first[at : at + 4]
    if tag in (b"Xing", b"Info"):
        (flags,) = struct.unpack(">I", first[at + 4 : at + 8])
        return struct.unpack(">I", first[at + 8 : at + 12])[0] if flags & 1 else -1
    if first[36:40] == b"VBRI":
        return struct.unpack(">I", first[50:54])[0]
    return None


def _id3v2_size(head: bytes) -> int:
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = 0
    for byte in head[6:10]:
        if byte & 0x80:
            return -1  # not a syncsafe integer: not a tag we understand
        size = (size << 7) | byte
    return 10 + size + (10 if head[5] & 0x10 else 0)


def read(path: Path) -> Mp3Info | None:
    """The file's layout and length, or None when it is not a plain, whole Layer III stream."""
    try:
        return _read(path)
    except (struct.error, IndexError):
        return None  # a header field cut short: not a file to answer for


def _read(path: Path) -> Mp3Info | None:
    size = path.stat().st_size
    with path.open("rb", buffering=_READ_SIZE) as f:
        pos = _id3v2_size(f.read(10))
        if pos < 0:
            return None
        end = size
        if size - _ID3V1_SIZE >= pos:
            f.seek(size - _ID3V1_SIZE)
            if f.read(3) == b"TAG":
                end = size - _ID3V1_SIZE
        f.seek(pos)
        first = f.read(4)
        frame = _frame(first)
        if frame is None or pos + frame.length > end:
            return None
        first += f.read(frame.length - 4)
        declared = _declared_frames(first, frame)
        if declared == -1:
            return None
        layout = (frame.sample_rate, frame.channels)
        held = 0 if declared is not None else 1
        pos += frame.length
        while pos < end:
            f.seek(pos)
            frame = _frame(f.read(4))
            if frame is None or (frame.sample_rate, frame.channels) != layout:
                return None
            pos += frame.length
            held += 1
        if pos != end or held == 0 or (declared is not None and declared != held):
            return None  # cut off, empty, or not what the header declares
    return Mp3Info(layout[0], layout[1], held, frame.samples)
