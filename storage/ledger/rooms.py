"""Rooms: the RecordMode 0 recordings of one (BizID, RoomID, TaskID) and the room made of
them. A room is a recording of source `room` (it settles, runs, revisions, notifies and
is reprocessed as recordings are) whose members are kept in `room_members`; the rules
are in `storage.domain.rooms`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from storage.domain import RecordingState, RunState, lifecycle
from storage.domain.rooms import (
    FEWEST_MEMBERS,
    ROOM_SOURCE,
    SINGLE_STREAM,
    Member,
    room_id,
)
from storage.ledger.engine import LedgerBase, aware, upsert
from storage.ledger.recordings import set_status, status_of
from storage.ledger.tables import Recording, RoomMember, Run


def _lock_room(s: Session, rid: str) -> None:
    """Members of one room are noted one at a time. Two users' recordings that end at
    once would otherwise each add themselves, count one member (the other's row not yet
    committed) and leave the room unmade, for good. On PostgreSQL a transaction-scoped
    advisory lock on the room's id; SQLite runs one writing transaction at a time."""
    if s.get_bind().dialect.name == "postgresql":
        key = int(hashlib.sha256(f"room:{rid}".encode()).hexdigest()[:15], 16)
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _member_count(s: Session, rid: str) -> int:
    return len(s.scalars(select(RoomMember.recording_id).where(RoomMember.room_id == rid)).all())


@dataclass(frozen=True)
class RoomSummary:
    """A room as `recpipe status` lists it."""

    id: str
    biz_id: int | None
    room_id: str | None
    task_id: str | None
    state: str
    revision: int
    members: int
    created_at: datetime | None


class Rooms(LedgerBase):
    def note_room_member(
        self, recording_id: str, *, now: datetime, settle_seconds: float
    ) -> str | None:
        """A user's recording finished (archived or failed): record it in its room. When
        the room has two users or more it exists (a new room, or the next revision of
        one: a late user or a member's new revision reopens it). Returns the room's id
        when it collects, so a settle task can be handed out; None otherwise. The same
        news twice changes nothing."""
        with self.session() as s:
            rec = s.get(Recording, recording_id)
            if rec is None or rec.source != "gme" or rec.record_mode != SINGLE_STREAM:
                return None
            if rec.biz_id is None or rec.room_id is None or rec.task_id is None:
                return None
            rid = room_id(rec.biz_id, rec.room_id, rec.task_id)
            _lock_room(s, rid)
            member = s.get(RoomMember, (rid, recording_id))
            changed = member is None or (member.seen_state, member.seen_revision) != (
                rec.state,
                rec.revision,
            )
            if member is None:
                s.execute(
                    upsert(s, RoomMember)
                    .values(
                        room_id=rid,
                        recording_id=recording_id,
                        user_id=rec.user_id or "",
                        seen_state=rec.state,
                        seen_revision=rec.revision,
                        joined_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["room_id", "recording_id"])
                )
            elif changed:
                member.seen_state, member.seen_revision = rec.state, rec.revision
                member.updated_at = now
            if _member_count(s, rid) < FEWEST_MEMBERS:
                return None
            room = s.execute(
                select(Recording).where(Recording.id == rid).with_for_update()
            ).scalar_one_or_none()
            if room is None:
                s.add(
                    Recording(
                        id=rid,
                        source=ROOM_SOURCE,
                        biz_id=rec.biz_id,
                        room_id=rec.room_id,
                        user_id=None,
                        task_id=rec.task_id,
                        record_mode=SINGLE_STREAM,
                        details={},
                        state=RecordingState.COLLECTING,
                        revision=0,
                        pending_changes=False,
                        first_event_at=now,
                        last_event_at=now,
                        settle_due_at=now + timedelta(seconds=settle_seconds),
                        created_at=now,
                        updated_at=now,
                    )
                )
                return rid
            if changed:
                after = lifecycle.event_arrives(
                    status_of(room), new_content=True, now=now, settle_seconds=settle_seconds
                )
                set_status(room, after)
                room.last_event_at = now
                room.updated_at = now
            return rid if room.state == RecordingState.COLLECTING else None

    def room_members(self, rid: str) -> list[Member]:
        """Every RecordMode 0 recording of the room's (BizID, RoomID, TaskID), finished or
        not (one still collecting keeps the room waiting)."""
        with self.session() as s:
            room = s.get(Recording, rid)
            if room is None:
                return []
            return _members(s, room)

    def room_of(self, recording_id: str) -> str | None:
        with self.session() as s:
            return s.scalar(
                select(RoomMember.room_id).where(RoomMember.recording_id == recording_id)
            )

    def last_mixed(self, rid: str) -> list[list[object]] | None:
        """The members (recording id, revision) the room's current archived run mixed."""
        with self.session() as s:
            room = s.get(Recording, rid)
            if room is None or room.current_run_id is None:
                return None
            run = s.get(Run, room.current_run_id)
            if run is None or run.state != RunState.ARCHIVED:
                return None
            mixed = (run.result or {}).get("members_key")
            return [list(x) for x in mixed] if isinstance(mixed, list) else None

    def settle_unchanged(self, rid: str, now: datetime) -> None:
        """The room's members are what its current revision mixed: it is archived again,
        with no new revision."""
        with self.session() as s:
            room = s.execute(
                select(Recording).where(Recording.id == rid).with_for_update()
            ).scalar_one_or_none()
            if room is None or room.state != RecordingState.COLLECTING:
                return
            room.state = RecordingState.ARCHIVED
            room.settle_due_at = None
            room.updated_at = now

    def room(self, rid: str) -> RoomSummary | None:
        """The room of that id; None for an unknown id or a recording that is not a room."""
        with self.session() as s:
            found = s.get(Recording, rid)
            if found is None or found.source != ROOM_SOURCE:
                return None
            return _summary(s, found)

    def recent_rooms(self, limit: int = 20) -> list[RoomSummary]:
        with self.session() as s:
            rooms = s.scalars(
                select(Recording)
                .where(Recording.source == ROOM_SOURCE)
                .order_by(Recording.created_at.desc())
                .limit(limit)
            ).all()
            return [_summary(s, r) for r in rooms]


def _summary(s: Session, room: Recording) -> RoomSummary:
    members = s.scalars(select(RoomMember.recording_id).where(RoomMember.room_id == room.id))
    return RoomSummary(
        room.id,
        room.biz_id,
        room.room_id,
        room.task_id,
        room.state,
        room.revision,
        len(members.all()),
        aware(room.created_at),
    )


def _members(s: Session, room: Recording) -> list[Member]:
    rows = s.scalars(
        select(Recording)
        .where(
            Recording.source == "gme",
            Recording.record_mode == SINGLE_STREAM,
            Recording.biz_id == room.biz_id,
            Recording.room_id == room.room_id,
            Recording.task_id == room.task_id,
        )
        .order_by(Recording.created_at, Recording.id)
    ).all()
    return [
        Member(
            recording_id=r.id,
            user_id=r.user_id or "",
            state=r.state,
            revision=r.revision,
            run_id=r.current_run_id if r.state == RecordingState.ARCHIVED else None,
        )
        for r in rows
    ]
