"""Plain values shared by intake and the chains: identities of recordings and events, and
the object keys a callback may name."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import unquote

GME_EVENT_STARTED = 1
GME_EVENT_COMPLETED = 2
GME_EVENT_UPLOADED = 3

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
MAX_KEY_LENGTH = 1024


@dataclass(frozen=True)
class GmeRecordingKey:
    """A recording is one GME task for one (BizID, RoomID, RecordMode, UserID, TaskID)."""

    biz_id: int
    room_id: str
    user_id: str
    task_id: str  # exact decimal text: TaskID exceeds 2**53
    record_mode: int

    @cached_property  # read several times per callback
    def recording_id(self) -> str:
        identity = json.dumps(
            [self.biz_id, self.room_id, self.user_id, self.task_id, self.record_mode],
            ensure_ascii=False,
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return f"gme-{self.task_id}-{digest}"


@dataclass(frozen=True)
class GmeEvent:
    key: GmeRecordingKey
    event_type: int
    seq_no: int
    file_name: str
    timestamp: int

    @property
    def dedupe_key(self) -> str:
        """Retries of one file event collapse to one key; `Timestamp` is left out on purpose,
        since a retry may be re-stamped."""
        identity = json.dumps(
            ["gme", self.key.recording_id, self.event_type, self.seq_no, self.file_name],
            ensure_ascii=False,
        )
        return hashlib.sha256(identity.encode()).hexdigest()


def slug(text: str, limit: int = 40) -> str:
    """A filesystem- and URL-safe rendering of a vendor identifier, for readable keys."""
    return _UNSAFE.sub("_", text)[:limit].strip("_") or "_"


CSS_EVENT_RECORDING_FILE = 100
CSS_FILE_FORMATS = ("flv", "hls", "mp4", "aac")


@dataclass(frozen=True)
class CssStreamKey:
    """One live stream: the push domain and path are part of it, since the same stream
    name may be pushed to two domains of one account."""

    appid: int
    app: str
    appname: str
    stream_id: str

    @property
    def digest(self) -> str:
        identity = json.dumps(
            [self.appid, self.app, self.appname, self.stream_id], ensure_ascii=False
        )
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def recording_id(self, start_time: int) -> str:
        """Readable and deterministic: the stream, the start of the file that opened the
        run, and a digest of both so that two streams with similar names never collide."""
        digest = hashlib.sha256(f"{self.digest}:{start_time}".encode()).hexdigest()[:12]
        return f"css-{slug(self.stream_id, 40)}-{start_time}-{digest}"


@dataclass(frozen=True)
class CssFileEvent:
    """One CSS recording file (event_type 100); every field but `t`/`sign` is unsigned."""

    stream: CssStreamKey
    file_id: str
    file_format: str
    start_time: int
    end_time: int
    duration: int
    file_size: int | None
    video_url: str
    task_id: str | None
    stream_param: str | None
    callback_ext: dict[str, object] | str | None
    t: int

    @property
    def dedupe_key(self) -> str:
        """The vendor retries one file up to 12 times; its file id names it."""
        identity = json.dumps(["css", self.stream.appid, self.file_id], ensure_ascii=False)
        return hashlib.sha256(identity.encode()).hexdigest()


class UnsafeKeyError(ValueError):
    """An object key that could escape its store's root."""


def has_control_characters(text: str) -> bool:
    """C0 controls or DEL anywhere in `text`."""
    return _CONTROL_CHARACTER.search(text) is not None


def safe_key(key: str) -> str:
    """Return `key` if it is a plain relative object key, else raise UnsafeKeyError."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise UnsafeKeyError("object key is empty or too long")
    if has_control_characters(key):
        raise UnsafeKeyError("object key contains control characters")
    if "\\" in key or key.startswith("/") or ("%" in key and unquote(key) != key):
        raise UnsafeKeyError("object key must be a relative path without escapes")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeKeyError("object key has empty, '.' or '..' segments")
    return key
