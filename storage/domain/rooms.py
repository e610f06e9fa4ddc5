"""Rooms: the single-stream (RecordMode 0) recordings of one (BizID, RoomID, TaskID), one
per user, mixed on one clock once every one of them is finished.

A room is kept in the ledger as a recording of source `room` (so it settles, runs,
revisions, notifies and is reprocessed like any other), plus its members. These are its
rules, as plain functions of plain values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

ROOM_SOURCE = "room"
# RecordMode 0: one recording per user; only those make rooms.
SINGLE_STREAM = 0
# A room is two users or more.
FEWEST_MEMBERS = 2


def room_id(biz_id: int, room: str, task_id: str) -> str:
    """Deterministic, like a recording's id: `room-<TaskID>-<12 hex digits>`."""
    digest = hashlib.sha256(f"{biz_id}\x1f{room}\x1f{task_id}".encode()).hexdigest()[:12]
    return f"room-{task_id}-{digest}"


@dataclass(frozen=True)
class Member:
    """One user's recording in a room, as the room reads it."""

    recording_id: str
    user_id: str
    state: str
    revision: int
    # The run whose outputs a mix uses (the recording's current run when archived).
    run_id: str | None = None


def sources_key(members: Sequence[Member]) -> list[list[object]]:
    """What a room revision is made of: each archived member's recording and revision.
    The same key again needs no new revision."""
    return sorted([m.recording_id, m.revision] for m in members)


def offsets(starts: Sequence[datetime | None]) -> list[float]:
    """Each track's start relative to the earliest (a track whose names told no time
    starts with the room)."""
    known = [s for s in starts if s is not None]
    if not known:
        return [0.0 for _ in starts]
    first = min(known)
    return [round((s - first).total_seconds(), 3) if s else 0.0 for s in starts]
