"""Stored callbacks: every vendor request, once, with how many retries repeated it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from storage.domain import StoredCallback
from storage.ledger.engine import LedgerBase, aware, upsert, utcnow
from storage.ledger.tables import Callback


def insert_callback(
    s: Session | Connection,
    provider: str,
    dedupe_key: str,
    recording_id: str | None,
    event_type: int,
    body: str,
    headers: dict[str, str],
    now: datetime,
) -> int | None:
    """The new callback's id; None when one with this dedupe key is stored already. It is
    stored as dispatched: its effect is its recording's settle time, which beat's clock
    acts on."""
    result = s.execute(
        upsert(s, Callback)
        .values(
            provider=provider,
            dedupe_key=dedupe_key,
            recording_id=recording_id,
            event_type=event_type,
            received_at=now,
            body=body,
            headers=headers,
            duplicates=0,
            dispatched_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Callback.id)
    )
    row = result.first()
    return None if row is None else int(row[0])


class Callbacks(LedgerBase):
    def mark_callbacks_dispatched(self, ids: Sequence[int], now: datetime) -> None:
        if ids:
            with self.session() as s:
                s.execute(update(Callback).where(Callback.id.in_(ids)).values(dispatched_at=now))

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
