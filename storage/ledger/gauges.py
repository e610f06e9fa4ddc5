"""What the ledger says about the pipeline's health, for metrics read at scrape time.

Six small aggregate queries in one session (one scrape, one connection); none returns a
row per recording, so what a scrape exports stays the same size however many recordings
there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from storage.domain import RecordingState
from storage.domain.rooms import ROOM_SOURCE
from storage.ledger.engine import LedgerBase, aware
from storage.ledger.tables import Notification, Recording, Run


@dataclass(frozen=True)
class LedgerGauges:
    recordings_by_state: dict[str, int]
    # When the longest-quiet collecting recording had its last event (None: none collecting).
    oldest_collecting_event_at: datetime | None
    # When the run of the longest-processing recording was claimed (None: none processing).
    oldest_processing_since: datetime | None
    runs_by_state: dict[str, int]
    notifications_by_state: dict[str, int]
    rooms_by_state: dict[str, int]


class Gauges(LedgerBase):
    def read_gauges(self) -> LedgerGauges:
        """Raises LedgerUnavailableError when the ledger does not answer."""
        with self.session() as s:
            recordings = s.execute(
                select(Recording.state, func.count()).group_by(Recording.state)
            ).all()
            collecting = s.scalar(
                select(func.min(Recording.last_event_at)).where(
                    Recording.state == RecordingState.COLLECTING
                )
            )
            processing = s.scalar(
                select(func.min(Run.created_at))
                .join(Recording, Recording.current_run_id == Run.id)
                .where(Recording.state == RecordingState.PROCESSING)
            )
            runs = s.execute(select(Run.state, func.count()).group_by(Run.state)).all()
            notifications = s.execute(
                select(Notification.state, func.count()).group_by(Notification.state)
            ).all()
            rooms = s.execute(
                select(Recording.state, func.count())
                .where(Recording.source == ROOM_SOURCE)
                .group_by(Recording.state)
            ).all()
        return LedgerGauges(
            recordings_by_state={str(state): int(count) for state, count in recordings},
            oldest_collecting_event_at=aware(collecting),
            oldest_processing_since=aware(processing),
            runs_by_state={str(state): int(count) for state, count in runs},
            notifications_by_state={str(state): int(count) for state, count in notifications},
            rooms_by_state={str(state): int(count) for state, count in rooms},
        )
