"""Legal holds: a recording or a room under investigation is kept, whoever asks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from storage.domain import HoldView
from storage.ledger.engine import LedgerBase, aware, utcnow
from storage.ledger.tables import AuditEntry, Hold, Recording


def hold_view(hold: Hold, recording: Recording) -> HoldView:
    return HoldView(
        recording_id=hold.recording_id,
        reason=hold.reason,
        held_by=hold.held_by,
        held_at=aware(hold.held_at),
        source=recording.source,
        state=recording.state,
    )


class Holds(LedgerBase):
    def hold(
        self, recording_id: str, reason: str, actor: str, *, now: datetime | None = None
    ) -> HoldView | None:
        """Put the recording on hold (a second hold replaces the reason); audited in the
        same transaction. None when there is no such recording."""
        now = now or utcnow()
        with self.session() as s:
            recording = s.get(Recording, recording_id, with_for_update=True)
            if recording is None:
                return None
            hold = s.get(Hold, recording_id)
            previous = None if hold is None else hold.reason
            if hold is None:
                hold = Hold(recording_id=recording_id, reason=reason, held_by=actor, held_at=now)
                s.add(hold)
            else:
                hold.reason, hold.held_by, hold.held_at = reason, actor, now
            s.add(
                AuditEntry(
                    at=now,
                    actor=actor,
                    action="hold",
                    recording_id=recording_id,
                    detail={"reason": reason, "replaces": previous},
                )
            )
            s.flush()
            return hold_view(hold, recording)

    def release(self, recording_id: str, actor: str, *, now: datetime | None = None) -> bool:
        """Lift the recording's hold, audited; False when it was not held."""
        now = now or utcnow()
        with self.session() as s:
            reason = s.scalar(select(Hold.reason).where(Hold.recording_id == recording_id))
            if reason is None:
                return False
            s.execute(delete(Hold).where(Hold.recording_id == recording_id))
            s.add(
                AuditEntry(
                    at=now,
                    actor=actor,
                    action="release",
                    recording_id=recording_id,
                    detail={"reason": reason},
                )
            )
            return True

    def hold_on(self, recording_id: str) -> HoldView | None:
        with self.session() as s:
            row = s.execute(
                select(Hold, Recording)
                .join(Recording, Recording.id == Hold.recording_id)
                .where(Hold.recording_id == recording_id)
            ).first()
            return None if row is None else hold_view(row[0], row[1])

    def holds(self, limit: int = 500) -> list[HoldView]:
        """Every standing hold, newest first."""
        with self.session() as s:
            rows = s.execute(
                select(Hold, Recording)
                .join(Recording, Recording.id == Hold.recording_id)
                .order_by(Hold.held_at.desc(), Hold.recording_id)
                .limit(limit)
            ).all()
            return [hold_view(h, r) for h, r in rows]

    def held_ids(self, recording_ids: list[str]) -> set[str]:
        """Which of these recordings are held."""
        if not recording_ids:
            return set()
        with self.session() as s:
            return set(
                s.scalars(select(Hold.recording_id).where(Hold.recording_id.in_(recording_ids)))
            )
