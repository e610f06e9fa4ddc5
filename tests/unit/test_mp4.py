"""The movie-header reader on hand-built boxes; files ffmpeg makes are compared with
ffprobe in tests/integration/test_media.py."""

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.media import mp4


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mvhd(scale: int, length: int, version: int = 0) -> bytes:
    if version == 0:
        body = struct.pack(">B3xIIII", 0, 1, 2, scale, length)
    else:
        body = struct.pack(">B3xQQIQ", 1, 1, 2, scale, length)
    return box(b"mvhd", body + bytes(80))


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "o.m4a"
    path.write_bytes(data)
    return path


FTYP = box(b"ftyp", b"M4A \x00\x00\x02\x00isomiso2")


@pytest.mark.parametrize("version", [0, 1])
def test_duration_is_the_movie_headers(tmp_path: Path, version: int):
    data = FTYP + box(b"moov", box(b"trak", bytes(40)) + mvhd(44100, 145530, version))
    assert mp4.duration(write(tmp_path, data)) == pytest.approx(3.3)


def test_a_moov_after_the_media_data_is_found_by_seeking(tmp_path: Path):
    data = FTYP + box(b"mdat", bytes(100_000)) + box(b"moov", mvhd(1000, 2500))
    assert mp4.duration(write(tmp_path, data)) == 2.5


def test_a_64_bit_box_size_is_followed(tmp_path: Path):
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + 50) + bytes(50)
    assert mp4.duration(write(tmp_path, FTYP + mdat + box(b"moov", mvhd(10, 25)))) == 2.5


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(FTYP + box(b"mdat", bytes(10)), id="no-moov"),
        pytest.param(FTYP + box(b"moov", box(b"trak", bytes(10))), id="no-mvhd"),
        pytest.param(FTYP + box(b"moov", mvhd(0, 100)), id="zero-scale"),
        pytest.param(FTYP + box(b"moov", mvhd(1000, 2500))[:-30], id="cut-off"),
        pytest.param(b"this is a text file, not audio\n" * 4, id="text"),
    ],
)
def test_anything_else_is_left_to_ffprobe(tmp_path: Path, data: bytes):
    assert mp4.duration(write(tmp_path, data)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_never_raises_on_any_bytes(tmp_path_factory, junk: bytes):
    path = tmp_path_factory.mktemp("mp4") / "f.m4a"
    for data in (junk, FTYP + junk, FTYP + box(b"moov", junk)):
        path.write_bytes(data)
        seconds = mp4.duration(path)
        assert seconds is None or seconds > 0
