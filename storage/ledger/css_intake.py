"""CSS intake: a recording file joins its stream's recording, merges two, or opens one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from storage.domain import CSS_EVENT_RECORDING_FILE, CssFileEvent, IntakeResult, lifecycle
from storage.domain.lifecycle import RecordingStatus, TouchedRecording
from storage.ledger.callbacks import insert_callback
from storage.ledger.engine import LedgerBase, aware, upsert
from storage.ledger.tables import Callback, CssFile, Recording


class CssIntake(LedgerBase):
    def record_css_file(
        self,
        css: CssFileEvent,
        body: str,
        headers: dict[str, str],
        *,
        now: datetime,
        settle_seconds: float,
        join_gap_seconds: float,
    ) -> IntakeResult:
        """Store the raw callback and put the file into its stream's recording, atomically.

        A file whose time range touches (within `join_gap_seconds`) files of a recording
        joins it; one that touches two recordings not yet processed merges them; one that
        arrives after its recording was archived reopens it for the next revision. Each
        restarts the recording's quiet time (its settle time, which beat's clock reads).
        """
        with self.session() as s:
            callback_id = insert_callback(
                s, "css", css.dedupe_key, None, CSS_EVENT_RECORDING_FILE, body, headers, now
            )
            if callback_id is None:
                s.execute(
                    update(Callback)
                    .where(Callback.dedupe_key == css.dedupe_key)
                    .values(duplicates=Callback.duplicates + 1)
                )
                row = s.execute(
                    select(Callback.id, Callback.recording_id).where(
                        Callback.dedupe_key == css.dedupe_key
                    )
                ).one()
                return IntakeResult(int(row[0]), str(row[1] or ""), duplicate=True)

            stream_key = css.stream.digest
            if s.get_bind().dialect.name == "postgresql":
                # One stream's files are placed one at a time (SQLite's BEGIN IMMEDIATE
                # already serializes every writer).
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(stream_key[:15], 16)})
            rid = _recording_for(s, css, stream_key, now, settle_seconds, join_gap_seconds)
            s.add(
                CssFile(
                    recording_id=rid,
                    stream_key=stream_key,
                    appid=css.stream.appid,
                    stream_id=css.stream.stream_id,
                    file_id=css.file_id,
                    file_format=css.file_format,
                    start_time=css.start_time,
                    end_time=css.end_time,
                    duration=css.duration,
                    file_size=css.file_size,
                    video_url=css.video_url,
                    details={
                        "task_id": css.task_id,
                        "stream_param": css.stream_param,
                        "callback_ext": css.callback_ext,
                    },
                    received_at=now,
                )
            )
            s.execute(update(Callback).where(Callback.id == callback_id).values(recording_id=rid))
            recording = s.execute(
                select(Recording).where(Recording.id == rid).with_for_update()
            ).scalar_one()
            recording.last_event_at = max(aware(recording.last_event_at) or now, now)
            recording.updated_at = now
            before = RecordingStatus(
                recording.state,
                aware(recording.settle_due_at),
                recording.pending_changes,
                recording.error,
            )
            after = lifecycle.event_arrives(
                before, new_content=True, now=now, settle_seconds=settle_seconds
            )
            recording.state = after.state
            recording.settle_due_at = after.settle_due_at
            recording.pending_changes = after.pending_changes
            recording.error = after.error
            return IntakeResult(callback_id, rid, duplicate=False)


def _recording_for(
    s: Session,
    css: CssFileEvent,
    stream_key: str,
    now: datetime,
    settle_seconds: float,
    gap: float,
) -> str:
    """The recording a new file belongs to, created when no file of the stream touches it."""
    touching = s.execute(
        select(CssFile.recording_id)
        .where(
            CssFile.stream_key == stream_key,
            CssFile.start_time <= css.end_time + gap,
            CssFile.end_time >= css.start_time - gap,
        )
        .order_by(CssFile.start_time)
    ).all()
    ids = list(dict.fromkeys(str(r[0]) for r in touching))
    touched = []
    for rid in ids:
        row = s.execute(
            select(Recording.state, Recording.revision).where(Recording.id == rid).with_for_update()
        ).one()
        touched.append(TouchedRecording(rid, row.state, row.revision))
    placement = lifecycle.place_css_file(touched)
    if placement.join is None:
        rid = css.stream.recording_id(css.start_time)
        fresh = lifecycle.new_recording(now, settle_seconds)
        s.execute(
            upsert(s, Recording)
            .values(
                id=rid,
                source="css",
                details={
                    "appid": css.stream.appid,
                    "app": css.stream.app,
                    "appname": css.stream.appname,
                    "stream_id": css.stream.stream_id,
                },
                state=fresh.state,
                revision=0,
                pending_changes=fresh.pending_changes,
                first_event_at=now,
                last_event_at=now,
                settle_due_at=fresh.settle_due_at,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        return rid
    for other in placement.merge:
        s.execute(
            update(CssFile).where(CssFile.recording_id == other).values(recording_id=placement.join)
        )
        s.execute(
            update(Callback)
            .where(Callback.recording_id == other)
            .values(recording_id=placement.join)
        )
        s.execute(delete(Recording).where(Recording.id == other))
    return placement.join
