"""One typed settings object, read from the environment once and passed down.

Each setting is written once, as a field of `Settings`: its variable, the kind of value it
takes (type and bounds), its default as it would be written in the environment, and one
line of doc. `Settings.from_env` reads them, `recpipe config` prints the ones in effect,
and docs/configuration.md is generated from them (`make docs`).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

AUDIO_FORMATS = ("m4a", "mp3", "opus", "wav", "flac")
VIDEO_FORMATS = ("mp4", "m4a")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Kind:
    """How a setting's text becomes its value, and what the reference says it takes.

    An empty value means the default, except for a list (`blank_is_value`), where it is
    the empty list."""

    parse: Callable[[str, str], Any]  # (text, variable) -> value, or ConfigError
    takes: str
    blank_is_value: bool = False


@dataclass(frozen=True)
class Setting:
    env: str
    kind: Kind
    default: str  # as written in the environment; {data_dir} is RECPIPE_DATA_DIR's value
    doc: str
    secret: bool = False
    attr: str = ""

    def default_text(self, data_dir: Path | None) -> str:
        if data_dir is None:
            return self.default.replace("{data_dir_uri}", "file://{data_dir}")
        # Not str.format: a default may hold other braces (`{appid}`).
        return self.default.replace("{data_dir_uri}", data_dir.as_uri()).replace(
            "{data_dir}", str(data_dir)
        )


def setting(env: str, kind: Kind, default: str, doc: str, *, secret: bool = False) -> Any:
    """A field of `Settings`, defined by its variable, kind, default and doc line."""
    return field(metadata={"setting": Setting(env, kind, default, doc, secret)})


# --- The kinds of value ------------------------------------------------------------------


def number(minimum: float = 0.0) -> Kind:
    def parse(text: str, name: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {text!r}") from None
        if value < minimum:
            raise ConfigError(f"{name}: must be at least {minimum:g}")
        return value

    return Kind(parse, f"number ≥ {minimum:g}")


def whole(minimum: int = 0) -> Kind:
    def parse(text: str, name: str) -> int:
        value = number(minimum).parse(text, name)
        if value != int(value):
            raise ConfigError(f"{name}: expected a whole number, got {text!r}")
        return int(value)

    return Kind(parse, f"whole number ≥ {minimum}")


def _port(text: str, name: str) -> int:
    value = number().parse(text, name)
    if value != int(value) or value > 65535:
        raise ConfigError(f"{name}: expected a TCP port (0 turns it off)")
    return int(value)


def choice(*choices: str) -> Kind:
    def parse(text: str, name: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name}: choose from {', '.join(choices)}")
        return value

    return Kind(parse, "one of " + ", ".join(f"`{c}`" for c in choices))


def flag(on: str, off: str) -> Kind:
    """A choice of two words read as a boolean: `on` is True."""
    pick = choice(on, off)
    return Kind(lambda text, name: pick.parse(text, name) == on, pick.takes)


def formats(known: tuple[str, ...]) -> Kind:
    def parse(text: str, name: str) -> tuple[str, ...]:
        chosen = tuple(dict.fromkeys(f.lower() for f in _csv(text)))
        unknown = [f for f in chosen if f not in known]
        if not chosen or unknown:
            raise ConfigError(
                f"{name}: choose from {', '.join(known)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        return chosen

    return Kind(parse, "comma-separated, any of " + ", ".join(f"`{f}`" for f in known), True)


def url(*schemes: str, store: bool = False) -> Kind:
    def parse(text: str, name: str) -> str:
        (_check_store_url if store else _check_url)(name, text, schemes)
        return text

    return Kind(parse, "URL: " + ", ".join(f"`{s}://`" for s in schemes))


def _path(text: str, name: str) -> Path:
    return Path(text.strip()).resolve()


def _optional_path(text: str, name: str) -> Path | None:
    return Path(text.strip()).resolve() if text.strip() else None


def _optional_text(text: str, name: str) -> str | None:
    return text or None


def _plain_text(text: str, name: str) -> str:
    return text.strip()


def _hosts(text: str, name: str) -> tuple[str, ...]:
    return _csv(text)


def _app_ids(text: str, name: str) -> frozenset[int]:
    ids = _csv(text)
    if not all(i.isdigit() for i in ids):
        raise ConfigError(f"{name}: expected APPIDs (numbers) separated by commas")
    return frozenset(int(i) for i in ids)


def _listen(text: str, name: str) -> tuple[str, int] | None:
    raw = text.strip()
    if raw.lower() == "off":
        return None
    host, sep, port = raw.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{name}: expected host:port such as 127.0.0.1:9108 (or off)")
    return host, int(port)


def _log_level(text: str, name: str) -> str:
    value = text.strip().upper()
    if value not in LOG_LEVELS:
        raise ConfigError(f"{name}: choose from {', '.join(LOG_LEVELS)}")
    return value


def _gme_keys(text: str, name: str) -> dict[int, bytes]:
    return parse_gme_keys(text)


def _zone(text: str, name: str) -> timezone:
    return parse_zone(text, name)


def _notify_urls(text: str, name: str) -> tuple[str, ...]:
    urls = _csv(text)
    for item in urls:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name}: {item!r} is not an http(s) URL")
    return urls


def _whsec(text: str, name: str) -> str | None:
    if not text:
        return None
    try:
        decoded = base64.b64decode(text.removeprefix("whsec_") + "==", validate=False)
    except ValueError:
        decoded = b""
    if not decoded:
        raise ConfigError(f"{name}: expected whsec_ followed by base64")
    return text


def _console_secret(text: str, name: str) -> str | None:
    if text and len(text) < 32:
        raise ConfigError(f"{name}: use at least 32 random characters")
    return text or None


def _loudness(text: str, name: str) -> float | None:
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: expected LUFS such as -16 or off, got {text!r}") from None
    if not -70.0 <= value <= -5.0:
        raise ConfigError(f"{name}: must be between -70 and -5 (or off)")
    return value


def _days_or_off(text: str, name: str) -> float | None:
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of days or off, got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"{name}: must be more than 0 days (or off)")
    return value


_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def _language(text: str, name: str) -> str | None:
    """`auto` (None: detected) or a language code."""
    value = text.strip().lower()
    if value == "auto":
        return None
    if not _LANGUAGE.match(value):
        raise ConfigError(f"{name}: expected auto or a code such as ko, ja, zh, en, got {text!r}")
    return value


def _readable(text: str, name: str) -> Path | None:
    """A file the setting names, which must exist (a typo would otherwise do nothing)."""
    path = _optional_path(text, name)
    if path is not None and not path.is_file():
        raise ConfigError(f"{name}: {path} is not a file")
    return path


def _decibels(text: str, name: str) -> float:
    try:
        value = float(text.strip().lower().removesuffix("db"))
    except ValueError:
        raise ConfigError(f"{name}: expected a level in dB such as -40, got {text!r}") from None
    if not -120.0 < value < 0.0:
        raise ConfigError(f"{name}: must be below 0 dB and above -120 dB")
    return value


SECONDS = number()
PATH = Kind(_path, "directory")
TEXT = Kind(_optional_text, "text")
DATABASE_URL = url("sqlite", "postgresql", "postgres")
BROKER_URL = url("filesystem", "redis", "rediss", "amqp", "pyamqp")


# --- The settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    # fmt: off
    # Where state lives
    data_dir: Path = setting(
        "RECPIPE_DATA_DIR", PATH, "./var",
        "where embedded state lives: the SQLite ledger, the broker's files, archive, scratch",
    )
    database_url: str = setting(
        "RECPIPE_DATABASE_URL", DATABASE_URL, "sqlite:///{data_dir}/ledger.sqlite3",
        "the ledger, an SQLAlchemy URL (`postgresql+psycopg://...`, `sqlite:///...`)",
        secret=True,
    )
    broker_url: str = setting(
        "RECPIPE_BROKER_URL", BROKER_URL, "filesystem://",
        "Celery broker (`redis://...`, `amqp://...`); `filesystem://`: files in the data dir",
        secret=True,
    )
    archive_url: str = setting(
        "RECPIPE_ARCHIVE_URL", url("s3", "file", store=True), "{data_dir_uri}/archive",
        "where archives are written: `s3://bucket/prefix` or `file:///dir`",
    )
    scratch_dir: Path = setting(
        "RECPIPE_SCRATCH_DIR", PATH, "{data_dir}/scratch",
        "where runs keep their working files (one directory per run, removed when it ends)",
    )
    # GME
    gme_source_url: str = setting(
        "RECPIPE_GME_SOURCE_URL", url("s3", "file", "https", "http", store=True),
        "{data_dir_uri}/source",
        "where GME `FileName` keys are read: `s3://`, `https://` or `file://`",
    )
    gme_secret_keys: Mapping[int, bytes] = setting(
        "RECPIPE_GME_SECRET_KEYS", Kind(_gme_keys, "`BizID=key` pairs, comma separated", True),
        "", "the GME applications' secret keys; empty: every GME callback is 401",
        secret=True,
    )
    gme_key_scope: bool = setting(
        "RECPIPE_GME_KEY_SCOPE", flag("bizid", "off"), "bizid",
        "`bizid`: a segment's `FileName` must lie under its application's folder"
        " (`<BizID>_...`), else 400; `off`: any safe relative key",
    )
    gme_replay_window_seconds: float = setting(
        "RECPIPE_GME_REPLAY_WINDOW_SECONDS", SECONDS, "0",
        "refuse GME callbacks whose `Timestamp` is further off than this; 0: off"
        " (the vendor retries late)",
    )
    audio_formats: tuple[str, ...] = setting(
        "RECPIPE_AUDIO_FORMATS", formats(AUDIO_FORMATS), "m4a", "GME outputs"
    )
    gme_gaps: str = setting(
        "RECPIPE_GME_GAPS", choice("pad", "join"), "pad",
        "`pad`: a pause between segments longer than RECPIPE_GAP_SECONDS becomes silence"
        " of its length (a track keeps the room's clock); `join`: segments end to end",
    )
    gap_seconds: float = setting(
        "RECPIPE_GAP_SECONDS", SECONDS, "2",
        "shortest pause between segments that counts as one (FileName times have 1 s resolution)",
    )
    gme_time_zone: timezone = setting(
        "RECPIPE_GME_TIME_ZONE", Kind(_zone, "fixed offset: `+08:00`, `-05`, `UTC`"), "+08:00",
        "zone of the times in GME FileNames",
    )
    loudness_lufs: float | None = setting(
        "RECPIPE_LOUDNESS_LUFS", Kind(_loudness, "LUFS, -70 to -5, or `off`"), "-16",
        "integrated loudness (EBU R128) of GME recordings and rooms; `off` keeps levels",
    )
    silence_db: float = setting(
        "RECPIPE_SILENCE_DB", Kind(_decibels, "dB, above -120 and below 0"), "-40",
        "level under which a track counts as silent, for the speech spans",
    )
    fetch_concurrency: int = setting(
        "RECPIPE_FETCH_CONCURRENCY", whole(1), "4", "GME segments downloaded at once"
    )
    # CSS
    css_callback_key: str | None = setting(
        "RECPIPE_CSS_CALLBACK_KEY", TEXT, "",
        "the CSS recording template's callback key; empty: every CSS callback is 401",
        secret=True,
    )
    css_allowed_hosts: tuple[str, ...] = setting(
        "RECPIPE_CSS_ALLOWED_HOSTS", Kind(_hosts, "host patterns, comma separated", True),
        "{appid}.vod2.myqcloud.com",
        "hosts a CSS `video_url` may point at, checked at intake and at every fetch; `{appid}`"
        " is the callback's own appid (one of RECPIPE_CSS_APP_IDS); a literal IP or"
        " `localhost` allows exactly that address, on the port it names or else 80 and 443;"
        " a pattern broader than your own hosts (`*.myqcloud.com`) stops the webhook at start",
    )
    css_app_ids: frozenset[int] = setting(
        "RECPIPE_CSS_APP_IDS", Kind(_app_ids, "APPIDs, comma separated", True), "",
        "the CSS APPIDs whose callbacks are accepted (others: 401), and what `{appid}` in"
        " RECPIPE_CSS_ALLOWED_HOSTS stands for; empty: any appid, and `{appid}` is refused",
    )
    css_allow_broad_hosts: bool = setting(
        "RECPIPE_CSS_ALLOW_BROAD_HOSTS", flag("1", "0"), "0",
        "`1`: start CSS intake with a RECPIPE_CSS_ALLOWED_HOSTS pattern broader than your own"
        " hosts anyway (a replayed callback could then fetch a stranger's file), warning at"
        " every start",
    )
    video_formats: tuple[str, ...] = setting(
        "RECPIPE_VIDEO_FORMATS", formats(VIDEO_FORMATS), "mp4,m4a", "CSS outputs"
    )
    css_join_gap_seconds: float = setting(
        "RECPIPE_CSS_JOIN_GAP_SECONDS", SECONDS, "5",
        "largest gap between the time ranges of two files of one stream that are joined",
    )
    css_max_file_bytes: int = setting(
        "RECPIPE_CSS_MAX_FILE_BYTES", whole(1), str(16 * 1024**3),
        "size cap of one fetched CSS file (an HLS recording counts as one); 16 GiB",
    )
    css_max_hls_segments: int = setting(
        "RECPIPE_CSS_MAX_HLS_SEGMENTS", whole(1), "20000",
        "most segments an HLS playlist may list",
    )
    css_fetch_timeout_seconds: float = setting(
        "RECPIPE_CSS_FETCH_TIMEOUT_SECONDS", number(1), "60",
        "read timeout of a CSS fetch (connect: 10 s)",
    )
    css_fetch_max_seconds: float = setting(
        "RECPIPE_CSS_FETCH_MAX_SECONDS", number(1), "3600",
        "longest download of one CSS file (every part of an HLS recording);"
        " a source that trickles or never ends fails the recording",
    )
    css_ca_bundle: Path | None = setting(
        "RECPIPE_CSS_CA_BUNDLE", Kind(_optional_path, "PEM file"), "",
        "CAs an https `video_url` is checked against instead of the public ones"
        " (an on-premises source); empty: the public CAs",
    )
    # Settling
    settle_seconds: float = setting(
        "RECPIPE_SETTLE_SECONDS", SECONDS, "120",
        "the long window: quiet time before a recording is finalized while a GME segment is"
        " open or a SeqNo missing, and for CSS recordings",
    )
    settle_complete_seconds: float = setting(
        "RECPIPE_SETTLE_COMPLETE_SECONDS", SECONDS, "20",
        "the short window: quiet time before a GME recording whose every segment is"
        " uploaded is finalized",
    )
    max_wait_seconds: float = setting(
        "RECPIPE_MAX_WAIT_SECONDS", SECONDS, "3600",
        "how long after the last event to wait for missing segments",
    )
    sweep_seconds: float = setting(
        "RECPIPE_SWEEP_SECONDS", number(0.5), "10", "how often beat's sweep runs"
    )
    # Runs
    max_body_bytes: int = setting(
        "RECPIPE_MAX_BODY_BYTES", whole(0), str(64 * 1024), "callback body limit (413 above it)"
    )
    stuck_after_seconds: float = setting(
        "RECPIPE_STUCK_AFTER_SECONDS", number(10), "900",
        "a run without a heartbeat this long is taken over",
    )
    task_time_limit_seconds: int = setting(
        "RECPIPE_TASK_TIME_LIMIT", whole(60), str(4 * 3600), "hard limit of one task, seconds"
    )
    store_retry_seconds: float = setting(
        "RECPIPE_STORE_RETRY_SECONDS", SECONDS, "600",
        "how long a run retries while the object store, the network or the ledger fails;"
        " then the recording fails with the reason",
    )
    requeue_after_seconds: float = setting(
        "RECPIPE_REQUEUE_AFTER_SECONDS", number(5), "60",
        "a queued run whose message is gone (the media queue is empty) is handed out again"
        " this long after it was dispatched, at most three times",
    )
    retention_days: float = setting(
        "RECPIPE_RETENTION_DAYS", number(), "30",
        "stored callbacks and delivery attempts of finished work older than this are"
        " deleted hourly; 0 keeps everything",
    )
    media_retention_days: float | None = setting(
        "RECPIPE_MEDIA_RETENTION_DAYS", Kind(_days_or_off, "number of days > 0, or `off`"), "off",
        "archived media of recordings and rooms finished longer ago than this is deleted"
        " hourly (held ones never), each kept as a tombstone; `off` keeps all media",
    )
    # Notifications
    notify_urls: tuple[str, ...] = setting(
        "RECPIPE_NOTIFY_URLS", Kind(_notify_urls, "http(s) URLs, comma separated", True), "",
        "endpoints that get a POST per archived or failed recording",
    )
    notify_secret: str | None = setting(
        "RECPIPE_NOTIFY_SECRET", Kind(_whsec, "`whsec_` + base64"), "",
        "Standard Webhooks secret that signs the notifications; empty: unsigned",
        secret=True,
    )
    notify_max_attempts: int = setting(
        "RECPIPE_NOTIFY_MAX_ATTEMPTS", whole(1), "12", "delivery attempts per notification and URL"
    )
    notify_timeout_seconds: float = setting(
        "RECPIPE_NOTIFY_TIMEOUT_SECONDS", number(0.1), "10",
        "how long one delivery attempt waits for the receiver's answer",
    )
    # Operations
    log_level: str = setting(
        "RECPIPE_LOG_LEVEL", Kind(_log_level, ", ".join(f"`{x}`" for x in LOG_LEVELS)), "INFO",
        "the lowest level logged",
    )
    metrics_host: str = setting(
        "RECPIPE_METRICS_HOST", Kind(_plain_text, "address"), "127.0.0.1",
        "address a worker's Prometheus endpoint listens on",
    )
    metrics_port: int = setting(
        "RECPIPE_METRICS_PORT", Kind(_port, "TCP port, 0 to 65535"), "9808",
        "port of a worker's Prometheus endpoint; 0: none",
    )
    internal_listen: tuple[str, int] | None = setting(
        "RECPIPE_INTERNAL_LISTEN", Kind(_listen, "`host:port` (`[v6]:port`), or `off`"),
        "127.0.0.1:9108",
        "the webhook's internal listener, which alone serves /readyz and /metrics (the public"
        " port answers them 404); `off`: none",
    )
    console_secret: str | None = setting(
        "RECPIPE_CONSOLE_SECRET", Kind(_console_secret, "text, at least 32 characters"), "",
        "signs console sessions; empty: one kept in the data dir, which only the embedded"
        " default (an SQLite ledger) may use",
        secret=True,
    )
    player_key: str | None = setting(
        "RECPIPE_PLAYER_KEY", Kind(_console_secret, "text, at least 32 characters"), "",
        "keys the hash that replaces a forgotten player's UserID (`recpipe forget`); empty:"
        " one kept in the data dir, which only the embedded default (an SQLite ledger) may use",
        secret=True,
    )
    # Transcripts (docs/transcripts.md)
    transcribe: str = setting(
        "RECPIPE_TRANSCRIBE", choice("off", "pocketsphinx", "whisper"), "off",
        "the transcription engine; whisper reads RECPIPE_WHISPER_MODEL, pocketsphinx the"
        " English model its package ships",
    )
    whisper_model: Path | None = setting(
        "RECPIPE_WHISPER_MODEL", Kind(_optional_path, "directory"), "",
        "a local CTranslate2 Whisper model directory; never downloaded",
    )
    whisper_device: str = setting(
        "RECPIPE_WHISPER_DEVICE", choice("cpu", "cuda"), "cpu",
        "where whisper runs: int8 on cpu, int8_float16 on cuda (a transcribe worker on a GPU host)",
    )
    whisper_threads: int = setting(
        "RECPIPE_WHISPER_THREADS", whole(0), "0",
        "CTranslate2 threads per transcribe worker process; 0: its default",
    )
    transcribe_language: str | None = setting(
        "RECPIPE_TRANSCRIBE_LANGUAGE", Kind(_language, "`auto` or a language code"), "auto",
        "`auto` (detected, reported with its probability) or a code such as ko, ja, zh, en",
    )
    flag_words: Path | None = setting(
        "RECPIPE_FLAG_WORDS", Kind(_readable, "file"), "",
        "a UTF-8 file, one word or phrase a line, flagged wherever a transcript has it",
    )
    pocketsphinx_words: Path | None = setting(
        "RECPIPE_POCKETSPHINX_WORDS", Kind(_readable, "file"), "",
        "restricts pocketsphinx to these words (one or more a line), in any order",
    )
    # fmt: on

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return cls(**{item.setting.attr: item.value for item in read(environ)})


@dataclass(frozen=True)
class Effective:
    """One setting as a process sees it: its text, its value, and whether it was set."""

    setting: Setting
    text: str
    value: Any
    given: bool

    def shown(self) -> str:
        """The text, with a secret masked (a URL keeps all but its password) and a
        directory resolved."""
        if isinstance(self.value, Path):
            return str(self.value)
        if not self.setting.secret or not self.text:
            return self.text
        if "://" in self.text:
            parts = urlsplit(self.text)
            if not parts.password:
                return self.text
            netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
        if self.setting.attr == "gme_secret_keys":
            return ",".join(f"{biz}=****" for biz in self.value)
        return "****"


SETTINGS: tuple[Setting, ...] = tuple(
    replace(f.metadata["setting"], attr=f.name) for f in fields(Settings)
)


# What deploy/recpipe.env.example puts where a secret goes: a process started with one left
# in would run on a password everyone can read. Besides the secret settings, boto3 reads
# the store's key from the same environment.
PLACEHOLDER = "change-me"
VENDOR_SECRETS = ("AWS_SECRET_ACCESS_KEY",)


def _refuse_placeholder(name: str, raw: str | None) -> None:
    if raw and PLACEHOLDER in raw.lower():
        raise ConfigError(
            f"{name}: still holds the example's {PLACEHOLDER!r} placeholder; "
            "set a secret of your own"
        )


def read(environ: Mapping[str, str] | None = None) -> Iterator[Effective]:
    """Every setting in definition order, read from `environ` (the process's by default)."""
    env = os.environ if environ is None else environ
    for name in VENDOR_SECRETS:
        _refuse_placeholder(name, env.get(name))
    data_dir: Path | None = None
    for item in SETTINGS:
        raw = env.get(item.env)
        if item.secret:
            _refuse_placeholder(item.env, raw)
        given = raw is not None and (raw.strip() != "" or item.kind.blank_is_value)
        text = raw if given and raw is not None else item.default_text(data_dir)
        value = item.kind.parse(text, item.env)
        if item.attr == "data_dir":
            data_dir = value
        yield Effective(item, text, value, given)


def markdown() -> str:
    """docs/configuration.md: the reference of every setting, generated from `SETTINGS`."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from foundation/config.py by `make docs`"
        " (`recpipe config --markdown`); edit the definitions there, not this file. -->",
        "",
        "Every setting is read from the environment when a process starts; a bad value stops",
        "it with one line naming the variable. An empty value means the default, except for a",
        "list, where it is the empty list. `recpipe config` prints the settings in effect, with",
        "secrets masked. A secret (and boto3's `AWS_SECRET_ACCESS_KEY`) that still holds the",
        "example's `change-me` placeholder stops the process too, naming the variable.",
        "",
        "| variable | meaning | takes | default |",
        "|---|---|---|---|",
    ]
    for item in SETTINGS:
        default = item.default_text(None).replace("{data_dir}", "$RECPIPE_DATA_DIR")
        shown = f"`{default}`" if default else "empty"
        lines.append(f"| `{item.env}` | {item.doc} | {item.kind.takes} | {shown} |")
    lines += [
        "",
        "`s3://` URLs take optional `endpoint_url`, `region` and `profile` query parameters, so",
        "the source (e.g. Tencent COS) and the archive can be different services with",
        "different credentials; without them boto3's standard chain applies",
        "(`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL_S3`, ...).",
        "",
    ]
    return "\n".join(lines)


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


def require_ffmpeg() -> tuple[str, str]:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if not ffmpeg or not ffprobe:
        raise ConfigError("ffmpeg and ffprobe must be on PATH (Debian: apt-get install ffmpeg)")
    return ffmpeg, ffprobe


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_url(name: str, text: str, schemes: tuple[str, ...]) -> None:
    scheme = urlsplit(text).scheme.split("+", 1)[0]
    if scheme not in schemes:
        raise ConfigError(f"{name}: scheme must be one of {', '.join(schemes)}, got {text!r}")


def _check_store_url(name: str, text: str, schemes: tuple[str, ...]) -> None:
    _check_url(name, text, schemes)
    parts = urlsplit(text)
    if parts.scheme == "s3" and not parts.netloc:
        raise ConfigError(f"{name}: s3:// URLs need a bucket (s3://bucket/prefix)")
    if parts.scheme == "s3":
        unknown = set(parse_qs(parts.query)) - {"endpoint_url", "region", "profile"}
        if unknown:
            raise ConfigError(f"{name}: unknown s3 parameter(s) {', '.join(sorted(unknown))}")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ConfigError(f"{name}: {text!r} has no host")
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        raise ConfigError(f"{name}: file:// URLs must be local paths (file:///dir)")
