"""GME intake: a file event becomes a stored callback, a segment and its recording's state.

On PostgreSQL the webhook runs this as one statement (`gme_statement`); elsewhere, and for
`recpipe replay`, the same rules step by step: read the recording and the segment, ask
`storage.domain.lifecycle` what the event does to them, write back what changed.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from storage.domain import GmeEvent, IntakeResult, lifecycle
from storage.domain.lifecycle import RecordingStatus, SegmentStatus
from storage.ledger import gme_statement
from storage.ledger.engine import LedgerBase, LedgerUnavailableError, aware, first_line
from storage.ledger.tables import Callback, Recording, Segment


class GmeIntake(LedgerBase):
    def record_gme_event(
        self,
        gme: GmeEvent,
        body: str,
        headers: dict[str, str],
        *,
        now: datetime,
        settle_seconds: float,
        complete_seconds: float | None = None,
    ) -> IntakeResult:
        """Store the raw callback and apply it to the segment bookkeeping, atomically.

        The hot path of the webhook. The callback is stored as dispatched: its effect is
        the recording's settle time, which beat's clock acts on. The quiet window is
        `settle_seconds`, or `complete_seconds` once the segments say the recording is
        complete (None: no shorter window). On PostgreSQL this is one statement
        (`gme_statement`); elsewhere, the same steps one after another in a transaction.
        """
        if self.engine.dialect.name == "postgresql":
            return self.record_gme_event_in_one_statement(
                gme, body, headers, now, settle_seconds, complete_seconds
            )
        return self.record_gme_event_step_by_step(
            gme, body, headers, now, settle_seconds, complete_seconds
        )

    def record_gme_event_step_by_step(
        self,
        gme: GmeEvent,
        body: str,
        headers: dict[str, str],
        now: datetime,
        settle_seconds: float,
        complete_seconds: float | None = None,
    ) -> IntakeResult:
        rid = gme.key.recording_id
        with self.session() as session:
            conn = session.connection()
            sql = statements(conn.dialect.name)
            callback_id = conn.execute(
                sql.insert_callback,
                {
                    "provider": "gme",
                    "dedupe_key": gme.dedupe_key,
                    "recording_id": rid,
                    "event_type": gme.event_type,
                    "received_at": now,
                    "body": body,
                    "headers": headers,
                    "duplicates": 0,
                    "dispatched_at": now,
                },
            ).scalar()
            if callback_id is None:
                existing = conn.execute(sql.count_duplicate, {"key": gme.dedupe_key}).scalar()
                return IntakeResult(int(existing or 0), rid, duplicate=True)
            apply_gme_event(conn, gme, now, settle_seconds, complete_seconds)
            return IntakeResult(int(callback_id), rid, duplicate=False)

    def record_gme_event_in_one_statement(
        self,
        gme: GmeEvent,
        body: str,
        headers: dict[str, str],
        now: datetime,
        settle_seconds: float,
        complete_seconds: float | None = None,
    ) -> IntakeResult:
        import psycopg

        params = gme_statement.parameters(gme, body, headers, now, settle_seconds, complete_seconds)
        connections = self.thread_connections
        conn = None
        try:
            # This thread's connection, in autocommit mode: the statement is its own
            # transaction.
            conn = connections.get()
            outcome = gme_statement.record(conn.cursor(), params)
        except psycopg.OperationalError as exc:
            # The server is gone or dropped us: every thread's connection goes (one made
            # before the outage would fail once after it), and so do the pool's idle ones.
            connections.discard_all()
            self.engine.pool.dispose()
            raise LedgerUnavailableError(first_line(exc)) from exc
        except Exception:
            idle = psycopg.pq.TransactionStatus.IDLE
            if conn is not None and conn.info.transaction_status != idle:
                connections.discard()
            raise
        rid = gme.key.recording_id
        if outcome.callback_id is None:
            return IntakeResult(outcome.duplicate_of or 0, rid, duplicate=True)
        return IntakeResult(outcome.callback_id, rid, duplicate=False)

    def reapply_gme_event(
        self,
        gme: GmeEvent,
        *,
        now: datetime,
        settle_seconds: float,
        complete_seconds: float | None = None,
    ) -> None:
        """Apply a stored callback's event to the bookkeeping again, as if it arrived now
        (`recpipe replay`); harmless when it was applied before."""
        with self.session() as session:
            apply_gme_event(session.connection(), gme, now, settle_seconds, complete_seconds)


def apply_gme_event(
    conn: Connection,
    gme: GmeEvent,
    now: datetime,
    settle_seconds: float,
    complete_seconds: float | None = None,
) -> None:
    """Apply a GME event to its recording and segment: the recording's settle time, its
    state when new content (a segment not seen before, a first upload) reopens it."""
    sql = statements(conn.dialect.name)
    rid = gme.key.recording_id
    fresh = lifecycle.new_recording(now, settle_seconds)
    # Creates the recording, or locks it and records this event's time.
    row = conn.execute(
        sql.upsert_recording,
        {
            "id": rid,
            "source": "gme",
            "biz_id": gme.key.biz_id,
            "room_id": gme.key.room_id,
            "user_id": gme.key.user_id,
            "task_id": gme.key.task_id,
            "record_mode": gme.key.record_mode,
            "details": {},
            "state": fresh.state,
            "revision": 0,
            "pending_changes": fresh.pending_changes,
            "first_event_at": now,
            "last_event_at": now,
            "settle_due_at": fresh.settle_due_at,
            "created_at": now,
            "updated_at": now,
        },
    ).one()
    recording = RecordingStatus(
        row.state,
        aware(row.settle_due_at),
        row.pending_changes,
        row.error,
        stopped=row.stopped_at is not None,
    )
    found = conn.execute(sql.select_segment, {"rid": rid, "seq_no": gme.seq_no}).first()
    segment = (
        None
        if found is None
        else SegmentStatus(
            found.state, found.file_name, aware(found.uploaded_at), found.recovered, found.events
        )
    )
    # The recording's row is locked by the upsert above: the tally cannot change under us.
    seen, whole, highest = conn.execute(
        sql.tally_segments, {"rid": rid, "seq_no": gme.seq_no}
    ).one()
    after, segment_now = lifecycle.gme_event(
        recording,
        segment,
        gme.event_type,
        gme.file_name,
        now=now,
        settle_seconds=settle_seconds,
        complete_seconds=complete_seconds,
        seq_no=gme.seq_no,
        others=lifecycle.Tally(int(seen), int(whole or 0), -1 if highest is None else highest),
    )
    if after != recording:
        conn.execute(
            sql.update_recording,
            {
                "rid": rid,
                "new_state": after.state,
                "new_due": after.settle_due_at,
                "new_pending": after.pending_changes,
                "new_error": after.error,
            },
        )
    if segment_now != segment:
        conn.execute(
            sql.upsert_segment,
            {
                "recording_id": rid,
                "seq_no": gme.seq_no,
                "file_name": segment_now.file_name,
                "state": segment_now.state,
                "recovered": segment_now.recovered,
                "first_seen_at": now,
                "uploaded_at": segment_now.uploaded_at,
                "events": segment_now.events,
            },
        )


class _GmeStatements:
    """GME intake's statements, built once per dialect: building an upsert costs more CPU
    than running it, and the webhook runs several per callback. Executed with a dict of
    parameters named after the columns."""

    def __init__(self, dialect: str):
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        callbacks = cast(Table, Callback.__table__)
        self.insert_callback = (
            insert(callbacks)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(callbacks.c.id)
        )
        self.count_duplicate = (
            update(callbacks)
            .where(callbacks.c.dedupe_key == bindparam("key"))
            .values(duplicates=callbacks.c.duplicates + 1)
            .returning(callbacks.c.id)
        )
        recordings = cast(Table, Recording.__table__)
        recording = insert(recordings)
        self.upsert_recording = recording.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "last_event_at": case(
                    (
                        recordings.c.last_event_at > recording.excluded.last_event_at,
                        recordings.c.last_event_at,
                    ),
                    else_=recording.excluded.last_event_at,
                ),
                "updated_at": recording.excluded.updated_at,
            },
        ).returning(
            recordings.c.state,
            recordings.c.settle_due_at,
            recordings.c.pending_changes,
            recordings.c.error,
            recordings.c.stopped_at,
        )
        self.update_recording = (
            update(recordings)
            .where(recordings.c.id == bindparam("rid"))
            .values(
                state=bindparam("new_state"),
                settle_due_at=bindparam("new_due"),
                pending_changes=bindparam("new_pending"),
                error=bindparam("new_error"),
            )
        )
        segments = cast(Table, Segment.__table__)
        self.select_segment = (
            select(
                segments.c.state,
                segments.c.file_name,
                segments.c.uploaded_at,
                segments.c.recovered,
                segments.c.events,
            )
            .where(
                segments.c.recording_id == bindparam("rid"),
                segments.c.seq_no == bindparam("seq_no"),
            )
            .with_for_update()
        )
        segment = insert(segments)
        self.upsert_segment = segment.on_conflict_do_update(
            index_elements=["recording_id", "seq_no"],
            set_={
                column: segment.excluded[column]
                for column in ("state", "file_name", "uploaded_at", "recovered", "events")
            },
        )
        self.tally_segments = select(
            func.count(),
            func.sum(case((segments.c.events == lifecycle.WHOLE, 1), else_=0)),
            func.max(segments.c.seq_no),
        ).where(
            segments.c.recording_id == bindparam("rid"),
            segments.c.seq_no != bindparam("seq_no"),
        )


@functools.cache
def statements(dialect: str) -> _GmeStatements:
    return _GmeStatements(dialect)
