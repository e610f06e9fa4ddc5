"""Fetching a CSS `video_url` safely: an allow-list of hosts, no private addresses, and a
connection pinned to the address that was checked.

The signature of a CSS callback does not cover `video_url`, so the URL is untrusted: it
could point the worker at a metadata service or an internal admin page. Every URL (each
redirect hop, each HLS playlist and segment) goes through the same policy:

- `http`/`https` only, no credentials in the URL;
- the host matches a `RECPIPE_CSS_ALLOWED_HOSTS` pattern (fnmatch, with `{appid}` the
  recording's own appid: `foundation.css_hosts`);
- the host resolves only to public addresses: never loopback, private, link-local,
  site-local (fec0::/10), multicast, reserved or unspecified (IPv4 and IPv6, IPv4-mapped
  included). An entry that is a literal IP address (or `localhost`) allows exactly that
  address, for test and on-premises set-ups, and only on the port it names (`10.0.0.5:8080`,
  `[fd00::5]:8080`), or 80 and 443 when it names none; a pattern never does;
- the connection goes to the address that was checked (the original name is still
  sent as Host and TLS SNI, and the certificate is checked against it), so a DNS answer
  that changes between check and connect cannot steer it elsewhere.

The policy functions are pure; `Fetcher` is the requests-based shell around them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urljoin, urlsplit, urlunsplit

import m3u8
import requests
import urllib3
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
)

from foundation import css_hosts
from tasks.media.tools import Beats, MediaError
from tasks.retrying import wait as back_off

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 1024 * 1024


class FetchError(MediaError):
    """A file cannot be fetched: refused by policy, unreachable, too large, or not there."""


class PlaylistError(FetchError):
    """An HLS playlist recpipe cannot use."""


@dataclass(frozen=True)
class FetchPolicy:
    allowed_hosts: tuple[str, ...]
    max_bytes: int = 16 * 1024**3
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_redirects: int = 5
    max_segments: int = 20000
    max_playlist_bytes: int = 4 * 1024 * 1024
    attempts: int = 3
    # The whole download of one file (every HLS part): a source that trickles bytes or
    # never ends must not hold a worker, heart-beating, for ever.
    max_seconds: float = 3600.0
    # CA certificates to trust instead of the public ones (an on-premises source).
    ca_bundle: str | None = None


@dataclass(frozen=True)
class Target:
    """A URL that passed the static checks; `exact` when an allow-list entry names it."""

    url: str
    scheme: str
    host: str
    port: int
    exact: bool


def display(url: str) -> str:
    """A URL for messages: without its query, which may carry a signed token."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _literal_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_public_address(address: str | IPAddress) -> bool:
    """True only for a globally routable unicast address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    embedded: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        # fec0::/10 is deprecated but still routed inside some sites; `is_global` says yes.
        if ip.scope_id or ip.is_site_local:
            return False
        embedded += [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
        if ip.teredo:
            embedded += list(ip.teredo)
    return all(
        a.is_global
        and not (
            a.is_private
            or a.is_loopback
            or a.is_link_local
            or a.is_multicast
            or a.is_reserved
            or a.is_unspecified
        )
        for a in embedded
    )


def check_url(url: str, allowed_hosts: Sequence[str]) -> Target:
    """Scheme, credentials, host name and port against the allow-list; no network."""
    try:
        allowed = css_hosts.check(url, allowed_hosts)
    except css_hosts.HostNotAllowedError as exc:
        raise FetchError(f"{display(url)}: {exc}") from None
    if allowed.literal is not None and not allowed.exact and not is_public_address(allowed.literal):
        raise FetchError(f"{display(url)}: {allowed.host} is not a public address")
    return Target(url, allowed.scheme, allowed.host, allowed.port, allowed.exact)


def choose_address(target: Target, addresses: Sequence[str]) -> str:
    """The address to connect to, from what the host resolved to.

    A host matched by a pattern must resolve only to public addresses (one private
    answer among public ones is refused: it is how DNS rebinding looks). `localhost`
    allowed by name may only be loopback.
    """
    literal = _literal_ip(target.host)
    if literal is not None:  # check_url vetted it: public, or named in the allow-list
        return str(literal)
    ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not ips:
        raise FetchError(f"{display(target.url)}: {target.host} did not resolve")
    if target.exact:  # localhost, named in the allow-list
        loopback = [ip for ip in ips if ip.is_loopback]
        if not loopback:
            raise FetchError(f"{display(target.url)}: localhost does not resolve to loopback")
        return str(loopback[0])
    refused = [str(ip) for ip in ips if not is_public_address(ip)]
    if refused:
        raise FetchError(
            f"{display(target.url)}: {target.host} resolves to a non-public address "
            f"({', '.join(refused)})"
        )
    return str(ips[0])


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# -- HLS ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Playlist:
    variants: tuple[tuple[int, str], ...] = ()  # (bandwidth, absolute URL), a master playlist
    segments: tuple[str, ...] = ()  # absolute URLs, a media playlist
    init: str | None = None  # EXT-X-MAP: the fMP4 initialization section

    @property
    def best_variant(self) -> str:
        return max(self.variants, key=lambda v: v[0])[1]


def parse_playlist(text: str, base_url: str) -> Playlist:
    """An m3u8 playlist: a master one (its variants) or a media one (its segments), with
    every URI resolved against the playlist's own URL."""
    text = text.lstrip("\ufeff")
    lines = [line.strip() for line in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError(f"{display(base_url)}: not an HLS playlist (no #EXTM3U)")
    try:
        parsed = m3u8.loads(text)
    except (ValueError, KeyError, TypeError) as exc:  # a malformed tag or number
        raise PlaylistError(f"{display(base_url)}: unreadable HLS playlist ({exc})") from None
    # m3u8 skips a URI line that no #EXTINF/#EXT-X-STREAM-INF introduces; a recording with
    # a silently missing piece is worse than a refused one.
    uris = sum(1 for line in lines if line and not line.startswith("#"))
    if uris != len(parsed.playlists) + len([s for s in parsed.segments if s.uri]):
        raise PlaylistError(f"{display(base_url)}: a URI line without #EXTINF")
    if any(key is not None and key.method != "NONE" for key in parsed.keys):
        raise PlaylistError(f"{display(base_url)}: encrypted HLS is not supported")
    if any(m is None for m in parsed.segment_map):
        raise PlaylistError(f"{display(base_url)}: EXT-X-MAP without URI")
    maps = [s.init_section for s in parsed.segments]
    if any(s.byterange for s in parsed.segments) or any(m and m.byterange for m in maps):
        raise PlaylistError(f"{display(base_url)}: byte-range HLS is not supported")
    inits = {urljoin(base_url, m.uri) if m else None for m in maps}
    # URIs resolve against the playlist's URL itself (RFC 3986), as the HLS spec says;
    # m3u8's `absolute_uri` joins with the playlist's folder, which differs for `?query`.
    if parsed.playlists:
        return Playlist(
            variants=tuple(
                (v.stream_info.bandwidth or 0, urljoin(base_url, v.uri)) for v in parsed.playlists
            )
        )
    if len(inits) > 1:
        raise PlaylistError(
            f"{display(base_url)}: the segments do not share one EXT-X-MAP initialization section"
        )
    (init,) = inits or {None}
    return Playlist(
        segments=tuple(urljoin(base_url, s.uri) for s in parsed.segments if s.uri), init=init
    )


# -- the shell: requests, pinned to the checked address -------------------------------


class _PinnedAdapter(HTTPAdapter):
    """Connects to whatever host the URL names (the vetted IP) while TLS uses `hostname`
    for SNI and certificate checks."""

    def __init__(self, hostname: str):
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(server_hostname=self._hostname, assert_hostname=self._hostname)
        super().init_poolmanager(*args, **kwargs)


class _HashingSink:
    def __init__(self, out: IO[bytes], limit: int, what: str):
        self.out, self.limit, self.what = out, limit, what
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise FetchError(f"{self.what} is larger than the limit of {self.limit} bytes")
        self.digest.update(data)
        self.out.write(data)


@dataclass(frozen=True)
class Fetched:
    path: Path
    bytes: int
    sha256: str
    requests: int


class Fetcher:
    """Streams URLs to disk under a `FetchPolicy`."""

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        resolver: Resolver = resolve,
        heartbeat: Callable[[], None] | None = None,
        user_agent: str = "recpipe",
    ):
        self.policy = policy
        self.resolver = resolver
        self.user_agent = user_agent
        self.requests = 0
        self._beat = Beats(heartbeat)

    def _open(self, url: str) -> tuple[requests.Response, str]:
        """GET with redirects followed by hand, every hop checked: a streaming 200 response
        and the URL it finally came from."""
        current = url
        for _hop in range(self.policy.max_redirects + 1):
            target = check_url(current, self.policy.allowed_hosts)
            address = choose_address(target, self.resolver(target.host, target.port))
            response = self._get_pinned(target, address)
            if response.status_code in REDIRECTS and response.headers.get("Location"):
                current = urljoin(current, response.headers["Location"])
                response.close()
                continue
            if response.status_code != 200:
                response.close()
                raise FetchError(f"{display(current)}: HTTP {response.status_code}")
            return response, current
        raise FetchError(f"{display(url)}: more than {self.policy.max_redirects} redirects")

    def _get_pinned(self, target: Target, address: str) -> requests.Response:
        parts = urlsplit(target.url)
        ip_host = f"[{address}]" if ":" in address else address
        default_port = 443 if target.scheme == "https" else 80
        netloc = ip_host if target.port == default_port else f"{ip_host}:{target.port}"
        pinned_url = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
        name = f"[{target.host}]" if ":" in target.host else target.host
        host_header = name if target.port == default_port else f"{name}:{target.port}"
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment would undo the pinning
        if self.policy.ca_bundle:
            session.verify = self.policy.ca_bundle
        session.mount(f"{target.scheme}://", _PinnedAdapter(target.host))

        def get() -> requests.Response:
            self.requests += 1
            return session.get(
                pinned_url,
                headers={"Host": host_header, "User-Agent": self.user_agent},
                stream=True,
                allow_redirects=False,
                timeout=(self.policy.connect_timeout, self.policy.timeout),
            )

        def give_up(state: RetryCallState) -> requests.Response:
            outcome = state.outcome
            if outcome is None or outcome.failed:
                reason = _reason(outcome.exception() if outcome else None)
                raise FetchError(f"{display(target.url)}: cannot connect ({reason})")
            return cast(requests.Response, outcome.result())  # a 5xx, reported as such

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.attempts),
            wait=back_off(cap=10),  # the chains' one back-off: 2, 4, 8, 10 … seconds
            retry=retry_if_exception_type((requests.ConnectionError, requests.Timeout))
            | retry_if_result(lambda response: response.status_code >= 500),
            before_sleep=_close_answer,
            retry_error_callback=give_up,
        )
        return cast(requests.Response, retrying(get))

    def _chunks(self, response: requests.Response, url: str, deadline: float) -> Iterator[bytes]:
        """The body as it arrives (whatever one read returns, so a trickle is noticed), until
        `deadline` (time.monotonic()); a body still coming then is a FetchError."""
        try:
            while chunk := response.raw.read1(CHUNK, decode_content=True):
                yield chunk
                self._beat()
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"{display(url)}: still downloading after {self.policy.max_seconds:g} s "
                        "(RECPIPE_CSS_FETCH_MAX_SECONDS): the source trickles or never ends"
                    )
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            raise FetchError(f"{display(url)}: download broke off ({_reason(exc)})") from None

    def _deadline(self) -> float:
        return time.monotonic() + self.policy.max_seconds

    def _stream(self, url: str, sink: _HashingSink, deadline: float) -> None:
        response, _final = self._open(url)
        with response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and sink.size + int(declared) > sink.limit:
                raise FetchError(f"{sink.what} is larger than the limit of {sink.limit} bytes")
            for chunk in self._chunks(response, url, deadline):
                sink.write(chunk)

    def download(self, url: str, dest: Path, *, what: str) -> Fetched:
        """One file, streamed to `dest`, hashed as it goes."""
        with dest.open("wb") as out:
            sink = _HashingSink(out, self.policy.max_bytes, what)
            self._stream(url, sink, self._deadline())
        return Fetched(dest, sink.size, sink.digest.hexdigest(), self.requests)

    def playlist(self, url: str, deadline: float | None = None) -> tuple[Playlist, str]:
        """A playlist and its final URL (relative URIs resolve against where it came from)."""
        response, final = self._open(url)
        data = b""
        with response:
            for chunk in self._chunks(response, url, deadline or self._deadline()):
                data += chunk
                if len(data) > self.policy.max_playlist_bytes:
                    raise PlaylistError(f"{display(url)}: playlist is too large")
        return parse_playlist(data.decode("utf-8", errors="replace"), final), final

    def download_hls(self, url: str, dest: Path, *, what: str) -> Fetched:
        """An HLS recording as one file: the playlist (a master playlist's best variant),
        then every segment appended in order. MPEG-TS segments (and an fMP4 init section
        followed by its fragments) concatenate into one valid stream for ffmpeg to remux."""
        deadline = self._deadline()
        playlist, url = self.playlist(url, deadline)
        if playlist.variants:
            playlist, url = self.playlist(playlist.best_variant, deadline)
            if playlist.variants:
                raise PlaylistError(f"{display(url)}: a variant playlist lists variants again")
        parts = ([playlist.init] if playlist.init else []) + list(playlist.segments)
        if not playlist.segments:
            raise PlaylistError(f"{display(url)}: the playlist has no segments")
        if len(playlist.segments) > self.policy.max_segments:
            raise PlaylistError(
                f"{display(url)}: {len(playlist.segments)} segments, more than the limit of "
                f"{self.policy.max_segments}"
            )
        # Every URL is checked before the first byte is fetched, so a playlist that hides
        # one hostile segment fails as a whole, early.
        for part in parts:
            check_url(part, self.policy.allowed_hosts)
        with dest.open("wb") as out:
            sink = _HashingSink(out, self.policy.max_bytes, what)
            for part in parts:
                self._stream(part, sink, deadline)
        return Fetched(dest, sink.size, sink.digest.hexdigest(), self.requests)


def _close_answer(state: RetryCallState) -> None:
    """Before a retry: release the connection of a 5xx answer that is not kept."""
    if state.outcome is not None and not state.outcome.failed:
        state.outcome.result().close()


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "reset"):
        if marker.lower() in text.lower():
            return marker.lower()
    return type(exc).__name__
