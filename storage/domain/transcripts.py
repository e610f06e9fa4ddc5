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
class SearchPage:
    hits: list[SearchHit]
    next: str | None  # the cursor of the page after this one


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


# A flag of a new transcript is the one an operator reviewed when it has the same speaker
# and match and starts this close to it: recognition places a word a little differently
# from one run (or engine, or revision) to the next.
SAME_FLAG_WITHIN_S = 1.0


@dataclass(frozen=True)
class Review:
    """A reviewed flag of a transcript about to be replaced: what it was about, and who
    reviewed it when."""

    speaker: str
    match: str
    start_s: float
    reviewed_at: datetime
    reviewed_by: str | None


def carried_reviews(reviews: list[Review], flags: list[dict[str, Any]]) -> list[Review | None]:
    """For each flag of a new transcript, the review it keeps (None: to be reviewed): a
    review of the same speaker and match (case aside) that started within
    SAME_FLAG_WITHIN_S. Each review is kept by one flag at most, the closest in time."""
    kept: list[Review | None] = [None] * len(flags)
    pairs = sorted(
        (abs(float(flag["start_s"]) - review.start_s), i, j)
        for i, flag in enumerate(flags)
        for j, review in enumerate(reviews)
        if str(flag["speaker"]) == review.speaker
        and str(flag["match"]).casefold() == review.match.casefold()
        and abs(float(flag["start_s"]) - review.start_s) <= SAME_FLAG_WITHIN_S
    )
    used: set[int] = set()
    for _, i, j in pairs:
        if kept[i] is None and j not in used:
            kept[i] = reviews[j]
            used.add(j)
    return kept
