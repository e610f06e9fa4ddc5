"""One typed settings object, read from the environment once and passed down."""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

AUDIO_FORMATS = ("m4a", "mp3", "opus", "wav", "flac")
VIDEO_FORMATS = ("mp4", "m4a")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
    archive_url: str
    gme_source_url: str
    gme_secret_keys: Mapping[int, bytes] = field(default_factory=dict)
    css_callback_key: str | None = None
    # Hosts a CSS video_url may name; `{appid}` is the callback's own appid, which must be
    # one of `css_app_ids` (empty: any, and then `{appid}` allows any tenant's domain).
    css_allowed_hosts: tuple[str, ...] = ("{appid}.vod2.myqcloud.com",)
    css_app_ids: frozenset[int] = frozenset()
    # Start CSS intake with an allow-list broader than the operator's own hosts (warned).
    css_allow_broad_hosts: bool = False
    notify_urls: tuple[str, ...] = ()
    notify_secret: str | None = None
    settle_seconds: float = 120.0
    settle_complete_seconds: float = 20.0
    max_wait_seconds: float = 3600.0
    audio_formats: tuple[str, ...] = ("m4a",)
    # Time, rooms and what comes with the audio (GME): CONTRACT.md.
    gme_gaps: str = "pad"
    gap_seconds: float = 2.0
    gme_time_zone: timezone = timezone(timedelta(hours=8))
    loudness_lufs: float | None = -16.0
    silence_db: float = -40.0
    max_body_bytes: int = 64 * 1024
    gme_replay_window_seconds: float = 0.0
    gme_key_scope: bool = True
    sweep_seconds: float = 10.0
    stuck_after_seconds: float = 900.0
    task_time_limit_seconds: int = 4 * 3600
    notify_max_attempts: int = 12
    notify_timeout_seconds: float = 10.0
    fetch_concurrency: int = 4
    log_level: str = "INFO"
    video_formats: tuple[str, ...] = ("mp4", "m4a")
    css_join_gap_seconds: float = 5.0
    css_max_file_bytes: int = 16 * 1024**3
    css_max_hls_segments: int = 20000
    css_fetch_timeout_seconds: float = 60.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9808
    # The webhook's internal listener (/readyz, /metrics); None = not opened.
    internal_listen: tuple[str, int] | None = ("127.0.0.1", 9108)
    # The console (`recpipe console`): what signs its sessions; None = one kept in the data
    # directory, which only the embedded default (SQLite ledger) may use.
    console_secret: str | None = None
    # Faults (issue 16): how long a run rides out an unavailable object store or ledger,
    # how soon a queued run whose task is gone is handed out again, where scratch lives, how
    # long one CSS file may take to download, which CAs an on-premises CSS source is checked
    # against.
    store_retry_seconds: float = 600.0
    requeue_after_seconds: float = 60.0
    scratch_root: Path | None = None
    css_fetch_max_seconds: float = 3600.0
    css_ca_bundle: Path | None = None
    # Soak (issue 16): stored callbacks and delivery attempts of finished work older than
    # this many days are deleted by beat's hourly `recpipe.prune`; 0 keeps them forever.
    retention_days: float = 30.0

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def scratch_dir(self) -> Path:
        return self.scratch_root or self.data_dir / "scratch"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("RECPIPE_DATA_DIR", "./var")).resolve()
        database_url = env.get("RECPIPE_DATABASE_URL") or f"sqlite:///{data_dir / 'ledger.sqlite3'}"
        broker_url = env.get("RECPIPE_BROKER_URL") or "filesystem://"
        archive_url = env.get("RECPIPE_ARCHIVE_URL") or (data_dir / "archive").as_uri()
        source_url = env.get("RECPIPE_GME_SOURCE_URL") or (data_dir / "source").as_uri()

        _check_url("RECPIPE_DATABASE_URL", database_url, ("sqlite", "postgresql", "postgres"))
        _check_url(
            "RECPIPE_BROKER_URL", broker_url, ("filesystem", "redis", "rediss", "amqp", "pyamqp")
        )
        _check_store_url("RECPIPE_ARCHIVE_URL", archive_url, ("s3", "file"))
        _check_store_url("RECPIPE_GME_SOURCE_URL", source_url, ("s3", "file", "https", "http"))

        notify_secret = env.get("RECPIPE_NOTIFY_SECRET") or None
        if notify_secret is not None:
            _check_whsec(notify_secret)

        return cls(
            data_dir=data_dir,
            database_url=database_url,
            broker_url=broker_url,
            archive_url=archive_url,
            gme_source_url=source_url,
            gme_secret_keys=parse_gme_keys(env.get("RECPIPE_GME_SECRET_KEYS", "")),
            css_callback_key=env.get("RECPIPE_CSS_CALLBACK_KEY") or None,
            css_allowed_hosts=_csv(
                env.get("RECPIPE_CSS_ALLOWED_HOSTS", "{appid}.vod2.myqcloud.com")
            ),
            css_app_ids=_app_ids(env.get("RECPIPE_CSS_APP_IDS", "")),
            css_allow_broad_hosts=_flag(env, "RECPIPE_CSS_ALLOW_BROAD_HOSTS"),
            notify_urls=_notify_urls(env.get("RECPIPE_NOTIFY_URLS", "")),
            notify_secret=notify_secret,
            settle_seconds=_number(env, "RECPIPE_SETTLE_SECONDS", 120.0),
            settle_complete_seconds=_number(env, "RECPIPE_SETTLE_COMPLETE_SECONDS", 20.0),
            max_wait_seconds=_number(env, "RECPIPE_MAX_WAIT_SECONDS", 3600.0),
            audio_formats=_formats(env.get("RECPIPE_AUDIO_FORMATS", "m4a")),
            gme_gaps=_choice(env, "RECPIPE_GME_GAPS", ("pad", "join")),
            gap_seconds=_number(env, "RECPIPE_GAP_SECONDS", 2.0),
            gme_time_zone=parse_zone(env.get("RECPIPE_GME_TIME_ZONE") or "+08:00"),
            loudness_lufs=_loudness(env.get("RECPIPE_LOUDNESS_LUFS") or "-16"),
            silence_db=_decibels(env, "RECPIPE_SILENCE_DB", -40.0),
            max_body_bytes=int(_number(env, "RECPIPE_MAX_BODY_BYTES", 64 * 1024)),
            gme_replay_window_seconds=_number(env, "RECPIPE_GME_REPLAY_WINDOW_SECONDS", 0.0),
            gme_key_scope=_choice(env, "RECPIPE_GME_KEY_SCOPE", ("bizid", "off")) == "bizid",
            sweep_seconds=_number(env, "RECPIPE_SWEEP_SECONDS", 10.0, minimum=0.5),
            stuck_after_seconds=_number(env, "RECPIPE_STUCK_AFTER_SECONDS", 900.0, minimum=10),
            task_time_limit_seconds=int(
                _number(env, "RECPIPE_TASK_TIME_LIMIT", 4 * 3600, minimum=60)
            ),
            notify_max_attempts=int(_number(env, "RECPIPE_NOTIFY_MAX_ATTEMPTS", 12, minimum=1)),
            notify_timeout_seconds=_number(
                env, "RECPIPE_NOTIFY_TIMEOUT_SECONDS", 10.0, minimum=0.1
            ),
            fetch_concurrency=int(_number(env, "RECPIPE_FETCH_CONCURRENCY", 4, minimum=1)),
            log_level=env.get("RECPIPE_LOG_LEVEL", "INFO").upper(),
            video_formats=_formats(
                env.get("RECPIPE_VIDEO_FORMATS", "mp4,m4a"), "RECPIPE_VIDEO_FORMATS", VIDEO_FORMATS
            ),
            css_join_gap_seconds=_number(env, "RECPIPE_CSS_JOIN_GAP_SECONDS", 5.0),
            css_max_file_bytes=int(
                _number(env, "RECPIPE_CSS_MAX_FILE_BYTES", 16 * 1024**3, minimum=1)
            ),
            css_max_hls_segments=int(
                _number(env, "RECPIPE_CSS_MAX_HLS_SEGMENTS", 20000, minimum=1)
            ),
            css_fetch_timeout_seconds=_number(
                env, "RECPIPE_CSS_FETCH_TIMEOUT_SECONDS", 60.0, minimum=1
            ),
            metrics_host=env.get("RECPIPE_METRICS_HOST") or "127.0.0.1",
            metrics_port=_port(env, "RECPIPE_METRICS_PORT", 9808),
            internal_listen=_listen(env, "RECPIPE_INTERNAL_LISTEN", ("127.0.0.1", 9108)),
            console_secret=_console_secret(env.get("RECPIPE_CONSOLE_SECRET") or None),
            store_retry_seconds=_number(env, "RECPIPE_STORE_RETRY_SECONDS", 600.0),
            requeue_after_seconds=_number(env, "RECPIPE_REQUEUE_AFTER_SECONDS", 60.0, minimum=5),
            scratch_root=_path(env, "RECPIPE_SCRATCH_DIR"),
            css_fetch_max_seconds=_number(env, "RECPIPE_CSS_FETCH_MAX_SECONDS", 3600.0, minimum=1),
            css_ca_bundle=_path(env, "RECPIPE_CSS_CA_BUNDLE"),
            retention_days=_number(env, "RECPIPE_RETENTION_DAYS", 30.0),
        )


def parse_gme_keys(text: str) -> dict[int, bytes]:
    """`BizID=key` pairs, comma separated; a key may itself contain '='."""
    keys: dict[int, bytes] = {}
    for item in _csv(text):
        biz, sep, key = item.partition("=")
        if not sep or not biz.strip().isdigit() or not key:
            raise ConfigError(
                "RECPIPE_GME_SECRET_KEYS: expected BizID=key pairs separated by commas"
            )
        keys[int(biz)] = key.encode()
    return keys


_ZONE = re.compile(r"^(?:UTC)?([+-])(\d{1,2}):?(\d{2})?$")


def parse_zone(text: str, name: str = "RECPIPE_GME_TIME_ZONE") -> timezone:
    """`+08:00`, `+0800`, `-05`, `UTC+8`, `Z` or `UTC` as a fixed offset."""
    value = text.strip().upper()
    if value in ("Z", "UTC"):
        return UTC
    match = _ZONE.match(value)
    hours, minutes = (int(match.group(2)), int(match.group(3) or 0)) if match else (99, 0)
    if match is None or hours > 14 or minutes > 59:
        raise ConfigError(f"{name}: expected an offset such as +08:00, got {text!r}")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if match.group(1) == "-" else delta)


def _loudness(text: str) -> float | None:
    """RECPIPE_LOUDNESS_LUFS: an integrated loudness target (-70..-5 LUFS) or `off`."""
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"RECPIPE_LOUDNESS_LUFS: expected LUFS such as -16 or off, got {text!r}"
        ) from None
    if not -70.0 <= value <= -5.0:
        raise ConfigError("RECPIPE_LOUDNESS_LUFS: must be between -70 and -5 (or off)")
    return value


def _decibels(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip().lower().removesuffix("db"))
    except ValueError:
        raise ConfigError(f"{name}: expected a level in dB such as -40, got {raw!r}") from None
    if not -120.0 < value < 0.0:
        raise ConfigError(f"{name}: must be below 0 dB and above -120 dB")
    return value


def require_ffmpeg() -> tuple[str, str]:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if not ffmpeg or not ffprobe:
        raise ConfigError("ffmpeg and ffprobe must be on PATH (Debian: apt-get install ffmpeg)")
    return ffmpeg, ffprobe


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum:g}")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = (env.get(name) or "").strip()
    return Path(raw).resolve() if raw else None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}: choose from {', '.join(choices)}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _number(env, name, default)
    if value != int(value) or value > 65535:
        raise ConfigError(f"{name}: expected a TCP port (0 turns it off)")
    return int(value)


def _listen(env: Mapping[str, str], name: str, default: tuple[str, int]) -> tuple[str, int] | None:
    """`host:port` (`[v6]:port` for IPv6) or `off`."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if raw.lower() == "off":
        return None
    host, sep, port = raw.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{name}: expected host:port such as 127.0.0.1:9108 (or off)")
    return host, int(port)


def _app_ids(text: str) -> frozenset[int]:
    ids = _csv(text)
    if not all(i.isdigit() for i in ids):
        raise ConfigError("RECPIPE_CSS_APP_IDS: expected APPIDs (numbers) separated by commas")
    return frozenset(int(i) for i in ids)


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "0").strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{name}: expected 1 or 0")
    return value in ("1", "true", "yes")


def _formats(
    text: str, name: str = "RECPIPE_AUDIO_FORMATS", known: tuple[str, ...] = AUDIO_FORMATS
) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.lower() for f in _csv(text)))
    unknown = [f for f in formats if f not in known]
    if not formats or unknown:
        raise ConfigError(
            f"{name}: choose from {', '.join(known)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return formats


def _notify_urls(text: str) -> tuple[str, ...]:
    urls = _csv(text)
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"RECPIPE_NOTIFY_URLS: {url!r} is not an http(s) URL")
    return urls


def _check_url(name: str, url: str, schemes: tuple[str, ...]) -> None:
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    if scheme not in schemes:
        raise ConfigError(f"{name}: scheme must be one of {', '.join(schemes)}, got {url!r}")


def _check_store_url(name: str, url: str, schemes: tuple[str, ...]) -> None:
    _check_url(name, url, schemes)
    parts = urlsplit(url)
    if parts.scheme == "s3" and not parts.netloc:
        raise ConfigError(f"{name}: s3:// URLs need a bucket (s3://bucket/prefix)")
    if parts.scheme == "s3":
        unknown = set(parse_qs(parts.query)) - {"endpoint_url", "region", "profile"}
        if unknown:
            raise ConfigError(f"{name}: unknown s3 parameter(s) {', '.join(sorted(unknown))}")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ConfigError(f"{name}: {url!r} has no host")
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        raise ConfigError(f"{name}: file:// URLs must be local paths (file:///dir)")


def _console_secret(secret: str | None) -> str | None:
    if secret is not None and len(secret) < 32:
        raise ConfigError("RECPIPE_CONSOLE_SECRET: use at least 32 random characters")
    return secret


def _check_whsec(secret: str) -> None:
    raw = secret.removeprefix("whsec_")
    try:
        decoded = base64.b64decode(raw + "==", validate=False)
    except ValueError:
        decoded = b""
    if not decoded:
        raise ConfigError("RECPIPE_NOTIFY_SECRET: expected whsec_ followed by base64")
