"""Where each segment of a GME recording sits on the room's clock.

GME cuts a single-stream user's recording into a new segment at every mute/unmute and
reconnect, and the start of each segment is written into its FileName, to the second
(docs/reference.md, "Callbacks"). Placing every segment by that time, and filling the pauses with
silence, keeps the track on the room's clock.

Pure: SeqNos, FileNames and measured durations in, a `Timeline` out.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

PAUSE = "pause"
MISSING = "missing"

# The part of a FileName before the TaskID: `2023-02-09-16-16-45_446946705284000000_...`.
_START = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})_")
# A task lasts at most 24 h, so a pause longer than that is a wrong time, not a pause.
LONGEST_PAUSE_S = 24 * 3600.0
# FileName times have 1 s resolution: a missing segment shorter than that cannot be told.
TIME_RESOLUTION_S = 1.0


def segment_start(file_name: str, zone: timezone) -> datetime | None:
    """When the segment began, from its FileName; None when the name carries no time."""
    match = _START.match(posixpath.basename(file_name))
    if not match:
        return None
    try:
        return datetime.strptime(match.group(0)[:-1], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=zone)
    except ValueError:  # 2023-02-30 and the like
        return None


@dataclass(frozen=True)
class SegmentPiece:
    """A segment as placement needs it: its number, its name and its measured length."""

    seq_no: int
    file_name: str
    duration_s: float


@dataclass(frozen=True)
class Placed:
    seq_no: int
    offset_s: float
    duration_s: float

    def as_json(self) -> dict[str, object]:
        return {
            "seq_no": self.seq_no,
            "offset_s": round(self.offset_s, 3),
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True)
class Gap:
    start_s: float
    duration_s: float
    reason: str  # PAUSE or MISSING

    def as_json(self) -> dict[str, object]:
        return {
            "start_s": round(self.start_s, 3),
            "duration_s": round(self.duration_s, 3),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Timeline:
    segments: tuple[Placed, ...]
    gaps: tuple[Gap, ...]
    # The absolute time of offset 0 (the first segment's start), when a name told it.
    starts_at: datetime | None = None

    @property
    def duration_s(self) -> float:
        return max((p.offset_s + p.duration_s for p in self.segments), default=0.0)

    def gap_after(self, seq_no: int) -> float:
        """Seconds of silence between this segment's end and the next one's start."""
        ordered = list(self.segments)
        for i, placed in enumerate(ordered[:-1]):
            if placed.seq_no == seq_no:
                return max(0.0, ordered[i + 1].offset_s - placed.offset_s - placed.duration_s)
        return 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "timeline": [p.as_json() for p in self.segments],
            "gaps": [g.as_json() for g in self.gaps],
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
        }


def place(
    pieces: Sequence[SegmentPiece],
    *,
    zone: timezone,
    gap_seconds: float = 2.0,
    pad: bool = True,
) -> Timeline:
    """Place the segments on one clock, in SeqNo order.

    A segment follows the previous one back to back unless its FileName says it began
    more than `gap_seconds` after the previous one ended on the clock; with `pad` that
    pause becomes a gap of silence of its length, so the track keeps the room's clock
    (the clock is the first timed segment's start, so pauses under `gap_seconds` that
    were joined are caught up at the next longer one). A pause over a SeqNo that never
    arrived is a `missing` gap, counted from the time resolution of the names (1 s) up.
    A time that contradicts the ones before it (a start before the previous end, equal
    times, a pause longer than a task can last) or a name without a time never moves
    audio backwards or drops it: that segment follows the previous one. Without `pad`
    every segment follows the previous one (the segments joined end to end).
    """
    ordered = sorted(pieces, key=lambda p: p.seq_no)
    placed: list[Placed] = []
    gaps: list[Gap] = []
    cursor = 0.0  # the end of the previous segment on the track
    origin: datetime | None = None  # the absolute time of track position 0
    previous_seq: int | None = None
    for piece in ordered:
        start = segment_start(piece.file_name, zone)
        offset = cursor
        if start is not None and origin is None:
            origin = start - timedelta(seconds=cursor)
        elif start is not None and origin is not None and pad:
            wanted = (start - origin).total_seconds()
            pause = wanted - cursor
            lost = previous_seq is not None and piece.seq_no - previous_seq > 1
            shortest = TIME_RESOLUTION_S if lost else gap_seconds
            if shortest < pause <= LONGEST_PAUSE_S:
                gaps.append(Gap(cursor, pause, MISSING if lost else PAUSE))
                offset = wanted
        placed.append(Placed(piece.seq_no, offset, piece.duration_s))
        cursor = offset + piece.duration_s
        previous_seq = piece.seq_no
    return Timeline(tuple(placed), tuple(gaps), origin)
