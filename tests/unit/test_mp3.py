"""The MP3 frame reader on hand-built streams: what it answers for, and what it leaves to
ffprobe (None). Files ffmpeg makes are compared with ffprobe in tests/integration/test_media.py."""

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.media import mp3

MPEG1, MPEG2, MPEG25 = 3, 2, 0


def header(version=MPEG1, layer=1, bitrate=9, rate=0, padding=0, mode=3, crc=False) -> bytes:
    """4 header bytes; layer 1 is Layer III in the header's own numbering."""
    b1 = 0xE0 | version << 3 | layer << 1 | (0 if crc else 1)
    return bytes([0xFF, b1, bitrate << 4 | rate << 2 | padding << 1, mode << 6])


def frame(head: bytes, body: bytes = b"") -> bytes:
    info = mp3._frame(head)
    assert info is not None
    return (head + body + bytes(info.length))[: info.length]


def xing(head: bytes, count: int | None, tag: bytes = b"Xing") -> bytes:
    info = mp3._frame(head)
    assert info is not None
    side = bytes(info.side_info)
    fields = struct.pack(">II", 1, count) if count is not None else struct.pack(">I", 0)
    return frame(head, side + tag + fields)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "s.mp3"
    path.write_bytes(data)
    return path


def test_a_plain_stream_is_counted(tmp_path: Path):
    # 128 kbit/s at 44.1 kHz: 417-byte frames, 418 with padding, as encoders alternate.
    frames = [frame(header(padding=i % 3 == 0)) for i in range(100)]
    info = mp3.read(write(tmp_path, b"".join(frames)))
    assert info == mp3.Mp3Info(44100, 1, 100, 1152)
    assert info.duration_s == pytest.approx(100 * 1152 / 44100)


@pytest.mark.parametrize(
    ("version", "rate", "expected_rate", "spf"),
    [(MPEG1, 1, 48000, 1152), (MPEG2, 2, 16000, 576), (MPEG25, 2, 8000, 576)],
)
def test_versions_and_rates(tmp_path: Path, version, rate, expected_rate, spf):
    head = header(version=version, rate=rate, bitrate=4, mode=0)
    info = mp3.read(write(tmp_path, frame(head) * 10))
    assert info == mp3.Mp3Info(expected_rate, 2, 10, spf)


def test_tags_at_both_ends_and_a_xing_header_are_not_audio(tmp_path: Path):
    id3v2 = b"ID3\x04\x00\x00" + bytes([0, 0, 1, 0]) + bytes(128)  # syncsafe 128
    id3v1 = b"TAG" + bytes(125)
    head = header()
    data = id3v2 + xing(head, 20) + frame(head) * 20 + id3v1
    assert mp3.read(write(tmp_path, data)) == mp3.Mp3Info(44100, 1, 20, 1152)


def test_a_crc_protected_stream_finds_its_info_header(tmp_path: Path):
    head = header(crc=True, mode=0)
    info = mp3._frame(head)
    assert info is not None
    first = frame(head, bytes(2) + bytes(info.side_info) + b"Info" + struct.pack(">II", 1, 5))
    assert mp3.read(write(tmp_path, first + frame(head) * 5)) == mp3.Mp3Info(44100, 2, 5, 1152)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"this is a text file, not audio\n" * 20, id="text"),
        pytest.param(frame(header()) * 10 + frame(header())[:100], id="last-frame-cut"),
        pytest.param(xing(header(), 30) + frame(header()) * 15, id="fewer-than-declared"),
        pytest.param(xing(header(), 10) + frame(header()) * 15, id="more-than-declared"),
        pytest.param(xing(header(), None) + frame(header()) * 15, id="xing-without-count"),
        pytest.param(frame(header()) * 5 + b"junk" + frame(header()) * 5, id="junk-between"),
        pytest.param(frame(header()) * 5 + frame(header(rate=1)) * 5, id="rate-changes"),
        pytest.param(frame(header()) * 5 + frame(header(mode=0)) * 5, id="channels-change"),
        pytest.param(header(layer=2) + bytes(500), id="layer-ii"),
        pytest.param(header(bitrate=0) + bytes(500), id="free-format"),
        pytest.param(header(bitrate=15) + bytes(500), id="bad-bitrate"),
        pytest.param(header(version=1) + bytes(500), id="reserved-version"),
        pytest.param(b"ID3\x04\x00\x00\x80\x00\x00\x00" + bytes(50), id="bad-id3-size"),
        pytest.param(xing(header(), 0), id="no-audio-frame"),
    ],
)
def test_anything_not_plain_and_whole_is_left_to_ffprobe(tmp_path: Path, data: bytes):
    assert mp3.read(write(tmp_path, data)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 40))
def test_never_raises_on_any_bytes(tmp_path_factory, junk: bytes, cut: int):
    path = tmp_path_factory.mktemp("mp3") / "f.mp3"
    # Arbitrary bytes, and a real stream with arbitrary bytes spliced in.
    for data in (junk, (frame(header()) * 3)[: -cut or None] + junk):
        path.write_bytes(data)
        info = mp3.read(path)
        assert info is None or info.frames > 0
