"""tasks.css.fetch against a real HTTP server on 127.0.0.1, with real ffmpeg-made media."""

import hashlib
from pathlib import Path

import pytest

from tasks.css.fetch import Fetcher, FetchError, FetchPolicy, PlaylistError
from tests.support.media import duration, make_hls, make_video
from tests.support.stack import FileServer


def local(server: FileServer) -> FetchPolicy:
    return FetchPolicy(allowed_hosts=(server.allowed,), attempts=1)


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    make_video(root / "clip.mp4", 440, 1.0)
    make_hls(root / "hls", 660, 3.0)
    server = FileServer(root)
    yield server, root
    server.close()


def test_downloads_a_file_streaming_and_hashing(served, tmp_path: Path):
    server, root = served
    fetched = Fetcher(local(server)).download(
        server.url("clip.mp4"), tmp_path / "a.mp4", what="clip"
    )
    data = (root / "clip.mp4").read_bytes()
    assert fetched.bytes == len(data) and fetched.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "a.mp4").read_bytes() == data


def test_connects_to_the_checked_address_while_sending_the_original_host(served, tmp_path: Path):
    """The name is resolved once, by the policy's resolver; the connection goes to that
    address, and the server still sees the name the URL gave."""
    server, _ = served
    fetcher = Fetcher(
        FetchPolicy((f"localhost:{server.port}",), attempts=1), resolver=lambda h, p: ["127.0.0.1"]
    )
    fetcher.download(f"http://localhost:{server.port}/clip.mp4", tmp_path / "a.mp4", what="clip")
    assert server.hosts == [f"localhost:{server.port}"]


def test_a_pattern_host_resolving_to_loopback_is_never_contacted(served, tmp_path: Path):
    server, _ = served
    fetcher = Fetcher(
        FetchPolicy(("*.example.com",), attempts=1), resolver=lambda h, p: ["127.0.0.1"]
    )
    with pytest.raises(FetchError, match="non-public address"):
        fetcher.download(
            f"http://vod.example.com:{server.port}/clip.mp4", tmp_path / "a", what="clip"
        )
    assert server.hosts == []


def test_redirects_are_followed_and_each_hop_is_checked(served, tmp_path: Path):
    server, _ = served
    server.redirects["/moved.mp4"] = "/clip.mp4"
    server.redirects["/evil.mp4"] = "http://169.254.169.254/latest/meta-data/"
    fetcher = Fetcher(local(server))
    fetcher.download(server.url("moved.mp4"), tmp_path / "a.mp4", what="clip")
    assert duration(tmp_path / "a.mp4") == pytest.approx(1.0, abs=0.1)
    with pytest.raises(FetchError, match=r"169\.254\.169\.254 is not in RECPIPE_CSS_ALLOWED_HOSTS"):
        fetcher.download(server.url("evil.mp4"), tmp_path / "b.mp4", what="clip")


def test_size_cap_and_missing_files_fail_clearly(served, tmp_path: Path):
    server, _ = served
    small = Fetcher(FetchPolicy((server.allowed,), max_bytes=1000, attempts=1))
    with pytest.raises(FetchError, match="larger than the limit of 1000 bytes"):
        small.download(server.url("clip.mp4"), tmp_path / "a.mp4", what="clip")
    with pytest.raises(FetchError, match="HTTP 404"):
        Fetcher(local(server)).download(server.url("nothing.mp4"), tmp_path / "b.mp4", what="x")


def test_unreachable_server_fails_after_its_attempts(tmp_path: Path):
    from tests.support.services import free_port

    port = free_port()
    fetcher = Fetcher(FetchPolicy((f"127.0.0.1:{port}",), attempts=2))
    with pytest.raises(FetchError, match="cannot connect"):
        fetcher.download(f"http://127.0.0.1:{port}/a.mp4", tmp_path / "a", what="x")
    assert fetcher.requests == 2


def test_a_server_error_is_retried_and_the_last_one_is_reported(served, tmp_path: Path):
    """A 5xx answer is retried after a pause; when every attempt gets one, its status is
    what the user sees."""
    server, root = served
    server.failures["/clip.mp4"] = 1
    fetcher = Fetcher(FetchPolicy((server.allowed,), attempts=2))
    fetched = fetcher.download(server.url("clip.mp4"), tmp_path / "a.mp4", what="clip")
    assert fetched.requests == 2 and fetched.bytes == (root / "clip.mp4").stat().st_size
    server.failures["/clip.mp4"] = 5
    fetcher = Fetcher(FetchPolicy((server.allowed,), attempts=2))
    with pytest.raises(FetchError, match="HTTP 503"):
        fetcher.download(server.url("clip.mp4"), tmp_path / "b.mp4", what="clip")
    assert fetcher.requests == 2 and server.failures["/clip.mp4"] == 3


def test_hls_master_playlist_becomes_one_playable_file(served, tmp_path: Path):
    server, _ = served
    fetched = Fetcher(local(server)).download_hls(
        server.url("hls/master.m3u8"), tmp_path / "hls.ts", what="hls"
    )
    assert fetched.requests >= 5  # master, media playlist, three segments
    assert duration(tmp_path / "hls.ts") == pytest.approx(3.0, abs=0.2)


def test_hls_segment_cap_and_hostile_segments(served, tmp_path: Path):
    server, root = served
    capped = Fetcher(FetchPolicy((server.allowed,), max_segments=2, attempts=1))
    with pytest.raises(PlaylistError, match="more than the limit of 2"):
        capped.download_hls(server.url("hls/master.m3u8"), tmp_path / "a.ts", what="hls")
    text = (root / "hls/media/index.m3u8").read_text()
    (root / "hls/media/evil.m3u8").write_text(
        text.replace("seg002.ts", "http://10.0.0.1/seg002.ts")
    )
    fetcher = Fetcher(local(server))
    with pytest.raises(FetchError, match=r"10\.0\.0\.1"):
        fetcher.download_hls(server.url("hls/media/evil.m3u8"), tmp_path / "b.ts", what="hls")
    assert fetcher.requests == 1, "no segment is fetched from a playlist with a hostile one"


def test_fmp4_hls_is_its_init_section_then_its_fragments(tmp_path: Path):
    """An fMP4 playlist (EXT-X-MAP) becomes one playable file: the initialization section
    first, then every fragment, each fetched once."""
    root = tmp_path / "www"
    playlist = make_hls(root / "hls", 550, 3.0, master=False, fmp4=True)
    assert "#EXT-X-MAP" in playlist.read_text()
    server = FileServer(root)
    try:
        fetched = Fetcher(local(server)).download_hls(
            server.url("hls/media/index.m3u8"), tmp_path / "hls.mp4", what="hls"
        )
    finally:
        server.close()
    media = root / "hls/media"
    parts = [media / "init.mp4", *sorted(media.glob("seg*.m4s"))]
    assert fetched.requests == 1 + len(parts)
    assert (tmp_path / "hls.mp4").read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert duration(tmp_path / "hls.mp4") == pytest.approx(3.0, abs=0.2)
