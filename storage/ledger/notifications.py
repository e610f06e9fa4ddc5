"""Notifications: one downstream message per run outcome and URL, and its deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from storage.domain import DeliveryAttemptView, NotificationState, NotificationView, RunState
from storage.ledger.engine import LedgerBase, aware, upsert
from storage.ledger.tables import DeliveryAttempt, Notification, Recording, Run


def insert_notifications(
    s: Session,
    values: dict[str, Any],
    urls: Sequence[str],
    now: datetime,
    *,
    once_per: list[str],
) -> list[int]:
    """One pending notification per URL with `values`; ids of those this call made (one
    that exists already by the unique index on `once_per` is not made twice, so only one
    caller ever dispatches its delivery)."""
    created: list[int] = []
    for url in urls:
        row = s.execute(
            upsert(s, Notification)
            .values(
                **values,
                url=url,
                state=NotificationState.PENDING,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=once_per)
            .returning(Notification.id)
        ).first()
        if row is not None:
            created.append(int(row[0]))
    return created


class Notifications(LedgerBase):
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
        with self.session() as s:
            created = insert_notifications(
                s,
                dict(run_id=run_id, event_type=event_type, webhook_id=webhook_id, body=body),
                urls,
                now,
                once_per=["run_id", "url", "event_type"],
            )
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

    def waiting_notifications(
        self, updated_before: datetime, limit: int = 500
    ) -> list[tuple[int, int, datetime]]:
        """Pending notifications untouched since `updated_before`, oldest first: (id,
        attempts so far, when last touched). Whether one is overdue (its delivery task
        lost) depends on its receiver's back-off, which the caller knows."""
        with self.session() as s:
            rows = s.execute(
                select(Notification.id, Notification.attempts, Notification.updated_at)
                .where(
                    Notification.state == NotificationState.PENDING,
                    Notification.updated_at < updated_before,
                )
                .order_by(Notification.updated_at)
                .limit(limit)
            ).all()
        return [(int(r[0]), int(r[1]), aware(r[2])) for r in rows]

    def touch_notification(self, notification_id: int, now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(Notification)
                .where(Notification.id == notification_id)
                .values(updated_at=now)
            )

    def notification(self, notification_id: int) -> NotificationView | None:
        with self.session() as s:
            note = s.get(Notification, notification_id)
            return None if note is None else notification_view(note)

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

    def notifications_for_run(self, run_id: str) -> list[NotificationView]:
        with self.session() as s:
            return [
                notification_view(note)
                for note in s.scalars(
                    select(Notification)
                    .where(Notification.run_id == run_id)
                    .order_by(Notification.id)
                )
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

    def delivery_attempts(self, notification_id: int) -> list[DeliveryAttemptView]:
        with self.session() as s:
            return [
                DeliveryAttemptView(
                    id=a.id,
                    notification_id=a.notification_id,
                    at=aware(a.at),
                    status_code=a.status_code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
                for a in s.scalars(
                    select(DeliveryAttempt)
                    .where(DeliveryAttempt.notification_id == notification_id)
                    .order_by(DeliveryAttempt.id)
                )
            ]


def notification_view(note: Notification) -> NotificationView:
    return NotificationView(
        id=note.id,
        run_id=note.run_id,
        url=note.url,
        event_type=note.event_type,
        webhook_id=note.webhook_id,
        body=note.body,
        state=note.state,
        attempts=note.attempts,
        last_status=note.last_status,
        last_error=note.last_error,
        created_at=aware(note.created_at),
        updated_at=aware(note.updated_at),
        delivered_at=aware(note.delivered_at),
        erasure_id=note.erasure_id,
    )
