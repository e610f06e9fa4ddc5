"""A player's erasure in the ledger: the erasure and its items (written before anything is
deleted), each recording made a tombstone with its personal fields replaced by the
player's keyed hash, each room reopened for a revision without them, and the rows changed
counted per table. The rules of the text (how a UserID is taken out) are in
`storage.domain.players`; what is deleted from the archive is the caller's
(`tasks.forgetting`).

The UserID itself is never stored by an erasure. Each step that needs it reads it from a
row that still holds it in clear (the recording's own row, or the room's member row) and
replaces it there in the same transaction, so a crash leaves either the row in clear (the
step runs again) or everything of that step done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, or_, select, text
from sqlalchemy.orm import Session

from storage.domain import RecordingState, RunState, lifecycle
from storage.domain.players import (
    ErasureState,
    ErasureView,
    ItemKind,
    ItemState,
    add_rows,
    scrub_json_text,
    scrub_text,
    scrub_value,
    spellings,
)
from storage.domain.rooms import ROOM_SOURCE
from storage.ledger.engine import LedgerBase
from storage.ledger.notifications import insert_notifications
from storage.ledger.players import erasure_view
from storage.ledger.recordings import set_status, status_of
from storage.ledger.tables import (
    AuditEntry,
    Callback,
    DeliveryAttempt,
    Erasure,
    ErasureItem,
    Hold,
    Notification,
    Recording,
    RoomMember,
    Run,
    Segment,
    Transcript,
    TranscriptFlag,
    TranscriptLine,
)

FORGOTTEN_ERROR = "the recording was forgotten before this run started"


class Counter:
    """Rows changed per table, in one transaction."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def add(self, table: str, n: int = 1) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n


def _set(row: Any, attr: str, value: Any, counter: Counter, table: str, seen: set[int]) -> None:
    """Set a column when the value changes, counting the row once per table."""
    if getattr(row, attr) == value:
        return
    setattr(row, attr, value)
    if id(row) not in seen:
        seen.add(id(row))
        counter.add(table)


def _scrub_runs(
    s: Session, run_ids: Sequence[str], uid: str, player: str, c: Counter, *, shared: bool
) -> None:
    """Runs, their notifications and delivery attempts, and their transcripts: the UserID
    replaced; in a transcript the player's own segments go. `shared`: a room's, whose JSON
    also holds other players' (a value that is the UserID whole is replaced, no part of
    another)."""
    if not run_ids:
        return
    seen: set[int] = set()
    for run in s.scalars(select(Run).where(Run.id.in_(run_ids))):
        result = scrub_value(run.result or {}, uid, player, exact=shared)
        _set(run, "result", result, c, "runs", seen)
        _set(run, "steps", _scrub_steps(run.steps or [], uid, player, shared), c, "runs", seen)
        if run.error:
            _set(run, "error", scrub_text(run.error, uid, player), c, "runs", seen)
        if run.manifest_url:
            _set(run, "manifest_url", scrub_text(run.manifest_url, uid, player), c, "runs", seen)
    notes = list(s.scalars(select(Notification).where(Notification.run_id.in_(run_ids))))
    for note in notes:
        body = scrub_json_text(note.body, uid, player, exact=shared)
        _set(note, "body", body, c, "notifications", seen)
        if note.last_error:
            error = scrub_text(note.last_error, uid, player)
            _set(note, "last_error", error, c, "notifications", seen)
    _scrub_attempts(s, [n.id for n in notes], uid, player, c)
    for t in s.scalars(select(Transcript).where(Transcript.run_id.in_(run_ids))):
        document = _without_speaker(t.document or {}, uid, player, exact=shared)
        _set(t, "document", document, c, "transcripts", seen)
        summary = scrub_value(t.summary or {}, uid, player, exact=shared)
        _set(t, "summary", summary, c, "transcripts", seen)
        for attr in ("json_url", "vtt_url", "error"):
            if getattr(t, attr):
                _set(t, attr, scrub_text(getattr(t, attr), uid, player), c, "transcripts", seen)


def _scrub_steps(steps: list[Any], uid: str, player: str, shared: bool) -> list[Any]:
    """A run's steps; a room's keep their times and names, and lose the UserID where an
    error names it."""
    if not shared:
        return list(scrub_value(steps, uid, player))
    return [
        {**step, "error": scrub_text(step["error"], uid, player)}
        if isinstance(step, dict) and isinstance(step.get("error"), str)
        else step
        for step in steps
    ]


def _scrub_attempts(
    s: Session, notification_ids: Sequence[int], uid: str, player: str, c: Counter
) -> None:
    if not notification_ids:
        return
    pattern = _like(uid)
    seen: set[int] = set()
    for a in s.scalars(
        select(DeliveryAttempt).where(
            DeliveryAttempt.notification_id.in_(notification_ids), pattern(DeliveryAttempt.error)
        )
    ):
        _set(a, "error", scrub_text(a.error or "", uid, player), c, "delivery_attempts", seen)


def _like(uid: str) -> Any:
    """A WHERE clause: the column holds one of the UserID's spellings."""
    forms = spellings(uid)

    def clause(column: Any) -> Any:
        text = cast(column, String)
        return or_(*(text.contains(form, autoescape=True) for form in forms))

    return clause


def _without_speaker(
    document: dict[str, Any], uid: str, player: str, *, exact: bool
) -> dict[str, Any]:
    """A transcript document without the player's segments and flags (a room's merges its
    users'), and the UserID replaced in what is left."""
    doc = dict(document)
    for part in ("segments", "flags"):
        if isinstance(doc.get(part), list):
            doc[part] = [
                x for x in doc[part] if not (isinstance(x, dict) and x.get("speaker") == uid)
            ]
    return dict(scrub_value(doc, uid, player, exact=exact))


def _scrub_audit(
    s: Session, uid: str, player: str, c: Counter, recording_ids: Iterable[str]
) -> None:
    """Audit entries about these recordings, or anywhere naming the UserID."""
    pattern = _like(uid)
    seen: set[int] = set()
    for e in s.scalars(
        select(AuditEntry).where(
            or_(
                AuditEntry.recording_id.in_(list(recording_ids)),
                pattern(AuditEntry.target),
                pattern(AuditEntry.detail),
            )
        )
    ):
        if e.target:
            _set(e, "target", scrub_text(e.target, uid, player), c, "audit_entries", seen)
        _set(e, "detail", scrub_value(e.detail or {}, uid, player), c, "audit_entries", seen)


def _lock_player(s: Session, player: str) -> None:
    """One request for a player at a time, so two at once make one erasure: on PostgreSQL
    a transaction-scoped advisory lock on the player's hash (SQLite runs one writing
    transaction at a time)."""
    if s.get_bind().dialect.name == "postgresql":
        key = int(hashlib.sha256(f"player:{player}".encode()).hexdigest()[:15], 16)
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


class Erasures(LedgerBase):
    # -- the erasure and its items ---------------------------------------------------------

    def begin_erasure(
        self,
        player: str,
        biz_id: int,
        actor: str,
        now: datetime,
        *,
        own: Sequence[str],
        rooms: Sequence[str],
        held: Mapping[str, str],
    ) -> ErasureView:
        """The player's erasure, with these recordings and rooms among its items: the
        standing one (an item it has keeps its state; new ones are added), or a new one.
        Audited (actor, the player's hash, the counts), never with the UserID."""
        with self.session() as s:
            _lock_player(s, player)
            erasure = s.scalars(
                select(Erasure)
                .where(Erasure.player == player)
                .order_by(Erasure.requested_at.desc(), Erasure.id.desc())
                .limit(1)
                .with_for_update()
            ).first()
            if erasure is None:
                erasure = Erasure(
                    player=player,
                    biz_id=biz_id,
                    state=ErasureState.RUNNING,
                    requested_by=actor,
                    requested_at=now,
                    updated_at=now,
                    report={"round": 1},
                )
                s.add(erasure)
                s.flush()
            known = set(
                s.scalars(
                    select(ErasureItem.recording_id).where(ErasureItem.erasure_id == erasure.id)
                )
            )
            added = 0
            for kind, ids in ((ItemKind.OWN, own), (ItemKind.ROOM, rooms)):
                for rid in ids:
                    if rid in known:
                        continue
                    state = ItemState.HELD if rid in held else ItemState.PENDING
                    s.add(
                        ErasureItem(
                            erasure_id=erasure.id,
                            recording_id=rid,
                            kind=kind,
                            state=state,
                            base_revision=0,
                            objects=0,
                            updated_at=now,
                        )
                    )
                    known.add(rid)
                    added += 1
            if added and erasure.state == ErasureState.DONE:
                # The player recorded again since: the same erasure takes the new items.
                report = dict(erasure.report or {})
                report["round"] = int(report.get("round") or 1) + 1
                erasure.report = report
                erasure.finished_at = None
            if added or erasure.state != ErasureState.DONE:
                erasure.state = ErasureState.RUNNING
            erasure.updated_at = now
            s.add(
                AuditEntry(
                    at=now,
                    actor=actor,
                    action="forget",
                    recording_id=None,
                    target=player,
                    detail={
                        "BizID": biz_id,
                        "erasure": erasure.id,
                        "recordings": len(own),
                        "rooms": len(rooms),
                        "held": len(held),
                    },
                )
            )
            s.flush()
            return erasure_view(s, erasure)

    def set_erasure_item(
        self,
        erasure_id: int,
        recording_id: str,
        state: str,
        now: datetime,
        *,
        objects: int = 0,
        base_revision: int | None = None,
    ) -> None:
        with self.session() as s:
            item = s.get(ErasureItem, (erasure_id, recording_id), with_for_update=True)
            if item is None:
                return
            item.state = state
            item.objects = (item.objects or 0) + objects
            if base_revision is not None:
                item.base_revision = base_revision
            item.updated_at = now

    def end_erasure_pass(
        self, erasure_id: int, state: str, report: dict[str, Any], now: datetime
    ) -> ErasureView | None:
        """Record how the erasure stands after a pass, and its report. Passes may overlap
        (the command's, and the sweep's task handed the erasure meanwhile): the rooms one
        pass remixed or deleted stay in the report whatever another, which began before it
        and ends after it, read then."""
        with self.session() as s:
            erasure = s.get(Erasure, erasure_id, with_for_update=True)
            if erasure is None:
                return None
            erasure.state = state
            before = erasure.report or {}
            merged = {**before, **report}
            for key in ("rooms_remixed", "rooms_deleted"):
                rooms = set(before.get(key) or ()) | set(report.get(key) or ())
                merged[key] = sorted(rooms)
            erasure.report = merged
            erasure.updated_at = now
            if state == ErasureState.DONE and erasure.finished_at is None:
                erasure.finished_at = now
            s.flush()
            return erasure_view(s, erasure)

    def unfinished_erasures(self, limit: int = 100) -> list[int]:
        """Erasures with something to do: running ones, and waiting ones with an item no
        longer on hold (released), oldest first."""
        with self.session() as s:
            released = (
                select(ErasureItem.erasure_id)
                .outerjoin(Hold, Hold.recording_id == ErasureItem.recording_id)
                .where(ErasureItem.state == ItemState.HELD, Hold.recording_id.is_(None))
            )
            return list(
                s.scalars(
                    select(Erasure.id)
                    .where(
                        or_(
                            Erasure.state == ErasureState.RUNNING,
                            (Erasure.state == ErasureState.WAITING) & Erasure.id.in_(released),
                        )
                    )
                    .order_by(Erasure.requested_at)
                    .limit(limit)
                )
            )

    def erasures_remixing(self, room_id: str) -> list[int]:
        """Erasures waiting for this room's revision without their player."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(ErasureItem.erasure_id).where(
                        ErasureItem.recording_id == room_id,
                        ErasureItem.state == ItemState.REMIXING,
                    )
                )
            )

    def user_in_clear(self, recording_id: str, player: str) -> str | None:
        """The recording's UserID while it is not yet replaced by the player's hash."""
        with self.session() as s:
            found = s.scalar(select(Recording.user_id).where(Recording.id == recording_id))
            return found if found and found != player else None

    # -- a recording of the player -----------------------------------------------------------

    def forget_recording(
        self, recording_id: str, player: str, now: datetime, *, user_id: str | None = None
    ) -> dict[str, int] | None:
        """Make one of the player's recordings a tombstone (`forgotten`) and replace their
        UserID by `player` in every row of it: the recording, its segments, callbacks, runs,
        notifications and their attempts, transcripts (its lines and flags deleted), its
        member rows in rooms not on hold, and the audit trail. A queued run of it fails.
        On the locked row, so a hold placed meanwhile keeps it: None when held. The rows
        changed per table (nothing when it was done before)."""
        with self.session() as s:
            rec = s.get(Recording, recording_id, with_for_update=True)
            if rec is None:
                return {}
            if s.get(Hold, recording_id) is not None:
                return None
            c = Counter()
            uid = user_id or (rec.user_id if rec.user_id and rec.user_id != player else None)
            if rec.state != RecordingState.FORGOTTEN:
                rec.state = RecordingState.FORGOTTEN
                rec.tombstoned_at = rec.tombstoned_at or now
                rec.media_purged_at = None
                rec.settle_due_at = None
                rec.pending_changes = False
                rec.error = None
                rec.updated_at = now
                c.add("recordings")
                queued = s.scalars(
                    select(Run).where(
                        Run.recording_id == recording_id, Run.state == RunState.QUEUED
                    )
                ).all()
                for run in queued:
                    run.state, run.error, run.finished_at = RunState.FAILED, FORGOTTEN_ERROR, now
                    run.notified_at = now  # a forgotten recording's end is not notified
                c.add("runs", len(queued))
            if uid is None:
                return add_rows(c.rows)
            seen: set[int] = set()
            _set(rec, "user_id", player, c, "recordings", seen)
            _set(rec, "details", scrub_value(rec.details or {}, uid, player), c, "recordings", seen)
            for seg in s.scalars(select(Segment).where(Segment.recording_id == recording_id)):
                _set(seg, "file_name", scrub_text(seg.file_name, uid, player), c, "segments", seen)
            for cb in s.scalars(select(Callback).where(Callback.recording_id == recording_id)):
                _set(cb, "body", scrub_json_text(cb.body, uid, player), c, "callbacks", seen)
                headers = scrub_value(cb.headers or {}, uid, player)
                _set(cb, "headers", headers, c, "callbacks", seen)
            run_ids = list(s.scalars(select(Run.id).where(Run.recording_id == recording_id)))
            _scrub_runs(s, run_ids, uid, player, c, shared=False)
            c.add(
                "transcript_lines",
                s.execute(
                    delete(TranscriptLine).where(TranscriptLine.recording_id == recording_id)
                ).rowcount  # type: ignore[attr-defined]
                or 0,
            )
            c.add(
                "transcript_flags",
                s.execute(
                    delete(TranscriptFlag).where(TranscriptFlag.recording_id == recording_id)
                ).rowcount  # type: ignore[attr-defined]
                or 0,
            )
            for t in s.scalars(select(Transcript).where(Transcript.recording_id == recording_id)):
                # Their own transcript is their speech: none of it is kept.
                _set(t, "document", {}, c, "transcripts", seen)
            # Its member rows of a room that exists are the room's step (`forget_in_room`),
            # which reads the UserID from them; those of a room never made go now.
            members = list(
                s.scalars(select(RoomMember).where(RoomMember.recording_id == recording_id))
            )
            made = [m.room_id for m in members]
            rooms = set(s.scalars(select(Recording.id).where(Recording.id.in_(made))))
            for m in members:
                if m.room_id not in rooms:
                    _set(m, "user_id", player, c, "room_members", seen)
            _scrub_audit(s, uid, player, c, [recording_id])
            return add_rows(c.rows)

    def scrub_late_callbacks(self, limit: int = 500) -> dict[str, int]:
        """Callbacks that arrived for a forgotten recording after it was forgotten (a vendor
        retry of a new event, which changes nothing else): the UserID they carry is
        replaced by the hash the recording holds, in them and in the segments they named."""
        c = Counter()
        with self.session() as s:
            rows = s.execute(
                select(Callback, Recording)
                .join(Recording, Recording.id == Callback.recording_id)
                .where(
                    Recording.state == RecordingState.FORGOTTEN,
                    Recording.source == "gme",
                    Callback.received_at >= Recording.tombstoned_at,
                    # Not yet hashed: a hashed body holds the hash the recording holds.
                    ~Callback.body.contains(func.coalesce(Recording.user_id, "")),
                )
                .order_by(Callback.id)
                .limit(limit)
            ).all()
            seen: set[int] = set()
            for cb, rec in rows:
                uid = _user_in_body(cb.body)
                player = rec.user_id or ""
                if not uid or not player or uid == player:
                    continue
                _set(cb, "body", scrub_json_text(cb.body, uid, player), c, "callbacks", seen)
                headers = scrub_value(cb.headers or {}, uid, player)
                _set(cb, "headers", headers, c, "callbacks", seen)
                for seg in s.scalars(select(Segment).where(Segment.recording_id == rec.id)):
                    name = scrub_text(seg.file_name, uid, player)
                    _set(seg, "file_name", name, c, "segments", seen)
        return add_rows(c.rows)

    # -- a room they were in -------------------------------------------------------------

    def forget_in_room(
        self,
        room_id: str,
        forgotten: Sequence[str],
        player: str,
        now: datetime,
        settle_seconds: float,
        *,
        user_id: str | None = None,
    ) -> tuple[str, int, dict[str, int]] | None:
        """Take the forgotten recordings' user out of a room's rows (its runs'
        participants, notifications, transcripts; their lines and flags deleted; the member
        rows), then either ask for its next revision without them (`remix`: the room
        collects again) or, when no other member is left to mix, make it a tombstone
        (`delete`), or leave a tombstone as it is (`gone`). Returns (what, the room's
        revision before, rows changed); None when the room is held."""
        with self.session() as s:
            room = s.get(Recording, room_id, with_for_update=True)
            if room is None or room.source != ROOM_SOURCE:
                return ("gone", 0, {})
            if s.get(Hold, room_id) is not None:
                return None
            c = Counter()
            seen: set[int] = set()
            members = list(
                s.scalars(
                    select(RoomMember).where(
                        RoomMember.room_id == room_id, RoomMember.recording_id.in_(forgotten)
                    )
                )
            )
            # The player's own recordings were forgotten first, which hashed these member
            # rows already: their UserID is read from the room's runs too (the sources
            # each revision mixed), and is the one asked for when it is at hand.
            run_ids = list(s.scalars(select(Run.id).where(Run.recording_id == room_id)))
            uids = {m.user_id for m in members if m.user_id}
            uids.add(user_id or "")
            for result in s.scalars(select(Run.result).where(Run.id.in_(run_ids))):
                uids |= _users_of(result, set(forgotten))
            uids -= {"", player}
            for uid in uids:
                _scrub_runs(s, run_ids, uid, player, c, shared=True)
                for table in (TranscriptLine, TranscriptFlag):
                    gone = s.execute(
                        delete(table).where(
                            table.recording_id == room_id, table.speaker.in_([uid, player])
                        )
                    ).rowcount  # type: ignore[attr-defined]
                    c.add(table.__tablename__, gone or 0)
                _scrub_audit(s, uid, player, c, [room_id])
            for m in members:
                _set(m, "user_id", player, c, "room_members", seen)
            revision = room.revision
            if room.state in RecordingState.TOMBSTONES:
                return ("gone", revision, add_rows(c.rows))
            others = s.scalars(
                select(Recording.state).where(
                    Recording.source == "gme",
                    Recording.record_mode == room.record_mode,
                    Recording.biz_id == room.biz_id,
                    Recording.room_id == room.room_id,
                    Recording.task_id == room.task_id,
                    Recording.id.not_in(list(forgotten)),
                    Recording.state.not_in(RecordingState.TOMBSTONES),
                )
            ).all()
            if not others:
                room.state = RecordingState.FORGOTTEN
                room.tombstoned_at = room.tombstoned_at or now
                room.media_purged_at = None
                room.settle_due_at = None
                room.pending_changes = False
                room.updated_at = now
                c.add("recordings")
                return ("delete", revision, add_rows(c.rows))
            self._reopen_room(room, now, settle_seconds)
            c.add("recordings")
            return ("remix", revision, add_rows(c.rows))

    @staticmethod
    def _reopen_room(room: Recording, now: datetime, settle_seconds: float) -> None:
        after = lifecycle.event_arrives(
            status_of(room), new_content=True, now=now, settle_seconds=settle_seconds
        )
        set_status(room, after, now)
        room.last_event_at = now
        room.updated_at = now

    def room_remix(
        self,
        room_id: str,
        base_revision: int,
        forgotten: Sequence[str],
        now: datetime,
        settle_seconds: float,
    ) -> str:
        """How a room's revision without the forgotten recordings stands: `done` (archived,
        without them), `failed` (its run failed: nothing of the room can be mixed),
        `again` (a revision that still mixed one of them, made while the erasure began:
        the room collects once more) or `wait`."""
        with self.session() as s:
            room = s.get(Recording, room_id, with_for_update=True)
            if room is None or room.state in RecordingState.TOMBSTONES:
                return "done"
            if (
                room.state not in RecordingState.TERMINAL
                or room.pending_changes
                or room.revision <= base_revision
                or room.current_run_id is None
            ):
                return "wait"
            run = s.get(Run, room.current_run_id)
            if run is None or run.state != RunState.ARCHIVED:
                return "failed"
            mixed = {str(x[0]) for x in (run.result or {}).get("members_key") or []}
            if mixed & set(forgotten):
                self._reopen_room(room, now, settle_seconds)
                return "again"
            return "done"

    # -- notifications and counts -------------------------------------------------------------

    def create_erasure_notifications(
        self,
        erasure_id: int,
        event_type: str,
        webhook_id: str,
        body: str,
        urls: Sequence[str],
        now: datetime,
    ) -> list[int]:
        """One pending notification per URL about the erasure (no run): ids of those this
        call made (one that exists already is not made twice)."""
        with self.session() as s:
            return insert_notifications(
                s,
                dict(
                    run_id=None,
                    erasure_id=erasure_id,
                    event_type=event_type,
                    webhook_id=webhook_id,
                    body=body,
                ),
                urls,
                now,
                once_per=["erasure_id", "url", "webhook_id"],
            )

    def count_player_rows(
        self, user_id: str, own: Sequence[str], rooms: Sequence[str]
    ) -> dict[str, int]:
        """Rows a forget would change per table (a dry run's): those of the recordings
        and of the rooms' runs that hold the UserID, and their lines and flags."""
        counts = Counter()
        pattern = _like(user_id)
        ids = list(own) + list(rooms)
        with self.session() as s:

            def count(table: Any, *where: Any) -> int:
                return int(s.scalar(select(func.count()).select_from(table).where(*where)) or 0)

            counts.add("recordings", count(Recording, Recording.id.in_(ids)))
            counts.add("segments", count(Segment, Segment.recording_id.in_(own)))
            counts.add("callbacks", count(Callback, Callback.recording_id.in_(own)))
            counts.add("runs", count(Run, Run.recording_id.in_(ids)))
            run_ids = select(Run.id).where(Run.recording_id.in_(ids))
            notes = select(Notification.id).where(Notification.run_id.in_(run_ids))
            counts.add("notifications", count(Notification, Notification.id.in_(notes)))
            counts.add(
                "delivery_attempts",
                count(
                    DeliveryAttempt,
                    DeliveryAttempt.notification_id.in_(notes),
                    pattern(DeliveryAttempt.error),
                ),
            )
            counts.add("transcripts", count(Transcript, Transcript.recording_id.in_(ids)))
            counts.add(
                "transcript_lines", count(TranscriptLine, TranscriptLine.recording_id.in_(own))
            )
            counts.add(
                "transcript_flags", count(TranscriptFlag, TranscriptFlag.recording_id.in_(own))
            )
            counts.add(
                "transcript_lines",
                count(
                    TranscriptLine,
                    TranscriptLine.recording_id.in_(list(rooms)),
                    TranscriptLine.speaker == user_id,
                ),
            )
            counts.add("room_members", count(RoomMember, RoomMember.recording_id.in_(own)))
            counts.add(
                "audit_entries",
                count(
                    AuditEntry,
                    or_(
                        AuditEntry.recording_id.in_(ids),
                        pattern(AuditEntry.target),
                        pattern(AuditEntry.detail),
                    ),
                ),
            )
        return add_rows(counts.rows)

    def runs_under_way(self, recording_id: str) -> bool:
        """A run of the recording is queued or running (its end may write the archive)."""
        with self.session() as s:
            found = s.scalar(
                select(func.count())
                .select_from(Run)
                .where(
                    Run.recording_id == recording_id,
                    Run.state.in_((RunState.QUEUED, RunState.RUNNING)),
                )
            )
            return bool(found)


def _users_of(value: Any, recordings: set[str]) -> set[str]:
    """The UserIDs that a run's result (any JSON) gives the recordings: each object with
    one of them as `recording_id` and a `UserID`."""
    found: set[str] = set()
    if isinstance(value, dict):
        user = value.get("UserID")
        if value.get("recording_id") in recordings and isinstance(user, str):
            found.add(user)
        for item in value.values():
            found |= _users_of(item, recordings)
    elif isinstance(value, list):
        for item in value:
            found |= _users_of(item, recordings)
    return found


def _user_in_body(body: str) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    user = parsed.get("UserID") if isinstance(parsed, dict) else None
    return user if isinstance(user, str) else None
