"""tasks.css.fetch against hostile real HTTP servers on 127.0.0.1: media that never ends (a
source that trickles bytes, a playlist that keeps growing), a server that stops answering,
redirects to a private address or in a loop, and a master playlist with several variants."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.css.fetch import Fetcher, FetchError, FetchPolicy, PlaylistError
from tests.support.hostile import Hostile


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


def policy(hostile: Hostile, **overrides) -> FetchPolicy:
    return FetchPolicy(allowed_hosts=(f"127.0.0.1:{hostile.port}",), attempts=1, **overrides)


def test_a_source_that_trickles_bytes_fails_at_the_time_limit_with_the_reason(
    hostile: Hostile, tmp_path: Path
):
    """Bytes keep coming, each well within the read timeout: the download still ends at
    max_seconds, saying why, and stops heart-beating then."""
    beats: list[float] = []
    fetcher = Fetcher(
        policy(hostile, max_seconds=2.0, timeout=5.0), heartbeat=lambda: beats.append(1)
    )
    fetcher._beat.last = 0.0  # beat on every chunk, to count them
    with pytest.raises(FetchError, match=r"still downloading after 2 s .*trickles or never ends"):
        fetcher.download(hostile.url("/trickle"), tmp_path / "t.bin", what="trickle")
    assert 0 < len(beats) <= 2  # at most once per 15 s after the first: no beat past the end


def test_a_playlist_that_keeps_growing_is_cut_at_its_size_limit(hostile: Hostile):
    """Cut by its size, long before the time limit (which would say "still downloading")."""
    fetcher = Fetcher(policy(hostile, max_playlist_bytes=64 * 1024, max_seconds=600.0))
    with pytest.raises(PlaylistError, match="playlist is too large"):
        fetcher.playlist(hostile.url("/endless.m3u8"))


def test_a_playlist_that_keeps_growing_slowly_is_cut_at_the_time_limit(
    hostile: Hostile, tmp_path: Path
):
    fetcher = Fetcher(policy(hostile, max_seconds=1.5))
    with pytest.raises(FetchError, match=r"still downloading after 1\.5 s"):
        fetcher.download_hls(hostile.url("/endless.m3u8"), tmp_path / "h.ts", what="live")


def test_a_server_that_stops_sending_fails_at_the_read_timeout(hostile: Hostile, tmp_path: Path):
    """/silent never sends its body nor closes: only the read timeout ends the download, and
    the reason says so (the time limit of 600 s would say "still downloading")."""
    fetcher = Fetcher(policy(hostile, timeout=1.0, max_seconds=600.0))
    with pytest.raises(FetchError, match=r"download broke off \(timed out\)"):
        fetcher.download(hostile.url("/silent"), tmp_path / "s", what="s")


def test_a_redirect_loop_stops_at_the_redirect_limit(hostile: Hostile, tmp_path: Path):
    with pytest.raises(FetchError, match="more than 3 redirects"):
        Fetcher(policy(hostile, max_redirects=3)).download(
            hostile.url("/loop"), tmp_path / "l", what="l"
        )
    assert hostile.paths == ["/loop"] * 4


def test_a_redirect_to_an_allowed_name_with_a_private_address_is_never_followed(
    hostile: Hostile, tmp_path: Path
):
    """The redirect's host matches the allow-list by pattern, but resolves to 10.0.0.5:
    refused before any connection to it."""
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return {"127.0.0.1": ["127.0.0.1"], "internal.example.com": ["10.0.0.5"]}[host]

    fetcher = Fetcher(
        FetchPolicy((f"127.0.0.1:{hostile.port}", "*.example.com"), attempts=1), resolver=resolver
    )
    with pytest.raises(FetchError, match=r"internal\.example\.com resolves to a non-public"):
        fetcher.download(hostile.url("/private"), tmp_path / "p", what="p")
    assert resolved == ["127.0.0.1", "internal.example.com"]
    assert hostile.paths == ["/private"]


def test_a_master_playlist_with_several_variants_fetches_only_the_best(
    hostile: Hostile, tmp_path: Path
):
    fetched = Fetcher(policy(hostile)).download_hls(
        hostile.url("/variants/master.m3u8"), tmp_path / "v.ts", what="variants"
    )
    expected = b"/variants/high-0.ts" * 10 + b"/variants/high-1.ts" * 10
    assert (tmp_path / "v.ts").read_bytes() == expected and fetched.bytes == len(expected)
    assert hostile.paths == [
        "/variants/master.m3u8", "/variants/high.m3u8", "/variants/high-0.ts",
        "/variants/high-1.ts",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory):
    """A test CA, and HTTPS servers on 127.0.0.1 (one with a certificate for `localhost`,
    one for another name) that record the SNI name each client sent."""
    import ssl

    import trustme

    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    servers, names = {}, []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"over tls"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    for name in ("localhost", "elsewhere.example"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        context.sni_callback = lambda sock, server_name, ctx: names.append(server_name)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield ca_file, servers, names
    for server in servers.values():
        server.shutdown()
        server.server_close()


def test_https_sends_the_name_as_sni_and_checks_the_certificate_against_it(tls, tmp_path: Path):
    """The connection goes to the checked address (127.0.0.1), while the TLS handshake
    names `localhost` and the certificate must be for `localhost` and from a trusted CA."""
    ca_file, servers, names = tls
    port = servers["localhost"].server_address[1]
    wrong_port = servers["elsewhere.example"].server_address[1]
    allowed = (f"localhost:{port}", f"localhost:{wrong_port}")
    trusting = FetchPolicy(allowed, attempts=1, ca_bundle=str(ca_file))
    loopback = lambda host, port: ["127.0.0.1"]  # noqa: E731
    url = f"https://localhost:{port}/clip"
    fetched = Fetcher(trusting, resolver=loopback).download(url, tmp_path / "a", what="a")
    assert (tmp_path / "a").read_bytes() == b"over tls" and fetched.bytes == 8
    assert names == ["localhost"]

    with pytest.raises(FetchError, match="cannot connect"):
        Fetcher(trusting, resolver=loopback).download(
            f"https://localhost:{wrong_port}/clip", tmp_path / "b", what="b"
        )
    assert names[-1] == "localhost"  # it said which name it wanted, and refused the answer
    untrusted = FetchPolicy(allowed, attempts=1)
    with pytest.raises(FetchError, match="cannot connect"):
        Fetcher(untrusted, resolver=loopback).download(url, tmp_path / "c", what="c")
