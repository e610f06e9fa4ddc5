"""Retention: old callbacks and delivery attempts are deleted in bounded batches, and
archived media older than RECPIPE_MEDIA_RETENTION_DAYS becomes a tombstone, by the rules
of `storage.domain.retention` (which this module encodes in SQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select, update

from storage.domain import NotificationState, RecordingState
from storage.domain.retention import BATCH_ROWS, PruneCounts, media_expirable
from storage.ledger.engine import LedgerBase, aware
from storage.ledger.tables import Callback, DeliveryAttempt, Hold, Notification, Recording, Run


def _prunable_callbacks(before: datetime) -> Select[Any]:
    return (
        select(Callback.id)
        .join(Recording, Recording.id == Callback.recording_id)
        .where(
            Callback.received_at < before,
            Callback.dispatched_at.is_not(None),
            Recording.last_event_at < before,
            Recording.state.in_(RecordingState.TERMINAL),
            Recording.pending_changes.is_(False),
        )
    )


def _prunable_attempts(before: datetime) -> Select[Any]:
    return (
        select(DeliveryAttempt.id)
        .join(Notification, Notification.id == DeliveryAttempt.notification_id)
        .where(DeliveryAttempt.at < before, Notification.state != NotificationState.PENDING)
    )


def _expirable_media(before: datetime) -> Select[Any]:
    held = select(Hold.recording_id).where(Hold.recording_id == Recording.id).exists()
    return (
        select(Recording.id)
        .join(Run, Run.id == Recording.current_run_id)
        .where(
            Recording.state.in_(RecordingState.TERMINAL),
            Recording.pending_changes.is_(False),
            Run.finished_at < before,
            ~held,
        )
    )


class Retention(LedgerBase):
    def prune(
        self,
        before: datetime,
        *,
        batch: int = BATCH_ROWS,
        max_batches: int | None = None,
        dry_run: bool = False,
    ) -> PruneCounts:
        """Delete the callbacks and delivery attempts that `before` lets go, `batch` rows per
        transaction, at most `max_batches` transactions per table (None: until none is
        left). `dry_run` counts them instead."""
        counts = {}
        tables: dict[str, tuple[type[Callback] | type[DeliveryAttempt], Select[Any]]] = {
            "callbacks": (Callback, _prunable_callbacks(before)),
            "delivery_attempts": (DeliveryAttempt, _prunable_attempts(before)),
        }
        for name, (table, prunable) in tables.items():
            if dry_run:
                with self.session() as s:
                    counts[name] = int(
                        s.execute(select(func.count()).select_from(prunable.subquery())).scalar()
                        or 0
                    )
                continue
            counts[name] = self._delete_in_batches(table, prunable, batch, max_batches)
        return PruneCounts(**counts)

    def _delete_in_batches(
        self,
        table: type[Callback] | type[DeliveryAttempt],
        prunable: Select[Any],
        batch: int,
        max_batches: int | None,
    ) -> int:
        removed = batches = 0
        while max_batches is None or batches < max_batches:
            ids: ColumnElement[bool] = table.id.in_(prunable.limit(batch))
            with self.session() as s:
                deleted = s.execute(delete(table).where(ids)).rowcount or 0  # type: ignore[attr-defined]
            removed += deleted
            batches += 1
            if deleted < batch:
                break
        return removed

    # -- media retention ----------------------------------------------------------------

    def expirable_media(self, before: datetime, limit: int) -> list[str]:
        """Recordings and rooms whose media may go by age (`retention.media_expirable`),
        oldest first."""
        with self.session() as s:
            return list(s.scalars(_expirable_media(before).order_by(Run.finished_at).limit(limit)))

    def count_expirable_media(self, before: datetime) -> int:
        with self.session() as s:
            found = s.execute(select(func.count()).select_from(_expirable_media(before).subquery()))
            return int(found.scalar() or 0)

    def expire(self, recording_id: str, before: datetime, now: datetime) -> str | None:
        """Make the recording a tombstone (`expired`) if its media still may go: checked
        again on the locked row, so a hold or a new revision since the listing keeps it.
        Returns the id of its newest run (whose outcome the tombstone's notification
        carries), or None when it stays."""
        with self.session() as s:
            recording = s.get(Recording, recording_id, with_for_update=True)
            if recording is None or recording.current_run_id is None:
                return None
            run = s.get(Run, recording.current_run_id)
            keep = not media_expirable(
                state=recording.state,
                pending_changes=recording.pending_changes,
                finished_at=None if run is None else aware(run.finished_at),
                held=s.get(Hold, recording_id) is not None,
                before=before,
            )
            if keep:
                return None
            recording.state = RecordingState.EXPIRED
            recording.tombstoned_at = now
            recording.media_purged_at = None
            recording.settle_due_at = None
            recording.updated_at = now
            return recording.current_run_id

    def tombstones_to_purge(self, limit: int) -> list[str]:
        """Tombstones whose archived objects are not all deleted yet (a pass that stopped
        half-way), oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(Recording.id)
                    .where(
                        Recording.state.in_(RecordingState.TOMBSTONES),
                        Recording.media_purged_at.is_(None),
                    )
                    .order_by(Recording.tombstoned_at)
                    .limit(limit)
                )
            )

    def media_purged(self, recording_id: str, now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(Recording)
                .where(Recording.id == recording_id)
                .values(media_purged_at=now, updated_at=now)
            )
