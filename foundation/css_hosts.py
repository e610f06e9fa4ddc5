"""Which hosts a CSS `video_url` may name: RECPIPE_CSS_ALLOWED_HOSTS, and how wide it is.

A CSS callback's `sign` is MD5(key + t): it covers nothing but `t`. Anyone holding one
callback still inside its `t` window can send it again with another `file_id` and
`video_url`, and it verifies. recpipe cannot change the vendor's scheme, so it narrows what
such a callback can point at: the operator's own hosts only.

- An entry without a wildcard names one host (or, as a literal IP address or `localhost`,
  one address and port); the operator named it.
- `{appid}` stands for the callback's own appid, which must be one of RECPIPE_CSS_APP_IDS.
  The vendor's names carry the APPID where only its owner can create them: the VOD domain
  `<appid>.vod2.myqcloud.com`, and COS buckets `<name>-<appid>.cos.<region>.myqcloud.com`.
- A wildcard under a domain any tenant can create names under (every `*.myqcloud.com`
  bucket, for one) is broad: `broad_patterns` names it, and intake refuses to start with
  it unless RECPIPE_CSS_ALLOW_BROAD_HOSTS accepts the risk.

Pure functions: the webhook checks a callback's `video_url` with them before storing it,
and the worker's fetch policy checks every URL it follows with them again.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from foundation.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
APPID = "{appid}"
WILDCARDS = "*?["
# Domains under which any customer of the provider can create a name that serves their own
# files (buckets, VOD domains, functions, CDN names). A wildcard that reaches under one of
# them is not the operator's alone.
SHARED_DOMAINS = (
    "myqcloud.com",
    "tencentcos.cn",
    "tencentcos.com",
    "qcloud.com",
    "tencentcs.com",
    "cdn.dnsv1.com",
    "amazonaws.com",
    "cloudfront.net",
    "aliyuncs.com",
    "googleapis.com",
    "core.windows.net",
    "r2.dev",
)


class HostNotAllowedError(ValueError):
    """A URL that RECPIPE_CSS_ALLOWED_HOSTS does not allow; the message says why."""


@dataclass(frozen=True)
class Allowed:
    """A URL that passed: its parts, and `exact` when a literal entry names its address."""

    scheme: str
    host: str
    port: int
    literal: IPAddress | None
    exact: bool


def _literal_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def literal_entry(entry: str) -> tuple[IPAddress | str, int | None] | None:
    """An allow-list entry that names one address, as (address or `localhost`, port or
    None); None for a host pattern. `10.0.0.5`, `10.0.0.5:8080`, `fd00::5`, `[fd00::5]`,
    `[fd00::5]:8080`, `localhost`, `localhost:8080`."""
    text = entry.strip().lower()
    bare = _literal_ip(text)
    if bare is not None:
        return bare, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        host, _, port = text.partition(":")
    if port and not (port.isdigit() and 0 < int(port) <= 65535):
        return None
    address: IPAddress | str | None = "localhost" if host == "localhost" else _literal_ip(host)
    return (address, int(port) if port else None) if address is not None else None


def expand(patterns: Sequence[str], appid: int | None, app_ids: Collection[int]) -> tuple[str, ...]:
    """The patterns for a callback of `appid`: `{appid}` replaced by it when it is one of
    `app_ids` (or when no app ids are configured); patterns with `{appid}` dropped else."""
    allowed = appid is not None and (not app_ids or appid in app_ids)
    return tuple(
        p.strip().lower().replace(APPID, str(appid)) if allowed else p.strip().lower()
        for p in patterns
        if allowed or APPID not in p
    )


def check(url: str, patterns: Sequence[str]) -> Allowed:
    """Scheme, credentials, host and port of `url` against `patterns` (already expanded);
    no network. A pattern match is not yet a public address: the caller checks that."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise HostNotAllowedError("only http and https URLs are fetched")
    if "@" in parts.netloc:
        raise HostNotAllowedError("URLs with credentials are not fetched")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise HostNotAllowedError("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HostNotAllowedError("the URL has an invalid port") from None
    literal = _literal_ip(host)
    named = [e for e in map(literal_entry, patterns) if e and _names(e[0], host, literal)]
    exact = any(port == e[1] if e[1] else port in (80, 443) for e in named)
    if named and not exact:
        raise HostNotAllowedError(f"port {port} of {host} is not in RECPIPE_CSS_ALLOWED_HOSTS")
    matched = exact or any(
        fnmatch.fnmatchcase(host, p.strip().lower())
        for p in patterns
        if literal_entry(p) is None and APPID not in p
    )
    if not matched:
        raise HostNotAllowedError(f"host {host} is not in RECPIPE_CSS_ALLOWED_HOSTS")
    return Allowed(parts.scheme, host, port, literal, exact)


def _names(address: IPAddress | str, host: str, literal: IPAddress | None) -> bool:
    if address == "localhost":
        return host == "localhost"
    return literal is not None and address == literal


def broad_patterns(patterns: Sequence[str], app_ids: Collection[int]) -> list[tuple[str, str]]:
    """The patterns that allow more than the operator's own hosts, each with the reason."""
    found = []
    for pattern in patterns:
        reason = _why_broad(pattern.strip().lower(), app_ids)
        if reason:
            found.append((pattern, reason))
    return found


def _why_broad(pattern: str, app_ids: Collection[int]) -> str | None:
    if literal_entry(pattern) is not None:
        return None
    if APPID in pattern:
        if not app_ids:
            return "{appid} stands for whatever appid a callback claims: set RECPIPE_CSS_APP_IDS"
        before, _, after = pattern.partition(APPID)
        if (before and before[-1] not in ".-") or not after.startswith("."):
            return "{appid} must be a whole label or end one after a '-'"
        if any(c in after for c in WILDCARDS) or APPID in after:
            return "no wildcard may follow {appid}"
        return None
    last = max((pattern.rfind(c) for c in WILDCARDS), default=-1)
    if last < 0:
        return None
    if pattern[last + 1 : last + 2] != ".":
        return "a wildcard inside a label matches names of other domains"
    tail = pattern[last + 2 :]
    if tail.count(".") < 1:
        return "a wildcard over a whole top-level domain"
    for shared in SHARED_DOMAINS:
        if tail == shared or tail.endswith("." + shared):
            return f"anyone can create names under {shared}"
    return None


def intake_warnings(settings: Settings) -> list[str]:
    """What to warn about when CSS intake starts: a line per broad pattern when
    RECPIPE_CSS_ALLOW_BROAD_HOSTS accepts them. Raises ConfigError when it does not; no
    CSS callback key (no CSS intake) means nothing to check."""
    from foundation.config import ConfigError

    if settings.css_callback_key is None:
        return []
    broad = broad_patterns(settings.css_allowed_hosts, settings.css_app_ids)
    lines = [f"{pattern!r} is broader than your own hosts ({why})" for pattern, why in broad]
    if lines and not settings.css_allow_broad_hosts:
        raise ConfigError(
            f"RECPIPE_CSS_ALLOWED_HOSTS: {lines[0]}; a replayed CSS callback could make recpipe "
            "fetch and archive a stranger's file (docs/public-webhook.md). Name your own "
            "hosts, or set RECPIPE_CSS_ALLOW_BROAD_HOSTS=1 to accept the risk"
        )
    return lines
