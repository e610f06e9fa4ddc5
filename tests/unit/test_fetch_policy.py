from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.css.fetch import (
    FetchError,
    PlaylistError,
    check_url,
    choose_address,
    display,
    is_public_address,
    parse_playlist,
)

DEFAULT = ("*.myqcloud.com",)
PUBLIC = "203.0.114.7"  # not a documentation range: those are reserved


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.vod2.myqcloud.com/f.mp4",
        "file:///etc/passwd",
        "gopher://a.vod2.myqcloud.com/",
        "https://user:pw@a.vod2.myqcloud.com/f.mp4",
        "https://evil.com/f.mp4",
        "https://myqcloud.com.evil.com/f.mp4",
        "https://evilmyqcloud.com/f.mp4",
        "https:///f.mp4",
        "https://a.vod2.myqcloud.com:99999/f.mp4",
        "http://127.0.0.1/f.mp4",
        "http://localhost/f.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/f.mp4",
        "http://2130706433/f.mp4",
    ],
    ids=[
        "ftp", "file", "gopher", "credentials", "other-host", "suffix-trick", "no-dot",
        "no-host", "bad-port", "loopback-ip", "localhost", "metadata-service", "ipv6-loopback",
        "decimal-ip",
    ],
)  # fmt: skip
def test_default_policy_refuses_hostile_urls(url):
    with pytest.raises(FetchError):
        check_url(url, DEFAULT)


def test_default_policy_allows_vod_hosts():
    target = check_url("https://1253.vod2.myqcloud.com/a/b.mp4?t=1&sign=x", DEFAULT)
    assert (target.host, target.port, target.exact) == ("1253.vod2.myqcloud.com", 443, False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/f.mp4",
        "http://10.0.0.8/f.mp4",
        "http://[::ffff:127.0.0.1]/f.mp4",
        "http://[fe80::1]/f.mp4",
        "http://[fec0::1]/f.mp4",
        "http://0.0.0.0/f.mp4",
        "http://224.0.0.1/f.mp4",
    ],
    ids=[
        "loopback",
        "private",
        "ipv4-mapped-loopback",
        "link-local-v6",
        "site-local-v6",
        "unspecified",
        "multicast",
    ],
)
def test_a_pattern_never_matches_a_special_address_literal(url):
    with pytest.raises(FetchError, match="not a public address"):
        check_url(url, ("*",))


def test_a_literal_entry_allows_exactly_that_address():
    target = check_url("http://127.0.0.1:8000/f.mp4", ("127.0.0.1:8000",))
    assert target.exact and choose_address(target, []) == "127.0.0.1"
    with pytest.raises(FetchError):
        check_url("http://127.0.0.2/f.mp4", ("127.0.0.1",))
    with pytest.raises(FetchError):
        check_url("http://[::ffff:127.0.0.1]/f.mp4", ("127.0.0.1",))


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("http://10.0.0.5/f.mp4", "10.0.0.5"),
        ("https://10.0.0.5/f.mp4", "10.0.0.5"),
        ("http://10.0.0.5:80/f.mp4", "10.0.0.5"),
        ("http://10.0.0.5:8080/f.mp4", "10.0.0.5:8080"),
        ("http://[fd00::5]/f.mp4", "fd00::5"),
        ("https://[fd00::5]/f.mp4", "[fd00::5]"),
        ("http://[fd00::5]:8080/f.mp4", "[fd00::5]:8080"),
        ("http://localhost/f.mp4", "localhost"),
        ("http://localhost:8080/f.mp4", "localhost:8080"),
    ],
)
def test_a_literal_entry_allows_the_port_it_names_or_80_and_443(url, entry):
    assert check_url(url, (entry,)).exact


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("http://10.0.0.5:8080/f.mp4", "10.0.0.5"),
        ("http://10.0.0.5:6379/f.mp4", "10.0.0.5"),
        ("http://10.0.0.5:22/f.mp4", "10.0.0.5"),
        ("http://10.0.0.5/f.mp4", "10.0.0.5:8080"),
        ("https://10.0.0.5:8443/f.mp4", "10.0.0.5:8080"),
        ("http://[fd00::5]:2375/f.mp4", "fd00::5"),
        ("http://[fd00::5]:80/f.mp4", "[fd00::5]:8080"),
        ("http://localhost:6379/f.mp4", "localhost"),
        ("http://localhost:9108/f.mp4", "localhost:8080"),
    ],
)
def test_a_literal_entry_refuses_every_other_port(url, entry):
    """`10.0.0.5` allowed for its web server does not open its Redis or Docker port."""
    with pytest.raises(FetchError, match=r"port \d+ of .* is not in RECPIPE_CSS_ALLOWED_HOSTS"):
        check_url(url, (entry,))


def test_localhost_entry_allows_only_loopback_answers():
    target = check_url("http://localhost:8000/f.mp4", ("localhost:8000",))
    assert choose_address(target, ["::1", "127.0.0.1"]) == "::1"
    with pytest.raises(FetchError):
        choose_address(target, ["10.1.2.3"])


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["10.0.0.5"],
        ["172.16.3.4"],
        ["192.168.1.1"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["::1"],
        ["fd00::1"],
        ["fe80::1%eth0"],
        ["fec0::1"],
        ["::ffff:10.0.0.1"],
        ["2002:7f00:1::"],
        ["0.0.0.0"],  # noqa: S104 - an answer to refuse, not a bind
        ["240.0.0.1"],
        [PUBLIC, "127.0.0.1"],
        [],
    ],
    ids=[
        "loopback", "private-10", "private-172", "private-192", "link-local", "cgnat",
        "v6-loopback", "v6-unique-local", "v6-link-local", "v6-site-local", "v4-mapped-private",
        "6to4-loopback",
        "unspecified", "reserved", "rebinding-mix", "no-answer",
    ],
)  # fmt: skip
def test_a_host_resolving_to_a_special_address_is_refused(answers):
    target = check_url("https://a.vod2.myqcloud.com/f.mp4", DEFAULT)
    with pytest.raises(FetchError):
        choose_address(target, answers)


def test_a_host_resolving_to_public_addresses_connects_to_the_first():
    target = check_url("https://a.vod2.myqcloud.com/f.mp4", DEFAULT)
    assert choose_address(target, [PUBLIC, "2606:4700::1"]) == PUBLIC


@pytest.mark.parametrize(
    ("address", "public"),
    [(PUBLIC, True), ("8.8.8.8", True), ("2606:4700::1111", True), ("10.0.0.1", False),
     ("::ffff:192.168.0.1", False), ("ff02::1", False), ("192.0.2.1", False),
     ("fec0::1", False), ("feff:ffff::1", False)],
)  # fmt: skip
def test_public_address_classification(address, public):
    assert is_public_address(address) is public


def test_messages_leave_out_the_signed_query():
    assert display("https://a.vod2.myqcloud.com/f.mp4?t=1&sign=secret") == (
        "https://a.vod2.myqcloud.com/f.mp4"
    )


MASTER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.4d401e,mp4a.40.2"
low/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720
https://b.vod2.myqcloud.com/high/index.m3u8
"""

MEDIA = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXTINF:2.0,
seg0.ts
#EXTINF:2.0,
/abs/seg1.ts
#EXTINF:1.5,
https://c.vod2.myqcloud.com/seg2.ts?x=1
#EXT-X-ENDLIST
"""


def test_master_playlist_lists_variants_and_picks_the_best():
    playlist = parse_playlist(MASTER, "https://a.vod2.myqcloud.com/live/master.m3u8")
    assert playlist.variants == (
        (800000, "https://a.vod2.myqcloud.com/live/low/index.m3u8"),
        (2800000, "https://b.vod2.myqcloud.com/high/index.m3u8"),
    )
    assert playlist.best_variant == "https://b.vod2.myqcloud.com/high/index.m3u8"


def test_media_playlist_resolves_relative_segment_uris():
    playlist = parse_playlist(MEDIA, "https://a.vod2.myqcloud.com/live/x/index.m3u8")
    assert playlist.segments == (
        "https://a.vod2.myqcloud.com/live/x/seg0.ts",
        "https://a.vod2.myqcloud.com/abs/seg1.ts",
        "https://c.vod2.myqcloud.com/seg2.ts?x=1",
    )
    assert playlist.variants == () and playlist.init is None


def test_fmp4_playlist_keeps_its_init_section():
    text = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\nf0.m4s\n'
    playlist = parse_playlist(text, "http://h/p/i.m3u8")
    assert playlist.init == "http://h/p/init.mp4" and playlist.segments == ("http://h/p/f0.m4s",)


@pytest.mark.parametrize(
    "text",
    [
        "<html>not a playlist</html>",
        "",
        '#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:2,\ns.ts\n',
        "#EXTM3U\n#EXT-X-BYTERANGE:100@0\n#EXTINF:2,\ns.ts\n",
        '#EXTM3U\n#EXT-X-MAP:URI="i.mp4",BYTERANGE="100@0"\n#EXTINF:2,\nf0.m4s\n',
        '#EXTM3U\n#EXT-X-MAP:URI="a.mp4"\n#EXTINF:2,\nf0.m4s\n'
        '#EXT-X-MAP:URI="b.mp4"\n#EXTINF:2,\nf1.m4s\n',
        "#EXTM3U\n#EXT-X-MAP\n#EXTINF:2,\nf0.m4s\n",
        "#EXTM3U\n#EXTINF:2,\ns0.ts\ns1.ts\n",
        "#EXTM3U\n#EXTINF:two,\ns0.ts\n",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=fast\nlow.m3u8\n",
    ],
    ids=[
        "html", "empty", "encrypted", "byterange", "byterange-init", "two-inits",
        "map-without-uri", "uri-without-extinf", "bad-duration", "bad-bandwidth",
    ],
)  # fmt: skip
def test_unusable_playlists_are_refused(text):
    with pytest.raises(PlaylistError):
        parse_playlist(text, "http://h/i.m3u8")


def test_a_query_only_uri_resolves_against_the_playlist_itself():
    """RFC 3986 resolution against the playlist's URL, as HLS says: `?part=1` is the
    playlist's own path with that query, not its folder's."""
    playlist = parse_playlist("#EXTM3U\n#EXTINF:2,\n?part=1\n", "http://h/p/i.m3u8?t=x")
    assert playlist.segments == ("http://h/p/i.m3u8?part=1",)


def test_a_byte_order_mark_and_blank_lines_are_allowed():
    playlist = parse_playlist("\ufeff#EXTM3U\n\n#EXTINF:2,\n\ns0.ts\n\n", "http://h/i.m3u8")
    assert playlist.segments == ("http://h/s0.ts",)


TAGS = [
    "#EXTM3U", "#EXTINF:2,", "#EXTINF:x,", "#EXT-X-STREAM-INF:BANDWIDTH=1", "#EXT-X-MAP:",
    '#EXT-X-MAP:URI="i.mp4"', "#EXT-X-KEY:", "#EXT-X-KEY:METHOD=NONE",
    "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1", "#EXT-X-MEDIA:", "#EXT-X-BYTERANGE:",
    "#EXT-X-TARGETDURATION:x", "#EXT-X-PROGRAM-DATE-TIME:x", "#EXT-X-PART:",
    "#EXT-X-RENDITION-REPORT:", "#EXT-X-PRELOAD-HINT:", "#EXT-X-SESSION-KEY:", "seg.ts",
    "http://10.0.0.1/s.ts", "",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TAGS) | st.text(max_size=12), max_size=10))
def test_any_text_is_a_playlist_or_a_playlist_error(lines):
    """Whatever a server sends, parsing ends in PlaylistError or in a Playlist of absolute
    URLs where a media playlist has one segment per URI line, never in another exception."""
    text = "\n".join(["#EXTM3U", *lines])
    try:
        playlist = parse_playlist(text, "http://h/p/i.m3u8")
    except PlaylistError:
        return
    uris = [u for u in (line.strip() for line in text.splitlines()) if u and u[0] != "#"]
    if not playlist.variants:
        assert len(playlist.segments) == len(uris)
    urls = [u for _, u in playlist.variants] + list(playlist.segments) + [playlist.init or "h:"]
    assert all(urlsplit(url).scheme for url in urls)
