"""Retention: old callbacks and delivery attempts are deleted in bounded batches, by the
rule of `storage.domain.retention` (which this module encodes in SQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select

from storage.domain import NotificationState, RecordingState
from storage.domain.retention import BATCH_ROWS, PruneCounts
from storage.ledger.engine import LedgerBase
from storage.ledger.tables import Callback, DeliveryAttempt, Notification, Recording


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
