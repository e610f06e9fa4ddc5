"""The ledger: every callback, recording, segment, run and notification, in SQL.

Each public method is one short transaction. State changes that race (two workers,
the webhook and a worker) are guarded by the row's current state in the UPDATE's
WHERE clause, or by a row lock, so running anything twice is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from storage import pg_intake
from storage.domain import CSS_EVENT_RECORDING_FILE, GME_EVENT_UPLOADED, CssFileEvent, GmeEvent
from storage.models import (
    Callback,
    CssFile,
    DeliveryAttempt,
    Notification,
    NotificationState,
    Recording,
    RecordingState,
    Run,
    RunState,
    Segment,
    SegmentState,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything the ledger stores is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class LedgerUnavailableError(Exception):
    """The ledger database cannot be reached or written right now."""


@dataclass(frozen=True)
class IntakeResult:
    callback_id: int
    recording_id: str
    duplicate: bool
    # This callback began a collecting period (a new recording, or one reopened after its
    # archive): the one moment a settle task must be handed out; later events of the
    # period only move the settle time, which the pending settle task follows.
    opens_settle: bool = False


@dataclass(frozen=True)
class SegmentView:
    seq_no: int
    file_name: str
    state: str
    recovered: bool = False


@dataclass(frozen=True)
class CssFileView:
    file_id: str
    file_format: str
    start_time: int
    end_time: int
    duration: int
    file_size: int | None
    video_url: str


@dataclass(frozen=True)
class RecordingView:
    id: str
    source: str
    state: str
    revision: int
    first_event_at: datetime
    last_event_at: datetime
    settle_due_at: datetime | None
    details: dict[str, Any]
    identity: dict[str, Any]
    segments: tuple[SegmentView, ...] = ()
    error: str | None = None
    current_run_id: str | None = None
    created_at: datetime | None = None
    files: tuple[CssFileView, ...] = ()


@dataclass(frozen=True)
class RunView:
    id: str
    recording_id: str
    revision: int
    state: str
    attempts: int
    recording: RecordingView
    steps: list[Any] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    manifest_url: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class StoredCallback:
    id: int
    provider: str
    recording_id: str | None
    event_type: int
    received_at: datetime
    body: str
    headers: dict[str, Any]
    dispatched_at: datetime | None


class Ledger:
    def __init__(self, database_url: str, *, echo: bool = False):
        self.url = database_url
        self.engine = make_engine(database_url, echo=echo)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._statements: dict[str, _GmeStatements] = {}

    @contextmanager
    def session(self) -> Iterator[Session]:
        from sqlalchemy.exc import OperationalError

        try:
            with self._session.begin() as session:
                yield session
        except OperationalError as exc:
            raise LedgerUnavailableError(str(exc.orig).strip().splitlines()[0]) from exc

    def dispose(self) -> None:
        self.engine.dispose()

    # -- health --------------------------------------------------------------

    def ping(self) -> None:
        with self.session() as s:
            s.execute(text("SELECT 1"))

    def migrate(self) -> None:
        from storage.migrate import upgrade

        upgrade(self.engine)

    def current_revision(self) -> str | None:
        from storage.migrate import current_revision

        return current_revision(self.engine)

    # -- intake --------------------------------------------------------------

    def record_gme_event(
        self,
        gme: GmeEvent,
        body: str,
        headers: dict[str, str],
        *,
        now: datetime,
        settle_seconds: float,
    ) -> IntakeResult:
        """Store the raw callback and apply it to the segment bookkeeping, atomically.

        The hot path of the webhook. The callback is stored as dispatched: its effect is
        the recording's settle time, which a settle task or beat's sweep acts on;
        `opens_settle` tells the caller when a settle task must be handed out. On
        PostgreSQL this is one statement (`storage.pg_intake`); elsewhere, the same steps
        one after another in a transaction.
        """
        if self.engine.dialect.name == "postgresql":
            return self._record_gme_event_pg(gme, body, headers, now, settle_seconds)
        return self._record_gme_event_steps(gme, body, headers, now, settle_seconds)

    def _record_gme_event_steps(
        self,
        gme: GmeEvent,
        body: str,
        headers: dict[str, str],
        now: datetime,
        settle_seconds: float,
    ) -> IntakeResult:
        """Three statements in one transaction (callback, recording, segment), built once
        per dialect and run on the session's connection with parameters, no ORM objects
        loaded; a fourth when a first upload reopens the recording."""
        rid = gme.key.recording_id
        with self.session() as session:
            conn = session.connection()
            sql = self._gme_statements(conn)
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
            opens = self._apply_gme_event(conn, gme, now, settle_seconds)
            return IntakeResult(int(callback_id), rid, duplicate=False, opens_settle=opens)

    def _record_gme_event_pg(
        self,
        gme: GmeEvent,
        body: str,
        headers: dict[str, str],
        now: datetime,
        settle_seconds: float,
    ) -> IntakeResult:
        import psycopg

        params = pg_intake.parameters(gme, body, headers, now, settle_seconds)
        try:
            pooled = self.engine.raw_connection()  # the pool's errors come unwrapped
        except psycopg.OperationalError as exc:
            raise LedgerUnavailableError(str(exc).strip().splitlines()[0]) from exc
        try:
            conn = cast("psycopg.Connection[Any]", pooled.driver_connection)
            conn.autocommit = True  # the statement is its own transaction
            try:
                outcome = pg_intake.record(conn.cursor(), params)
            finally:
                conn.autocommit = False
        except psycopg.OperationalError as exc:
            # Dropped by the server: discard it and the idle ones, as SQLAlchemy does.
            pooled.invalidate(exc)
            self.engine.pool.dispose()
            raise LedgerUnavailableError(str(exc).strip().splitlines()[0]) from exc
        finally:
            pooled.close()
        rid = gme.key.recording_id
        if outcome.callback_id is None:
            return IntakeResult(outcome.duplicate_of or 0, rid, duplicate=True)
        return IntakeResult(
            outcome.callback_id, rid, duplicate=False, opens_settle=outcome.opens_settle
        )

    def reapply_gme_event(self, gme: GmeEvent, *, now: datetime, settle_seconds: float) -> bool:
        """Apply a stored callback's event to the bookkeeping again, as if it arrived now
        (`recpipe replay`); harmless when it was applied before. True if it began a
        collecting period."""
        with self.session() as session:
            return self._apply_gme_event(session.connection(), gme, now, settle_seconds)

    def _gme_statements(self, conn: Connection) -> _GmeStatements:
        dialect = conn.dialect.name
        if dialect not in self._statements:
            self._statements[dialect] = _GmeStatements(dialect)
        return self._statements[dialect]

    def _apply_gme_event(
        self, conn: Connection, gme: GmeEvent, now: datetime, settle_seconds: float
    ) -> bool:
        """Upsert the recording (quiet time restarts while it collects), then the segment
        (its state only moves forward). Returns True if this event began a collecting
        period: the recording is new, or a newly uploaded segment reopened it."""
        sql = self._gme_statements(conn)
        rid = gme.key.recording_id
        due = now + timedelta(seconds=settle_seconds)
        state, created_at = conn.execute(
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
                "state": RecordingState.COLLECTING,
                "revision": 0,
                "pending_changes": False,
                "first_event_at": now,
                "last_event_at": now,
                "settle_due_at": due,
                "created_at": now,
                "updated_at": now,
            },
        ).one()
        created = aware(created_at) == now
        uploaded = gme.event_type == GME_EVENT_UPLOADED
        state_now = SegmentState.after_event(gme.event_type)
        uploaded_at = conn.execute(
            sql.upsert_upload if uploaded else sql.upsert_segment,
            {
                "recording_id": rid,
                "seq_no": gme.seq_no,
                "file_name": gme.file_name,
                "state": state_now,
                "recovered": False,
                "first_seen_at": now,
                "uploaded_at": now if uploaded else None,
                "rank": SegmentState.ORDER[state_now],
            },
        ).scalar()
        # Still our own timestamp: this event is the one that uploaded the segment.
        if not (uploaded and aware(uploaded_at) == now):
            return created
        # A segment uploaded for the first time: the recording must (re)settle after it.
        if state == RecordingState.PROCESSING:
            conn.execute(update(Recording).where(Recording.id == rid).values(pending_changes=True))
        elif state in RecordingState.TERMINAL:
            # A late segment after the archive: collect again, for the next revision.
            conn.execute(
                update(Recording)
                .where(Recording.id == rid)
                .values(state=RecordingState.COLLECTING, error=None, settle_due_at=due)
            )
            return True
        return created

    def _insert_callback(
        self,
        s: Session | Connection,
        provider: str,
        dedupe_key: str,
        recording_id: str | None,
        event_type: int,
        body: str,
        headers: dict[str, str],
        now: datetime,
    ) -> int | None:
        result = s.execute(
            _insert(s, Callback)
            .values(
                provider=provider,
                dedupe_key=dedupe_key,
                recording_id=recording_id,
                event_type=event_type,
                received_at=now,
                body=body,
                headers=headers,
                duplicates=0,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(Callback.id)
        )
        row = result.first()
        return None if row is None else int(row[0])

    def mark_callbacks_undispatched(self, ids: Sequence[int]) -> None:
        with self.session() as s:
            s.execute(update(Callback).where(Callback.id.in_(ids)).values(dispatched_at=None))

    def mark_callbacks_dispatched(self, ids: Sequence[int], now: datetime) -> None:
        if ids:
            with self.session() as s:
                s.execute(update(Callback).where(Callback.id.in_(ids)).values(dispatched_at=now))

    def recording(self, recording_id: str) -> RecordingView | None:
        with self.session() as s:
            recording = s.get(Recording, recording_id)
            if recording is None:
                return None
            segments = s.scalars(
                select(Segment).where(Segment.recording_id == recording_id).order_by(Segment.seq_no)
            ).all()
            return _recording_view(recording, segments, _css_files(s, recording))

    def postpone(self, recording_id: str, until: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(Recording)
                .where(Recording.id == recording_id, Recording.state == RecordingState.COLLECTING)
                .values(settle_due_at=until)
            )

    def add_recovered_segments(
        self, recording_id: str, found: Sequence[tuple[int, str]], now: datetime
    ) -> int:
        """Segments found in the source whose upload callback never came."""
        added = 0
        with self.session() as s:
            for seq_no, key in found:
                result = s.execute(
                    _insert(s, Segment)
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
            if recording is None:
                return None
            if recording.state == RecordingState.PROCESSING:
                return None
            if not force:
                if recording.state != RecordingState.COLLECTING:
                    return None
                last = aware(recording.last_event_at)
                if expected_last_event_at is not None and last != expected_last_event_at:
                    return None
            recording.revision += 1
            recording.state = RecordingState.PROCESSING
            recording.pending_changes = False
            recording.settle_due_at = None
            recording.error = None
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

    def lease_due_recordings(
        self, now: datetime, *, until: datetime, limit: int = 500
    ) -> list[str]:
        """Collecting recordings whose settle time has come; their due time moves to `until`
        so the next sweep does not hand them out again while a settle task is queued."""
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Recording.id)
                    .where(
                        Recording.state == RecordingState.COLLECTING,
                        Recording.settle_due_at <= now,
                    )
                    .order_by(Recording.settle_due_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                s.execute(
                    update(Recording).where(Recording.id.in_(ids)).values(settle_due_at=until)
                )
            return ids

    def mark_recordings_dispatched(self, recording_ids: Sequence[str], now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(Callback)
                .where(Callback.recording_id.in_(recording_ids), Callback.dispatched_at.is_(None))
                .values(dispatched_at=now)
            )

    # -- runs ----------------------------------------------------------------

    def mark_run_dispatched(self, run_id: str, now: datetime) -> None:
        with self.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(dispatched_at=now))

    def start_run(
        self, run_id: str, *, worker: str, now: datetime, stale_after: float
    ) -> RunView | None:
        """Take the run for this worker: queued, or running with a stale heartbeat (a crash).

        None when the run is finished or another worker is actively on it.
        """
        stale = now - timedelta(seconds=stale_after)
        with self.session() as s:
            result = s.execute(
                update(Run)
                .where(
                    Run.id == run_id,
                    or_(
                        Run.state == RunState.QUEUED,
                        (Run.state == RunState.RUNNING) & (Run.heartbeat_at < stale),
                    ),
                )
                .values(
                    state=RunState.RUNNING,
                    attempts=Run.attempts + 1,
                    started_at=func.coalesce(Run.started_at, now),
                    heartbeat_at=now,
                    worker=worker,
                    error=None,
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
        return self.run(run_id)

    def run(self, run_id: str) -> RunView | None:
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return None
            recording = s.get_one(Recording, run.recording_id)
            segments = s.scalars(
                select(Segment)
                .where(Segment.recording_id == run.recording_id)
                .order_by(Segment.seq_no)
            ).all()
            return RunView(
                id=run.id,
                recording_id=run.recording_id,
                revision=run.revision,
                state=run.state,
                attempts=run.attempts,
                recording=_recording_view(recording, segments, _css_files(s, recording)),
                steps=list(run.steps or []),
                result=dict(run.result or {}),
                error=run.error,
                manifest_url=run.manifest_url,
                started_at=aware(run.started_at),
                finished_at=aware(run.finished_at),
            )

    def step(self, run_id: str, step: str, *, now: datetime, **facts: Any) -> None:
        """Record that `step` began (facts empty) or ended (facts say how)."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return
            # Fresh dicts: mutating the loaded ones in place would leave SQLAlchemy seeing
            # an unchanged JSON value, and the step's outcome would never be written.
            steps = [dict(entry) for entry in run.steps or []]
            if not facts:
                steps.append({"step": step, "started_at": now.isoformat(), "attempt": run.attempts})
                run.step = step
            else:
                for entry in reversed(steps):
                    if entry["step"] == step and "finished_at" not in entry:
                        entry.update({"finished_at": now.isoformat(), **facts})
                        break
            run.steps = steps
            run.heartbeat_at = now

    def release_run(self, run_id: str) -> None:
        """Hand a running run back to the queue (its task will retry)."""
        with self.session() as s:
            s.execute(
                update(Run)
                .where(Run.id == run_id, Run.state == RunState.RUNNING)
                .values(state=RunState.QUEUED, step=None)
            )

    def heartbeat(self, run_id: str, now: datetime) -> None:
        with self.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=now))

    def finish_run(
        self, run_id: str, *, now: datetime, result: dict[str, Any], manifest_url: str
    ) -> None:
        self._end_run(run_id, RunState.ARCHIVED, now=now, result=result, manifest_url=manifest_url)

    def fail_run(self, run_id: str, *, now: datetime, error: str) -> None:
        self._end_run(run_id, RunState.FAILED, now=now, error=error)

    def _end_run(
        self,
        run_id: str,
        state: str,
        *,
        now: datetime,
        result: dict[str, Any] | None = None,
        manifest_url: str | None = None,
        error: str | None = None,
    ) -> None:
        with self.session() as s:
            run = s.execute(select(Run).where(Run.id == run_id).with_for_update()).scalar_one()
            recording = s.execute(
                select(Recording).where(Recording.id == run.recording_id).with_for_update()
            ).scalar_one()
            run.state = state
            run.finished_at = now
            run.heartbeat_at = now
            run.step = None
            run.error = error
            if result is not None:
                run.result = {**(run.result or {}), **result}
            if manifest_url is not None:
                run.manifest_url = manifest_url
            if recording.current_run_id != run_id:
                return  # a newer run owns the recording now
            recording.updated_at = now
            recording.error = error
            if recording.pending_changes:
                # Segments arrived while this run worked: settle again for the next revision.
                recording.state = RecordingState.COLLECTING
                recording.pending_changes = False
                recording.settle_due_at = now
            else:
                recording.state = (
                    RecordingState.ARCHIVED if state == RunState.ARCHIVED else RecordingState.FAILED
                )

    def stale_runs(
        self, now: datetime, stuck_after: float, limit: int = 100
    ) -> list[tuple[str, int]]:
        """Runs queued but not dispatched, or running without a heartbeat for `stuck_after`."""
        cutoff = now - timedelta(seconds=stuck_after)
        with self.session() as s:
            rows = s.execute(
                select(Run.id, Run.attempts)
                .where(
                    or_(
                        (Run.state == RunState.QUEUED)
                        & or_(Run.dispatched_at.is_(None), Run.dispatched_at < cutoff),
                        (Run.state == RunState.RUNNING) & (Run.heartbeat_at < cutoff),
                    )
                )
                .limit(limit)
            ).all()
        return [(str(r[0]), int(r[1])) for r in rows]

    # -- notifications ------------------------------------------------------

    def create_notifications(
        self,
        run_id: str,
        event_type: str,
        webhook_id: str,
        body: str,
        urls: Sequence[str],
        now: datetime,
    ) -> list[int]:
        """Ids of the notifications this call created; one that exists already is not
        returned, so only one caller ever dispatches its delivery."""
        created: list[int] = []
        with self.session() as s:
            for url in urls:
                row = s.execute(
                    _insert(s, Notification)
                    .values(
                        run_id=run_id,
                        url=url,
                        event_type=event_type,
                        webhook_id=webhook_id,
                        body=body,
                        state=NotificationState.PENDING,
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["run_id", "url", "event_type"])
                    .returning(Notification.id)
                ).first()
                if row is not None:
                    created.append(int(row[0]))
            s.execute(
                update(Run)
                .where(Run.id == run_id, Run.notified_at.is_(None))
                .values(notified_at=now)
            )
        return created

    def lease_unnotified_runs(
        self, now: datetime, older_than: datetime, limit: int = 100
    ) -> list[str]:
        """Finished runs whose notifications were never created (their notify task was
        lost); their `dispatched_at` becomes `now` so the next sweeps leave them alone
        until `older_than` has passed again."""
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Run.id)
                    .where(
                        Run.notified_at.is_(None),
                        Run.state.in_(RunState.TERMINAL),
                        Run.finished_at < older_than,
                        or_(Run.dispatched_at.is_(None), Run.dispatched_at < older_than),
                    )
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if ids:
                s.execute(update(Run).where(Run.id.in_(ids)).values(dispatched_at=now))
            return ids

    def reopen_notifications(
        self, recording_id: str, now: datetime, *, include_disabled: bool = False
    ) -> list[int]:
        """Make the finally failed notifications of the recording's current run pending
        again, with a fresh attempt budget (earlier attempts stay in delivery_attempts).
        Returns their ids; each keeps its webhook-id and body."""
        states = [NotificationState.FAILED]
        if include_disabled:
            states.append(NotificationState.DISABLED)
        with self.session() as s:
            run_id = s.scalar(select(Recording.current_run_id).where(Recording.id == recording_id))
            if run_id is None:
                return []
            ids = list(
                s.scalars(
                    select(Notification.id)
                    .where(Notification.run_id == run_id, Notification.state.in_(states))
                    .order_by(Notification.id)
                    .with_for_update()
                )
            )
            if ids:
                s.execute(
                    update(Notification)
                    .where(Notification.id.in_(ids))
                    .values(state=NotificationState.PENDING, attempts=0, updated_at=now)
                )
            return ids

    def recordings_with_failed_notifications(self, limit: int = 1000) -> list[str]:
        """Recordings whose current run has a finally failed notification, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(Recording.id)
                    .join(Notification, Notification.run_id == Recording.current_run_id)
                    .where(Notification.state == NotificationState.FAILED)
                    .group_by(Recording.id)
                    .order_by(func.min(Notification.updated_at))
                    .limit(limit)
                )
            )

    def notification_summary(self, recording_ids: Sequence[str]) -> dict[str, str]:
        """Per recording, how its current run's notifications stand: `failed` if any
        finally failed, else `pending`, `disabled` (410) or `delivered`; absent if none."""
        if not recording_ids:
            return {}
        with self.session() as s:
            rows = s.execute(
                select(Recording.id, Notification.state)
                .join(Notification, Notification.run_id == Recording.current_run_id)
                .where(Recording.id.in_(recording_ids))
            ).all()
        states: dict[str, set[str]] = {}
        for recording_id, state in rows:
            states.setdefault(str(recording_id), set()).add(str(state))
        order = (
            NotificationState.FAILED,
            NotificationState.PENDING,
            NotificationState.DISABLED,
            NotificationState.DELIVERED,
        )
        return {rid: next(st for st in order if st in found) for rid, found in states.items()}

    def stale_notifications(self, older_than: datetime, limit: int = 200) -> list[int]:
        """Pending deliveries nobody has tried for a long time (their task was lost)."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(Notification.id)
                    .where(
                        Notification.state == NotificationState.PENDING,
                        Notification.updated_at < older_than,
                    )
                    .limit(limit)
                )
            )

    def touch_notification(self, notification_id: int, now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(Notification)
                .where(Notification.id == notification_id)
                .values(updated_at=now)
            )

    def notification(self, notification_id: int) -> Notification | None:
        with self.session() as s:
            return s.get(Notification, notification_id)

    def record_attempt(
        self,
        notification_id: int,
        *,
        now: datetime,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        final_state: str | None,
    ) -> None:
        with self.session() as s:
            s.add(
                DeliveryAttempt(
                    notification_id=notification_id,
                    at=now,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                )
            )
            values: dict[str, Any] = {
                "attempts": Notification.attempts + 1,
                "last_status": status_code,
                "last_error": error,
                "updated_at": now,
            }
            if final_state:
                values["state"] = final_state
                if final_state == NotificationState.DELIVERED:
                    values["delivered_at"] = now
            s.execute(
                update(Notification).where(Notification.id == notification_id).values(**values)
            )

    def notifications_for_run(self, run_id: str) -> list[Notification]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(Notification)
                    .where(Notification.run_id == run_id)
                    .order_by(Notification.id)
                )
            )

    # -- reading for operators ----------------------------------------------

    def recent_recordings(
        self, limit: int = 20, state: str | None = None, source: str | None = None
    ) -> list[RecordingView]:
        with self.session() as s:
            query = select(Recording).order_by(Recording.created_at.desc()).limit(limit)
            if state:
                query = query.where(Recording.state == state)
            if source:
                query = query.where(Recording.source == source)
            return [_recording_view(r, ()) for r in s.scalars(query)]

    def select_recordings(
        self,
        *,
        state: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Recording ids matching every filter given, oldest first; `since`/`until` bound
        the recording's first event (its `created_at`)."""
        with self.session() as s:
            query = select(Recording.id).order_by(Recording.created_at, Recording.id)
            if ids is not None:
                query = query.where(Recording.id.in_(list(ids)))
            if state:
                query = query.where(Recording.state == state)
            if source:
                query = query.where(Recording.source == source)
            if since:
                query = query.where(Recording.created_at >= since)
            if until:
                query = query.where(Recording.created_at < until)
            return list(s.scalars(query))

    def runs_for(self, recording_id: str) -> list[RunView]:
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Run.id).where(Run.recording_id == recording_id).order_by(Run.revision)
                )
            )
        return [view for rid in ids if (view := self.run(rid)) is not None]

    def callbacks(
        self,
        *,
        recording_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        undispatched: bool = False,
        limit: int | None = None,
    ) -> list[StoredCallback]:
        """Stored callbacks matching every filter given, in arrival order."""
        with self.session() as s:
            query = select(Callback).order_by(Callback.id)
            if recording_ids is not None:
                query = query.where(Callback.recording_id.in_(list(recording_ids)))
            if since:
                query = query.where(Callback.received_at >= since)
            if until:
                query = query.where(Callback.received_at < until)
            if undispatched:
                query = query.where(Callback.dispatched_at.is_(None))
            if limit:
                query = query.limit(limit)
            return [
                StoredCallback(
                    id=c.id,
                    provider=c.provider,
                    recording_id=c.recording_id,
                    event_type=c.event_type,
                    received_at=aware(c.received_at) or utcnow(),
                    body=c.body,
                    headers=dict(c.headers or {}),
                    dispatched_at=aware(c.dispatched_at),
                )
                for c in s.scalars(query)
            ]

    def rearm_notifications(self, run_id: str, urls: Sequence[str], now: datetime) -> list[int]:
        """Make the run's finished notifications to `urls` pending again, for another
        delivery of the same message (same webhook-id and body); ids of those rearmed.
        Pending ones are left alone: their delivery is still under way."""
        with self.session() as s:
            ids = list(
                s.scalars(
                    select(Notification.id)
                    .where(
                        Notification.run_id == run_id,
                        Notification.url.in_(list(urls)),
                        Notification.state != NotificationState.PENDING,
                    )
                    .with_for_update()
                )
            )
            if ids:
                s.execute(
                    update(Notification)
                    .where(Notification.id.in_(ids))
                    .values(
                        state=NotificationState.PENDING,
                        attempts=0,
                        delivered_at=None,
                        updated_at=now,
                    )
                )
            return ids

    def delivery_attempts(self, notification_id: int) -> list[DeliveryAttempt]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(DeliveryAttempt)
                    .where(DeliveryAttempt.notification_id == notification_id)
                    .order_by(DeliveryAttempt.id)
                )
            )

    def count_recordings_by_state(self) -> dict[str, int]:
        """How many recordings are in each state (for metrics: one indexed GROUP BY)."""
        with self.session() as s:
            rows = s.execute(select(Recording.state, func.count()).group_by(Recording.state))
            return {state: int(count) for state, count in rows}

    def find_recordings(self, term: str) -> list[str]:
        """Recording ids matching an id, a GME TaskID, or a CSS file id or stream id."""
        with self.session() as s:
            found = list(
                s.scalars(
                    select(Recording.id).where(or_(Recording.id == term, Recording.task_id == term))
                )
            )
            found += [
                rid
                for rid in s.scalars(
                    select(CssFile.recording_id)
                    .where(or_(CssFile.file_id == term, CssFile.stream_id == term))
                    .distinct()
                )
                if rid not in found
            ]
            return found

    # -- CSS intake ------------------------------------------------------------

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
        arrives after its recording was archived reopens it for the next revision.
        """
        with self.session() as s:
            callback_id = self._insert_callback(
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
            rid = self._css_recording_for(s, css, stream_key, now, settle_seconds, join_gap_seconds)
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
            if recording.state == RecordingState.COLLECTING:
                recording.settle_due_at = now + timedelta(seconds=settle_seconds)
            elif recording.state == RecordingState.PROCESSING:
                recording.pending_changes = True
            elif recording.state in RecordingState.TERMINAL:
                # A file of an archived run: collect again, for the next revision.
                recording.state = RecordingState.COLLECTING
                recording.error = None
                recording.settle_due_at = now + timedelta(seconds=settle_seconds)
            return IntakeResult(callback_id, rid, duplicate=False)

    def _css_recording_for(
        self,
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
        if not ids:
            rid = css.stream.recording_id(css.start_time)
            s.execute(
                _insert(s, Recording)
                .values(
                    id=rid,
                    source="css",
                    details={
                        "appid": css.stream.appid,
                        "app": css.stream.app,
                        "appname": css.stream.appname,
                        "stream_id": css.stream.stream_id,
                    },
                    state=RecordingState.COLLECTING,
                    revision=0,
                    pending_changes=False,
                    first_event_at=now,
                    last_event_at=now,
                    settle_due_at=now + timedelta(seconds=settle_seconds),
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )
            return rid
        target, others = ids[0], ids[1:]
        for other in others:
            # This file bridges two runs. One never processed is folded into the first;
            # one already archived keeps its own identity and revisions.
            recording = s.execute(
                select(Recording).where(Recording.id == other).with_for_update()
            ).scalar_one()
            if recording.state != RecordingState.COLLECTING or recording.revision:
                continue
            s.execute(
                update(CssFile).where(CssFile.recording_id == other).values(recording_id=target)
            )
            s.execute(
                update(Callback).where(Callback.recording_id == other).values(recording_id=target)
            )
            s.delete(recording)
        return target


def _css_files(s: Session, recording: Recording) -> list[CssFile]:
    if recording.source != "css":
        return []
    return list(
        s.scalars(
            select(CssFile)
            .where(CssFile.recording_id == recording.id)
            .order_by(CssFile.start_time, CssFile.end_time, CssFile.file_id)
        )
    )


def _recording_view(
    recording: Recording, segments: Sequence[Segment], css_files: Sequence[CssFile] = ()
) -> RecordingView:
    identity: dict[str, Any] = {}
    details = dict(recording.details or {})
    files = tuple(
        CssFileView(
            f.file_id, f.file_format, f.start_time, f.end_time, f.duration, f.file_size, f.video_url
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
            SegmentView(seg.seq_no, seg.file_name, seg.state, seg.recovered) for seg in segments
        )
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
    )


class _GmeStatements:
    """GME intake's statements, built once per dialect: building an upsert costs more CPU
    than running it, and the webhook runs three per callback. Executed with a dict of
    parameters named after the columns (plus `rank` for the segment's state order)."""

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
        upsert = insert(recordings)
        self.upsert_recording = upsert.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "last_event_at": case(
                    (
                        recordings.c.last_event_at > upsert.excluded.last_event_at,
                        recordings.c.last_event_at,
                    ),
                    else_=upsert.excluded.last_event_at,
                ),
                "updated_at": upsert.excluded.updated_at,
                "settle_due_at": case(
                    (
                        recordings.c.state == RecordingState.COLLECTING,
                        upsert.excluded.settle_due_at,
                    ),
                    else_=recordings.c.settle_due_at,
                ),
            },
        ).returning(recordings.c.state, recordings.c.created_at)
        segments = cast(Table, Segment.__table__)
        segment = insert(segments)
        rank = case(SegmentState.ORDER, value=segments.c.state, else_=0)
        forward = {
            "state": case(
                (rank <= bindparam("rank"), segment.excluded.state), else_=segments.c.state
            ),
            "uploaded_at": func.coalesce(segments.c.uploaded_at, segment.excluded.uploaded_at),
        }
        self.upsert_segment = segment.on_conflict_do_update(
            index_elements=["recording_id", "seq_no"], set_=forward
        ).returning(segments.c.uploaded_at)
        # The uploaded key is the one to fetch, whatever an earlier event said.
        self.upsert_upload = segment.on_conflict_do_update(
            index_elements=["recording_id", "seq_no"],
            set_={**forward, "file_name": segment.excluded.file_name, "recovered": False},
        ).returning(segments.c.uploaded_at)


def _insert(bind: Session | Connection, model: Any) -> Any:
    dialect = (bind.dialect if isinstance(bind, Connection) else bind.get_bind().dialect).name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def make_engine(database_url: str, *, echo: bool = False) -> Engine:
    url = make_url(database_url)
    if url.drivername == "postgresql" or url.drivername == "postgres":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": 30, "isolation_level": None}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock up front: several processes write, and a deferred
            # transaction that upgrades its lock late fails instead of waiting.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # A server that accepts but never answers must not hang intake or /readyz: libpq's
    # connect_timeout bounds the whole connection set-up (the URL may set its own).
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": 5}
    return create_engine(
        url,
        echo=echo,
        # No pre-ping: it costs a round trip per transaction on the webhook's hot path. A
        # connection the server dropped fails its transaction once (a 503 the vendor
        # retries) and SQLAlchemy then discards the whole pool; recycling keeps idle
        # connections younger than the usual server and proxy idle timeouts.
        pool_recycle=1800,
        # At least `recpipe serve`'s threads (8): past pool_size, a busy webhook would open
        # and close an overflow connection per request, and lose its prepared statements.
        pool_size=10,
        max_overflow=20,
        connect_args=connect_args,
    )
