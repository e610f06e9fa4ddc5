"""Recordings: reading one, settling (postpone, recovered segments, fail) and claiming a
collecting recording for a run."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.domain import (
    CssFileView,
    RecordingState,
    RecordingView,
    RunState,
    SegmentState,
    SegmentView,
    lifecycle,
)
from storage.domain.lifecycle import RecordingStatus
from storage.domain.rooms import ROOM_SOURCE
from storage.ledger.engine import LedgerBase, aware, upsert, utcnow
from storage.ledger.tables import CssFile, Recording, Run, Segment


class Recordings(LedgerBase):
    def recording(self, recording_id: str) -> RecordingView | None:
        with self.session() as s:
            recording = s.get(Recording, recording_id)
            if recording is None:
                return None
            return recording_view(s, recording)

    def postpone(self, recording_id: str, until: datetime, *, seen_due: datetime | None) -> bool:
        """A settle look that must wait moves the recording's settle time to `until`,
        unless an event moved it since the look read it (`seen_due`): that event's settle
        time stands. False: it did.

        Bookkeeping: a settle time lost in a crash is the older one, already past, and
        beat's clock then only looks again."""
        with self.bookkeeping() as s:
            moved = s.execute(
                update(Recording)
                .where(
                    Recording.id == recording_id,
                    Recording.state == RecordingState.COLLECTING,
                    Recording.settle_due_at.is_(None)
                    if seen_due is None
                    else Recording.settle_due_at == seen_due,
                )
                .values(settle_due_at=until)
                # RETURNING, not rowcount: psycopg's is unreliable across statement kinds.
                .returning(Recording.id)
            )
            return moved.first() is not None

    def add_recovered_segments(
        self, recording_id: str, found: Sequence[tuple[int, str]], now: datetime
    ) -> int:
        """Segments found in the source whose upload callback never came."""
        added = 0
        with self.session() as s:
            for seq_no, key in found:
                result = s.execute(
                    upsert(s, Segment)
                    .values(
                        recording_id=recording_id,
                        seq_no=seq_no,
                        file_name=key,
                        state=SegmentState.UPLOADED,
                        recovered=True,
                        first_seen_at=now,
                        uploaded_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["recording_id", "seq_no"])
                    # RETURNING, not rowcount: psycopg reports -1 for a skipped insert.
                    .returning(Segment.id)
                )
                if result.first() is not None:
                    added += 1
                else:
                    s.execute(
                        update(Segment)
                        .where(
                            Segment.recording_id == recording_id,
                            Segment.seq_no == seq_no,
                            Segment.uploaded_at.is_(None),
                        )
                        .values(
                            state=SegmentState.UPLOADED,
                            file_name=key,
                            recovered=True,
                            uploaded_at=now,
                        )
                    )
        return added

    def claim(
        self,
        recording_id: str,
        *,
        now: datetime,
        expected_last_event_at: datetime | None = None,
        force: bool = False,
        from_step: str | None = None,
    ) -> str | None:
        """Move a collecting recording to processing with a new revision and a queued run.

        Returns the run id, or None when the recording changed under us, is not
        collecting (unless `force`, used by reprocess), or is already processing.
        """
        with self.session() as s:
            recording = s.execute(
                select(Recording).where(Recording.id == recording_id).with_for_update()
            ).scalar_one_or_none()
            if recording is None or not lifecycle.may_claim(recording.state, force=force):
                return None
            last = aware(recording.last_event_at)
            if not force and expected_last_event_at is not None and last != expected_last_event_at:
                return None
            set_status(recording, lifecycle.claimed())
            recording.revision += 1
            recording.updated_at = now
            run_id = str(uuid.uuid4())
            recording.current_run_id = run_id
            s.add(
                Run(
                    id=run_id,
                    recording_id=recording_id,
                    revision=recording.revision,
                    state=RunState.QUEUED,
                    steps=[],
                    attempts=0,
                    created_at=now,
                    result={"from_step": from_step} if from_step else {},
                )
            )
            return run_id

    def stop_gme_task(self, task_id: str, *, now: datetime) -> list[str]:
        """An operator stops a GME task: its collecting recordings are finalized as soon as
        every started segment is uploaded, without waiting for the quiet window. Returns
        their ids (each is due now: beat's clock looks at it within a second)."""
        with self.session() as s:
            recordings = s.scalars(
                select(Recording)
                .where(
                    Recording.source == "gme",
                    Recording.task_id == task_id,
                    Recording.state == RecordingState.COLLECTING,
                )
                .order_by(Recording.id)
                .with_for_update()
            ).all()
            for recording in recordings:
                set_status(recording, lifecycle.stop(status_of(recording), now), now)
                recording.updated_at = now
            return [r.id for r in recordings]

    def lease_due_recordings(
        self, now: datetime, *, until: datetime, limit: int = 500
    ) -> list[str]:
        """Collecting recordings whose settle time has come, oldest first. Their settle time
        moves to `until` (the lease) in the same transaction: a settle look hands each one
        out once, and a look whose message was lost finds it due again then. Rows another
        transaction holds (a second beat's clock in the middle of its lease) are skipped,
        not waited for; on SQLite there is one writer at a time."""
        due = (
            select(Recording.id)
            .where(Recording.state == RecordingState.COLLECTING, Recording.settle_due_at <= now)
            .order_by(Recording.settle_due_at)
            .limit(limit)
        )
        with self.session() as s:
            ids = list(s.scalars(due.with_for_update(skip_locked=True)))
            if ids:
                s.execute(
                    update(Recording).where(Recording.id.in_(ids)).values(settle_due_at=until)
                )
            return ids


def status_of(recording: Recording) -> RecordingStatus:
    return RecordingStatus(
        recording.state,
        aware(recording.settle_due_at),
        recording.pending_changes,
        recording.error,
        stopped=recording.stopped_at is not None,
    )


def set_status(recording: Recording, status: RecordingStatus, now: datetime | None = None) -> None:
    recording.state = status.state
    recording.settle_due_at = status.settle_due_at
    recording.pending_changes = status.pending_changes
    recording.error = status.error
    if not status.stopped:
        recording.stopped_at = None
    elif recording.stopped_at is None:
        recording.stopped_at = now or utcnow()


def recording_view(s: Session, recording: Recording, *, with_parts: bool = True) -> RecordingView:
    """The recording with its segments (GME) or files (CSS) when `with_parts`."""
    segments: Sequence[Segment] = ()
    css_files: Sequence[CssFile] = ()
    if with_parts and recording.source == "css":
        css_files = s.scalars(
            select(CssFile)
            .where(CssFile.recording_id == recording.id)
            .order_by(CssFile.start_time, CssFile.end_time, CssFile.file_id)
        ).all()
    elif with_parts:
        segments = s.scalars(
            select(Segment).where(Segment.recording_id == recording.id).order_by(Segment.seq_no)
        ).all()
    identity: dict[str, Any] = {}
    details = dict(recording.details or {})
    files = tuple(
        CssFileView(
            f.file_id,
            f.file_format,
            f.start_time,
            f.end_time,
            f.duration,
            f.file_size,
            f.video_url,
            stream_param=(f.details or {}).get("stream_param"),
            callback_ext=(f.details or {}).get("callback_ext"),
        )
        for f in css_files
    )
    if files:
        # The CSS identity the notification carries: the files in start-time order.
        details["file_ids"] = [f.file_id for f in files]
        details["start_time"] = min(f.start_time for f in files)
        details["end_time"] = max(f.end_time for f in files)
        segments_view = tuple(
            SegmentView(i, f.video_url, SegmentState.UPLOADED) for i, f in enumerate(files)
        )
    else:
        segments_view = tuple(
            SegmentView(seg.seq_no, seg.file_name, seg.state, seg.recovered, seg.events)
            for seg in segments
        )
    if recording.source == ROOM_SOURCE:
        identity = {
            "BizID": recording.biz_id,
            "RoomID": recording.room_id,
            "TaskID": recording.task_id,
        }
    if recording.source == "gme":
        identity = {
            "BizID": recording.biz_id,
            "RoomID": recording.room_id,
            "UserID": recording.user_id,
            "TaskID": recording.task_id,
            "RecordMode": recording.record_mode,
        }
    return RecordingView(
        id=recording.id,
        source=recording.source,
        state=recording.state,
        revision=recording.revision,
        first_event_at=aware(recording.first_event_at) or utcnow(),
        last_event_at=aware(recording.last_event_at) or utcnow(),
        settle_due_at=aware(recording.settle_due_at),
        details=details,
        identity=identity,
        segments=segments_view,
        error=recording.error,
        current_run_id=recording.current_run_id,
        created_at=aware(recording.created_at),
        files=files,
        stopped_at=aware(recording.stopped_at),
        tombstoned_at=aware(recording.tombstoned_at),
    )
