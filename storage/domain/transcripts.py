"""Transcripts as the ledger hands them out: a run's transcript, a search hit, a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class TranscriptState:
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    PENDING = (QUEUED, RUNNING)
    DONE = (READY, FAILED)


@dataclass(frozen=True)
class TranscriptView:
    run_id: str
    recording_id: str
    revision: int
    state: str
    attempts: int
    engine: str | None = None
    language: str | None = None
    json_url: str | None = None
    vtt_url: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class TranscriptLineView:
    """A segment of a recording's current transcript, as stored for search."""

    speaker: str
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class SearchHit:
    recording_id: str
    source: str
    speaker: str
    start_s: float
    end_s: float
    text: str
    # The room the recording is in, and where the hit is on the room's clock.
    room_id: str | None = None
    room_start_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "source": self.source,
            "speaker": self.speaker,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "text": self.text,
            "room_id": self.room_id,
            "room_start_s": self.room_start_s,
        }


@dataclass(frozen=True)
class FlagView:
    id: int
    recording_id: str
    speaker: str
    start_s: float
    end_s: float
    match: str
    text: str
    created_at: datetime
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "recording_id": self.recording_id,
            "speaker": self.speaker,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "match": self.match,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
            "reviewed_at": self.reviewed_at.isoformat() if self.reviewed_at else None,
            "reviewed_by": self.reviewed_by,
        }


def like_pattern(query: str) -> str:
    """`query` anywhere, with LIKE's wildcards taken literally (escape character `\\`)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fts_phrase(query: str) -> str:
    """`query` as one FTS5 string (a phrase): its own quotes doubled."""
    return '"' + query.replace('"', '""') + '"'
