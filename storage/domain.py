"""Plain values shared by intake and the chains: identities of recordings and events."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

GME_EVENT_STARTED = 1
GME_EVENT_COMPLETED = 2
GME_EVENT_UPLOADED = 3

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class GmeRecordingKey:
    """A recording is one GME task for one (BizID, RoomID, RecordMode, UserID, TaskID)."""

    biz_id: int
    room_id: str
    user_id: str
    task_id: str  # exact decimal text: TaskID exceeds 2**53
    record_mode: int

    @property
    def recording_id(self) -> str:
        identity = json.dumps(
            [self.biz_id, self.room_id, self.user_id, self.task_id, self.record_mode],
            ensure_ascii=False,
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return f"gme-{self.task_id}-{digest}"

    def as_contract(self) -> dict[str, object]:
        return {
            "BizID": self.biz_id,
            "RoomID": self.room_id,
            "UserID": self.user_id,
            "TaskID": self.task_id,
            "RecordMode": self.record_mode,
        }


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
